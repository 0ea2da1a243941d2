"""Every loader: each sample exactly once per epoch, fixed-size training batches, the run's
dtype and memory format, and the same normalised pixels as the course's transforms."""

import numpy as np
import pytest
import torch

from bench.data.loaders import LoaderConfig, make_loader
from bench.spec.datasets import DatasetArrays

CPU = torch.device("cpu")


def _ids_dataset(n_train: int = 100, n_test: int = 30, family: str = "cifar10") -> DatasetArrays:
    """Labels are the sample ids, so coverage can be read off the yielded labels."""
    shape = (32, 32, 3) if family == "cifar10" else (28, 28, 1)
    rng = np.random.default_rng(0)
    return DatasetArrays(
        "ids", family, rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        np.arange(n_train), rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        np.arange(n_test), [str(i) for i in range(10)], real=False, source="test")


@pytest.mark.parametrize("loader", ["torch", "device"])
@pytest.mark.parametrize("augment", [False, True])
def test_each_sample_once_per_epoch(loader: str, augment: bool) -> None:
    data = _ids_dataset()
    cfg = LoaderConfig(split="train", batch_size=16, device=CPU, augment=augment, norm="cifar10",
                       shuffle=True, drop_last=True, seed=3)
    ld = make_loader(loader, data, cfg)
    assert len(ld) == 6 and ld.num_samples == 96
    orders = []
    for epoch in range(2):
        ld.set_epoch(epoch)
        labels = []
        for x, y in ld:
            assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
            labels += y.tolist()
        assert len(labels) == 96 == len(set(labels))  # drop_last: 4 of 100 left out, no repeats
        orders.append(labels)
    assert orders[0] != orders[1]  # reshuffled each epoch


@pytest.mark.parametrize("loader", ["torch", "device"])
def test_test_split_keeps_the_tail_in_order(loader: str) -> None:
    data = _ids_dataset()
    ld = make_loader(loader, data, LoaderConfig(split="test", batch_size=8, device=CPU,
                                                norm="cifar10"))
    labels = [v for _, y in ld for v in y.tolist()]
    assert labels == list(range(30)) and len(ld) == 4


@pytest.mark.parametrize("family,norm", [("mnist", "mnist"), ("cifar10", "half")])
def test_loaders_agree_without_augmentation(family: str, norm: str) -> None:
    data = _ids_dataset(family=family)
    batches = {}
    for name in ("torch", "device"):
        ld = make_loader(name, data, LoaderConfig(split="test", batch_size=30, device=CPU,
                                                  norm=norm))
        batches[name] = next(iter(ld))[0]
    torch.testing.assert_close(batches["torch"], batches["device"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("loader", ["torch", "device"])
def test_dtype_and_channels_last(loader: str) -> None:
    data = _ids_dataset()
    ld = make_loader(loader, data, LoaderConfig(
        split="train", batch_size=8, device=CPU, dtype=torch.bfloat16, channels_last=True,
        norm="cifar10", augment=True, shuffle=True, drop_last=True))
    x, _ = next(iter(ld))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_device_loader_shards_are_disjoint() -> None:
    data = _ids_dataset(n_train=64)
    seen = []
    for rank in range(2):
        ld = make_loader("device", data, LoaderConfig(
            split="train", batch_size=8, device=CPU, norm="cifar10", shuffle=True,
            drop_last=True, seed=5, rank=rank, world_size=2))
        seen.append({v for _, y in ld for v in y.tolist()})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 64


def test_unknown_loader_lists_choices() -> None:
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="choices: torch, device, ffcv"):
        make_loader("dali", _ids_dataset(), LoaderConfig(split="train", batch_size=8, device=CPU))


@pytest.mark.parametrize("loader", ["torch", "device"])
@pytest.mark.parametrize("pad", [0, 2])
def test_augmentation_translates_at_most_pad_pixels(loader: str, pad: int) -> None:
    """augment with pad P: each image is its own crop shifted by at most P pixels (zero-filled),
    maybe mirrored; pad 0 is flips only. Checked on the uint8 pixels, label = sample id."""
    from bench.data.loaders.base import augment_name

    data = _ids_dataset(n_train=64)
    cfg = LoaderConfig(split="train", batch_size=64, device=CPU, augment=True, pad=pad,
                       norm="half", shuffle=True, drop_last=True, seed=1)
    x, y = next(iter(make_loader(loader, data, cfg)))
    pixels = torch.round((x * 0.5 + 0.5) * 255).to(torch.uint8)  # back through norm 'half'
    for img, i in zip(pixels, y.tolist(), strict=True):
        src = torch.from_numpy(data.train_x[i]).permute(2, 0, 1)
        padded = torch.nn.functional.pad(src, (pad,) * 4)
        shifts = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        crops = [padded[:, dy:dy + 32, dx:dx + 32] for dy, dx in shifts]
        assert any(torch.equal(img, c) or torch.equal(img, c.flip(2)) for c in crops)
    assert augment_name(cfg) == ("hflip" if pad == 0 else "crop32 pad2 + hflip")
