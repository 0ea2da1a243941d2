"""The course's pipeline, kept as the baseline we beat: torch DataLoader over PIL images with
per-sample torchvision transforms (ToTensor, Normalize, and RandomCrop + flip for VGG)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from bench.data.loaders.base import LoaderConfig, epoch_seed, shard_indices, to_model_input
from bench.spec.datasets import DatasetArrays


class _PILDataset(Dataset):
    """Yields (PIL image, label) per sample, like torchvision.datasets.MNIST/CIFAR10 do."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: T.Compose) -> None:
        self.x, self.y, self.transform = x, y, transform
        self.mode = "L" if x.shape[-1] == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.x[i]
        pil = Image.fromarray(img[..., 0] if self.mode == "L" else img, mode=self.mode)
        return self.transform(pil), int(self.y[i])


def course_transforms(cfg: LoaderConfig, size: int) -> T.Compose:
    mean, std = cfg.mean_std
    steps: list[Any] = []
    if cfg.augment:
        steps += [T.RandomCrop(size, padding=cfg.pad)] if cfg.pad else []
        steps += [T.RandomHorizontalFlip()]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class TorchLoader:
    def __init__(self, data: DatasetArrays, cfg: LoaderConfig) -> None:
        self.cfg = cfg
        x, y = (data.train_x, data.train_y) if cfg.split == "train" else (data.test_x, data.test_y)
        # The course permuted the pixels of the dataset itself; our arrays already carry it.
        self.dataset = _PILDataset(x, y, course_transforms(cfg, x.shape[1]))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self._epoch = 0
        sampler = None
        if cfg.world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(self.dataset, cfg.world_size, cfg.rank,
                                         shuffle=cfg.shuffle, seed=cfg.seed, drop_last=True)
        self.sampler = sampler
        self.loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size,
            shuffle=cfg.shuffle if sampler is None else False, sampler=sampler,
            drop_last=cfg.drop_last, num_workers=cfg.workers,
            generator=self.generator if sampler is None else None,
            pin_memory=cfg.device.type == "cuda", persistent_workers=cfg.workers > 0,
        )

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        else:
            self.generator.manual_seed(epoch_seed(self.cfg.seed, epoch))

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return (n // self.cfg.batch_size) * self.cfg.batch_size if self.cfg.drop_last else n

    def __iter__(self):
        dev, nb = self.cfg.device, self.cfg.device.type == "cuda"
        for x, y in self.loader:
            yield (to_model_input(x.to(dev, non_blocking=nb), self.cfg.dtype,
                                  self.cfg.channels_last), y.to(dev, non_blocking=nb))

    def describe(self) -> dict[str, Any]:
        return {"name": "torch", "workers": self.cfg.workers, "batch_size": self.cfg.batch_size,
                "transforms": repr(self.dataset.transform).replace("\n", " "),
                "per_sample": True, "pin_memory": self.cfg.device.type == "cuda",
                "drop_last": self.cfg.drop_last, "shuffle": self.cfg.shuffle}


def build(data: DatasetArrays, cfg: LoaderConfig) -> TorchLoader:
    return TorchLoader(data, cfg)


__all__ = ["TorchLoader", "build", "course_transforms", "shard_indices"]
