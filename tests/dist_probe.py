"""A model for the data-parallel tests (`--model tests.dist_probe:spec`): the course's fc net,
plus what those tests need and production code must not carry. Read from the environment of
each torchrun rank (`RANK`):

- DIST_PROBE_SHARDS=<dir>: every training batch's samples, hashed, appended to
  <dir>/rank<k>.txt, so a test can check that the shards are disjoint and cover the data;
- DIST_PROBE_FAULT_RANK=k DIST_PROBE_FAULT_STEP=s [DIST_PROBE_FAULT_KIND=raise|exit]: rank k
  raises a RuntimeError (or exits at once) at its training step s.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from bench import ModelSpec


class Probe(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.steps = inner, 0

    def _shards(self, x: torch.Tensor, rank: str) -> None:
        folder = os.environ.get("DIST_PROBE_SHARDS")
        if folder:
            rows = x.detach().reshape(len(x), -1).float().cpu().numpy()
            with open(Path(folder) / f"rank{rank}.txt", "a") as f:
                f.writelines(hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() + "\n"
                             for r in rows)

    def _fault(self, rank: str) -> None:
        if rank == os.environ.get("DIST_PROBE_FAULT_RANK") and \
                self.steps == int(os.environ.get("DIST_PROBE_FAULT_STEP", "1")):
            if os.environ.get("DIST_PROBE_FAULT_KIND") == "exit":
                os._exit(17)
            raise RuntimeError(f"injected fault on rank {rank} at step {self.steps}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = os.environ.get("RANK")
        # a training step of a torchrun rank; not the FLOP count's forward passes after training
        # (a dispatch mode, FlopCounterMode, is active then)
        if self.training and rank is not None and _get_current_dispatch_mode() is None:
            self.steps += 1
            self._fault(rank)
            self._shards(x, rank)
        return self.inner(x)


def spec() -> ModelSpec:
    from bench.spec.models import get_model_spec

    fc = get_model_spec("fc")
    return replace(fc, name="dist_probe", build=lambda: Probe(fc.build()), params=None,
                   description="fc with the data-parallel tests' probes", suites=frozenset())
