"""The loader protocol every loader follows, so the engine never knows which one it has.

Iterating yields (images, labels) already on the run's device, in the run's input dtype and
memory format, each sample once per epoch; training batches are fixed-size (drop_last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from bench.defaults import AUGMENT_PAD
from bench.spec.datasets import NORMS


@dataclass(frozen=True)
class LoaderConfig:
    """What a loader needs to know; recorded in the result through `describe()`."""

    split: str  # "train" or "test"
    batch_size: int
    device: torch.device
    dtype: torch.dtype = torch.float32  # dtype of the images handed to the model
    channels_last: bool = False
    augment: bool = False  # CIFAR: random crop 32 pad `pad` + horizontal flip (train only)
    pad: int = AUGMENT_PAD  # augment: translate up to this many pixels (0: flip only)
    norm: str = "mnist"  # key into NORMS
    shuffle: bool = False
    drop_last: bool = False
    seed: int = 0
    workers: int = 0
    rank: int = 0  # data-parallel shard of this process
    world_size: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # loader-specific settings

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return NORMS[self.norm]


class Loader(Protocol):
    def __iter__(self): ...  # yields (images, labels) on the device

    def __len__(self) -> int: ...  # number of batches per epoch

    def set_epoch(self, epoch: int) -> None: ...  # reshuffle deterministically for this epoch

    def describe(self) -> dict[str, Any]: ...  # settings stored in the result

    @property
    def num_samples(self) -> int: ...  # images delivered per epoch (after drop_last)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle: distinct per (run seed, epoch), the same on every rank
    (each takes its shard of one order) and in every loader."""
    return seed * 1_000_003 + epoch


def shard_indices(n: int, rank: int, world_size: int) -> slice:
    """Contiguous, disjoint shard of an epoch's order for one rank (equal sizes, tail dropped)."""
    per = n // world_size
    return slice(rank * per, (rank + 1) * per)


def to_model_input(x: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def augment_name(cfg: LoaderConfig) -> str | None:
    """The training augmentation as a result records it (None: none)."""
    if not cfg.augment:
        return None
    return f"crop32 pad{cfg.pad} + hflip" if cfg.pad else "hflip"
