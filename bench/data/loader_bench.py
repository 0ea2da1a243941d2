"""`bench loaders`: time each data loader alone (no model), side by side in one process.

Each loader gets the same LoaderConfig (VGG training settings on CIFAR-10: shuffle, drop_last,
random crop with padding 4 + horizontal flip, cifar10 normalisation, channels-last, the chosen
dtype) and the same worker count. One warm-up epoch first (it holds the torch workers' start
and ffcv's numba compile; reported separately), then `--epochs` full epochs, each timed from
a device sync to a device sync, so images/s covers everything up to a batch ready on the
device. We report the median and the min-max over epochs: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.data.loaders import LOADERS, Loader, LoaderConfig, canonical_loader, make_loader
from bench.defaults import precision
from bench.errors import BenchError
from bench.fsutil import os_reason, writable_dir
from bench.host import toolchain
from bench.host.device import default_workers, now, resolve_device, select
from bench.spec.datasets import DATASETS, FAMILIES, DatasetArrays, load_dataset
from bench.spec.runspec import MAX_WORKERS, add_run_flags

DTYPES = ("fp32", "bf16")
MAX_EPOCHS = 1000  # timed epochs; more is a typo, not a measurement


@dataclass
class LoaderTiming:
    """One loader's row of the table."""

    loader: str
    workers: int
    build_s: float | None = None  # construction (ffcv: conversion/verification included)
    warmup_s: float | None = None  # first epoch (ffcv: numba compile; torch: worker start)
    epoch_s: list[float] = field(default_factory=list)
    images_per_epoch: int = 0
    error: str | None = None
    describe: dict[str, Any] = field(default_factory=dict)

    @property
    def rates(self) -> list[float]:
        return [self.images_per_epoch / t for t in self.epoch_s if t > 0]

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


def time_epochs(loader: Loader, device: torch.device, epochs: int, warmup: int = 1,
                ) -> tuple[list[float], list[float], int]:
    """Iterate `warmup + epochs` full epochs; return (warm-up times, timed epoch times,
    images per timed epoch). Each epoch is bracketed by device syncs (`now`)."""
    warm: list[float] = []
    timed: list[float] = []
    images = 0
    for e in range(warmup + epochs):
        loader.set_epoch(e)
        n = 0
        t0 = now(device)
        for _x, y in loader:
            n += int(y.shape[0])
        dt = now(device) - t0
        if e < warmup:
            warm.append(dt)
        else:
            timed.append(dt)
            images = n
    return warm, timed, images


def bench_loaders(data: DatasetArrays, names: Sequence[str], cfg: LoaderConfig, epochs: int,
                  factory: Callable[[str, DatasetArrays, LoaderConfig], Loader] = make_loader,
                  log: Callable[[str], None] | None = None) -> list[LoaderTiming]:
    """Build and time each loader in turn with the same config; failures become rows."""
    rows: list[LoaderTiming] = []
    for name in names:
        row = LoaderTiming(name, cfg.workers)
        if log:
            log(f"[{name}] building ...")
        try:
            t0 = time.perf_counter()
            loader = factory(name, data, cfg)
            row.build_s = time.perf_counter() - t0
            warm, row.epoch_s, row.images_per_epoch = time_epochs(loader, cfg.device, epochs)
            row.warmup_s = warm[0] if warm else None
            row.describe = loader.describe()
            del loader
        except Exception as exc:  # one broken loader must not hide the others' numbers
            row.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        gc.collect()  # let torch DataLoader workers exit before the next loader runs
        if log:
            log(f"[{name}] " + (row.error or f"median {row.median:,.0f} images/s"))
        rows.append(row)
    return rows


def format_table(rows: Iterable[LoaderTiming], baseline: str = "torch") -> str:
    """Fixed-width table; the last column is median images/s relative to `baseline`."""
    rows = list(rows)
    base = next((r.median for r in rows if r.loader == baseline and r.median), None)
    head = (f"{'loader':<8}{'workers':>8}{'build s':>9}{'warm-up s':>11}{'epochs':>7}"
            f"{'images/s median':>17}{'min':>10}{'max':>10}{'vs ' + baseline:>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.error:
            lines.append(f"{r.loader:<8}{r.workers:>8}  error: {r.error}")
            continue
        rates = r.rates
        rel = f"{r.median / base:.1f}x" if base and r.median else "-"
        lines.append(
            f"{r.loader:<8}{r.workers:>8}{_f(r.build_s, 9, 2)}{_f(r.warmup_s, 11, 2)}"
            f"{len(rates):>7}{_f(r.median, 17, 0)}{_f(min(rates, default=None), 10, 0)}"
            f"{_f(max(rates, default=None), 10, 0)}{rel:>10}")
    return "\n".join(lines)


def _f(v: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width},.{digits}f}"


