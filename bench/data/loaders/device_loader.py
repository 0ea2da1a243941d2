"""The `device` loader: the whole dataset resident on the run's device (a GPU, or the CPU) as
uint8; batches are prepared there in one call. (It was called `gpu`; that name is an alias.)

Each epoch draws a fresh order from a generator seeded by (seed, epoch), identical on every
rank, and a rank keeps its contiguous shard. Crop offsets and flips are drawn from the same
generator, so a run is reproducible. Batch preparation (gather, pad+crop, flip, permutation,
normalise, cast, channels-last) is `kernels.prepare_batch`: a fused Triton kernel on CUDA,
the torch reference elsewhere. Both look normalised values up in one (C, 256) table built here
once, on the host, and moved to the device once: no per-batch host work or copy.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.data.loaders.base import LoaderConfig, augment_name, epoch_seed, shard_indices
from bench.spec.datasets import DatasetArrays
from kernels import normalisation_table, prepare_batch


class DeviceLoader:
    def __init__(self, data: DatasetArrays, cfg: LoaderConfig) -> None:
        self.cfg = cfg
        x, y = (data.train_x, data.train_y) if cfg.split == "train" else (data.test_x, data.test_y)
        dev = cfg.device
        self.images = torch.from_numpy(x).to(dev)  # (N, H, W, C) uint8, already permuted
        self.labels = torch.from_numpy(y).to(dev)
        mean, std = cfg.mean_std
        self.table = normalisation_table(mean, std, self.images.shape[-1], dev)  # (C, 256)
        self.backend = cfg.options.get("backend", "auto")
        self.epoch = 0
        n = len(self.labels)
        self.n_rank = len(range(n)[shard_indices(n, cfg.rank, cfg.world_size)])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        b = self.cfg.batch_size
        return self.n_rank // b if self.cfg.drop_last else -(-self.n_rank // b)

    @property
    def num_samples(self) -> int:
        return len(self) * self.cfg.batch_size if self.cfg.drop_last else self.n_rank

    def _order(self, gen: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        order = torch.randperm(n, generator=gen) if self.cfg.shuffle else torch.arange(n)
        return order[shard_indices(n, self.cfg.rank, self.cfg.world_size)]

    def __iter__(self):
        cfg = self.cfg
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, self.epoch))
        order = self._order(gen).to(cfg.device)
        b = cfg.batch_size
        n = len(order)
        if cfg.augment:
            offsets = torch.randint(0, 2 * cfg.pad + 1, (n, 2), generator=gen).to(cfg.device)
            flips = (torch.rand(n, generator=gen) < 0.5).to(cfg.device)
        for i in range(len(self)):
            idx = order[i * b:(i + 1) * b]
            aug = dict(crop_offsets=offsets[i * b:(i + 1) * b], flips=flips[i * b:(i + 1) * b],
                       pad=cfg.pad) if cfg.augment else {}
            x = prepare_batch(self.images, idx, **aug, table=self.table,
                              out_dtype=cfg.dtype, backend=self.backend)
            if not cfg.channels_last:
                x = x.contiguous()
            yield x, self.labels[idx]

    def describe(self) -> dict[str, Any]:
        return {"name": "device", "batch_size": self.cfg.batch_size,
                "resident": str(self.cfg.device),
                "augment": augment_name(self.cfg),
                "backend": self.backend, "drop_last": self.cfg.drop_last,
                "shuffle": self.cfg.shuffle, "dataset_bytes": self.images.numel()}


def build(data: DatasetArrays, cfg: LoaderConfig) -> DeviceLoader:
    return DeviceLoader(data, cfg)
