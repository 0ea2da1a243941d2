"""`--batch-size auto`: the largest batch that fits, backing off on out-of-memory (as timm's
benchmark does). On CPU there is no allocator error to learn from before the OS kills us, so the
candidates are first bounded by a memory budget estimated from activation sizes."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.errors import BenchError
from bench.host.device import empty_cache, is_oom
from bench.measure.flops import leaf_output_elements

MAX_BATCH = 4096


def activation_bytes_per_sample(model: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """Bytes of every module output for one sample (fp32): a proxy for training memory per
    sample, measured on a CPU copy so the model itself is left as it is."""
    return 4 * leaf_output_elements(copy.deepcopy(model).cpu().float().eval(), sample_shape)


def available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def candidate_sizes(device: torch.device, model: nn.Module, sample_shape: tuple[int, ...],
                    n_train: int, budget_fraction: float = 0.25) -> list[int]:
    """Powers of two, largest first; on CPU bounded by a fraction of the available memory
    (x3: activations, their gradients and the allocator's slack)."""
    cap = min(MAX_BATCH, max(1, n_train))
    if device.type == "cpu":
        per_sample = 3 * activation_bytes_per_sample(model, sample_shape)
        budget = int(available_memory_bytes() * budget_fraction)
        cap = min(cap, max(1, budget // max(per_sample, 1)))
    sizes = []
    b = 1
    while b * 2 <= cap:
        b *= 2
    while b >= 1:
        sizes.append(b)
        b //= 2
    return sizes


def find_batch_size(try_batch: Callable[[int], None], candidates: list[int],
                    device: torch.device) -> tuple[int, list[dict]]:
    """Try candidates largest first; the first that runs a full step wins."""
    tried: list[dict] = []
    for b in candidates:
        try:
            try_batch(b)
            tried.append({"batch_size": b, "ok": True})
            return b, tried
        except (RuntimeError, MemoryError) as exc:
            if not is_oom(exc):
                raise
            tried.append({"batch_size": b, "ok": False, "error": type(exc).__name__})
            empty_cache(device)
    raise BenchError(f"no batch size fits in memory (tried {[t['batch_size'] for t in tried]})")


def probe_step(model: nn.Module, device: torch.device, sample_shape: tuple[int, ...],
               autocast: Callable[[], object], memory_format: torch.memory_format
               ) -> Callable[[int], None]:
    """A function that runs one forward+backward at batch b on a throw-away copy of the model."""

    def run(b: int) -> None:
        m = copy.deepcopy(model)
        x = torch.randn(b, *sample_shape, device=device).contiguous(memory_format=memory_format)
        y = torch.zeros(b, dtype=torch.long, device=device)
        with autocast():  # type: ignore[attr-defined]
            loss = F.cross_entropy(m(x).float(), y)
        loss.backward()
        del m, x, y, loss

    return run