# ----------------------------------------------------------------------------- CLI verb


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `bench loaders`."""
    p = sub.add_parser(
        "loaders", help="time the data loaders alone (no model), side by side",
        description="Time each loader for full epochs of the training split with the same "
                    "settings and worker count (VGG settings on CIFAR-10: crop+flip, "
                    "cifar10 normalisation). One warm-up epoch, then --epochs timed epochs.")
    p.add_argument("--dataset", default="cifar10", choices=list(DATASETS),
                   help="dataset whose training split is loaded")
    add_run_flags(p, include=("data_dir", "device", "download"))
    p.add_argument("--batch-size", type=int, default=512, help="images per batch")
    p.add_argument("--workers", type=int, default=None,
                   help=f"worker processes/threads for every loader, 0 to {MAX_WORKERS} "
                   "(default: the cores)")
    p.add_argument("--epochs", type=int, default=3,
                   help=f"timed epochs after the warm-up, 1 to {MAX_EPOCHS}")
    p.add_argument("--loaders", default=",".join(LOADERS),
                   help=f"comma-separated, from {', '.join(LOADERS)}")
    p.add_argument("--dtype", default="fp32", choices=DTYPES, help="dtype of the batches "
                   "the loaders yield")
    p.add_argument("--no-augment", action="store_true", help="no crop/flip (default: on "
                   "for cifar10 families, off for mnist)")
    p.add_argument("--no-channels-last", action="store_true", help="batches in NCHW memory "
                   "(default: channels-last, NHWC)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the shuffle, synthetic "
                   "data, mnist-perm's permutation")
    p.add_argument("--beton-dir", default=None, help="ffcv .beton folder (default: cache)")
    p.add_argument("--allow-synthetic", action="store_true",
                   help="use the synthetic twin when the real data is missing")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    p.set_defaults(func=handler)
    return p


def _check_flags(args: argparse.Namespace) -> list[str]:
    """The loader names, after bounds on every count: before any data is loaded."""
    names = [canonical_loader(n.strip()) for n in args.loaders.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOADERS]
    if not names or unknown:
        raise BenchError(f"--loaders: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choices: {', '.join(LOADERS)}")
    if args.batch_size < 1:
        raise BenchError(f"--batch-size {args.batch_size}: must be at least 1")
    if not 1 <= args.epochs <= MAX_EPOCHS:
        raise BenchError(f"--epochs {args.epochs}: must be between 1 and {MAX_EPOCHS}")
    if args.workers is not None and not 0 <= args.workers <= MAX_WORKERS:
        raise BenchError(f"--workers {args.workers}: must be between 0 and {MAX_WORKERS}")
    if args.json:
        if Path(args.json).is_dir():
            raise BenchError(f"--json {args.json}: is a folder; name a file")
        writable_dir(Path(args.json).parent, "--json folder")
    return names


def handler(args: argparse.Namespace) -> int:
    names = _check_flags(args)
    device = resolve_device(args.device)
    if toolchain.uses_triton(device.type, "none", "device") and "device" in names:
        toolchain.require(f"the device loader on {device}")
    select(device)
    workers = args.workers if args.workers is not None else default_workers()
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed,
                        allow_synthetic=args.allow_synthetic, download=args.download)
    if args.batch_size > len(data.train_y):  # drop_last: not one batch, "0 images/s"
        raise BenchError(f"--batch-size {args.batch_size} is larger than the {data.name} "
                         f"training split ({len(data.train_y):,} images): no full batch to time")
    family = FAMILIES[data.family]
    options: dict[str, Any] = {"progress": True}
    if args.beton_dir:
        options["beton_dir"] = args.beton_dir
    cfg = LoaderConfig(
        split="train", batch_size=args.batch_size, device=device,
        dtype=precision(args.dtype).input_dtype,
        channels_last=not args.no_channels_last, augment=family.augment and not args.no_augment,
        norm=family.name, shuffle=True, drop_last=True, seed=args.seed,
        workers=workers, options=options)
    print(f"dataset {data.name} ({'real' if data.real else 'synthetic'}, "
          f"{len(data.train_y)} train images), device {device}, batch {args.batch_size}, "
          f"workers {workers}, dtype {args.dtype}, augment {cfg.augment}, "
          f"channels_last {cfg.channels_last}, torch threads {torch.get_num_threads()}",
          flush=True)
    rows = bench_loaders(data, names, cfg, args.epochs,
                         log=lambda m: print(m, flush=True))
    print(format_table(rows))
    if args.json:
        _write_json(Path(args.json), args, rows)
    return 1 if all(r.error for r in rows) else 0


def _write_json(path: Path, args: argparse.Namespace, rows: list[LoaderTiming]) -> None:
    from bench.results import atomic_write_text

    doc = {"config": {k: str(v) for k, v in vars(args).items() if k != "func"},
           "rows": [{**asdict(r), "images_per_s": r.rates, "median": r.median} for r in rows]}
    try:
        atomic_write_text(path, json.dumps(doc, indent=1, default=str) + "\n")
    except OSError as exc:
        raise BenchError(f"cannot write {path} ({os_reason(exc)})") from None


__all__ = ["LoaderTiming", "bench_loaders", "format_table", "handler", "register",
           "time_epochs"]
