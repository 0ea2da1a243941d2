"""pytest-benchmark cases: one full training epoch of each loader, no model.

Not part of the default test run (pytest's testpaths is `tests`). Run:

    BENCH_DATA_DIR=../shared/data .venv/bin/python -m pytest benchmarks/test_bench_loaders.py \
        -p no:cacheprovider --benchmark-columns=median,min,max,rounds

Settings are those of `bench loaders` (VGG on CIFAR-10: crop + flip, cifar10 normalisation,
channels-last, shuffle, drop_last) with the same worker count for every loader, so the
numbers compare. Without real data the synthetic twin is used; BENCH_LOADER_BENCH_N=<n>
keeps only the first n training images (quick smoke runs). The first epoch is a warm-up round
(ffcv's numba compile, torch's worker start-up) and is not in the statistics.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from bench.data.ffcv import INSTALL_HINT
from bench.data.loaders import LOADERS, LoaderConfig, make_loader
from bench.host.device import synchronize
from bench.spec.datasets import load_dataset


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


@pytest.fixture(scope="module")
def data():
    d = load_dataset("cifar10", None, allow_synthetic=True)
    n = int(os.environ.get("BENCH_LOADER_BENCH_N", "0"))
    if n:
        d = dataclasses.replace(d, name=f"{d.name}-first{n}", train_x=d.train_x[:n],
                                train_y=d.train_y[:n])
    return d


@pytest.mark.benchmark(group="loader-epoch")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("name", LOADERS)  # ids: loader-dtype, e.g. ffcv-fp32
def test_loader_epoch(benchmark, data, name, dtype):
    if name == "ffcv":
        pytest.importorskip("ffcv", reason=f"ffcv not installed; {INSTALL_HINT}")
    cfg = LoaderConfig(
        split="train", batch_size=512, device=torch.device("cpu"),
        dtype=torch.float32 if dtype == "fp32" else torch.bfloat16, channels_last=True,
        augment=True, norm="cifar10", shuffle=True, drop_last=True, seed=0,
        workers=_cores(), options={"progress": False})
    loader = make_loader(name, data, cfg)
    epochs = iter(range(1_000))

    def one_epoch() -> int:
        loader.set_epoch(next(epochs))
        n = 0
        for _x, y in loader:
            n += int(y.shape[0])
        synchronize(cfg.device)
        return n

    n = benchmark.pedantic(one_epoch, rounds=3, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(images_per_epoch=n, workers=cfg.workers, dataset=data.name)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s_median"] = n / benchmark.stats.stats.median
