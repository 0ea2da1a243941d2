"""Micro-benchmark of batch preparation: fused Triton kernel vs eager and compiled reference.

Workload: CIFAR-10-shaped dataset (50,000 x 32 x 32 x 3 uint8, random) resident on the device,
batch 512, pad 4, random crop offsets and flips, normalised to ``dtype`` through a normalisation
table built once on the device (as the ``device`` loader does, so no per-batch host copy).
Each implementation is warmed up first (its first call, which includes JIT/``torch.compile``
time, is reported separately), then timed over ``repeats`` samples of ``inner`` back-to-back
batches; we report the median time per batch, the interquartile range as spread, and the
achieved bandwidth (uint8 bytes read + output bytes written, per batch, over the median time).

Run: ``.venv/bin/python benchmarks/kernel_timing.py [--device cpu|cuda]`` (a checkout that is
not installed: ``PYTHONPATH=. python3 benchmarks/kernel_timing.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kernels import triton_available
from kernels.reference import normalisation_table, prepare_batch_reference

CIFAR_SHAPE = (32, 32, 3)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMPLS = ("triton", "eager", "compile")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class BenchInputs:
    """Device-resident dataset plus a pool of pre-drawn batches (drawing is not timed).

    ``table`` is the (C, 256) normalisation table for ``mean``/``std``, on the device.
    """

    data: torch.Tensor
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (indices, offsets, flips)
    mean: torch.Tensor
    std: torch.Tensor
    pad: int
    table: torch.Tensor

    def call(self, fn: Callable[..., torch.Tensor], k: int, dtype: torch.dtype) -> torch.Tensor:
        idx, offs, flips = self.batches[k % len(self.batches)]
        return fn(self.data, idx, offs, flips, pad=self.pad, table=self.table, out_dtype=dtype)


def make_inputs(
    device: torch.device | str,
    *,
    batch: int = 512,
    n_images: int = 50_000,
    pad: int = 4,
    pool: int = 8,
    seed: int = 0,
) -> BenchInputs:
    """Random CIFAR-shaped uint8 data on ``device`` and ``pool`` random batches for it."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (n_images, *CIFAR_SHAPE), dtype=torch.uint8, generator=g)
    batches = []
    for _ in range(pool):
        idx = torch.randint(0, n_images, (batch,), generator=g)
        offs = torch.randint(0, 2 * pad + 1, (batch, 2), generator=g)
        flips = torch.rand(batch, generator=g) < 0.5
        batches.append((idx.to(dev), offs.to(dev), flips.to(dev)))
    return BenchInputs(
        data=data.to(dev),
        batches=batches,
        mean=torch.tensor(CIFAR_MEAN, device=dev),
        std=torch.tensor(CIFAR_STD, device=dev),
        pad=pad,
        table=normalisation_table(CIFAR_MEAN, CIFAR_STD, len(CIFAR_MEAN), dev),
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time_batches(run: Callable[[int], Any], dev: torch.device, repeats: int, inner: int) -> list:
    """Seconds per batch for each of ``repeats`` samples of ``inner`` consecutive batches."""
    samples = []
    k = 0
    for _ in range(repeats):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            _sync(dev)
            start.record()
            for _ in range(inner):
                run(k)
                k += 1
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                run(k)
                k += 1
            samples.append((time.perf_counter() - t0) / inner)
    return samples


def _impl_fn(impl: str, dev: torch.device) -> tuple[Callable[..., torch.Tensor] | None, str]:
    """The callable for ``impl`` on ``dev``, or None and the reason it cannot run here."""
    if impl == "eager":
        return prepare_batch_reference, ""
    if impl == "compile":
        return torch.compile(prepare_batch_reference), ""
    if impl == "triton":
        if dev.type != "cuda":
            return None, "Triton kernel needs CUDA (on CPU it only runs interpreted, for tests)"
        if not triton_available():
            return None, "triton cannot be imported"
        from kernels.triton_batch import prepare_batch_triton

        return prepare_batch_triton, ""
    raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")


def _compare(got: torch.Tensor, ref: torch.Tensor) -> str:
    if torch.equal(got, ref):
        return "exact"
    return f"max|d|={(got.float() - ref.float()).abs().max().item():.2g}"


def run_kernel_benchmark(
    device: torch.device | str,
    batch: int = 512,
    dtype: torch.dtype = torch.bfloat16,
    repeats: int | None = None,
    *,
    inner: int | None = None,
    warmup: int = 3,
    n_images: int = 50_000,
    pad: int = 4,
    impls: tuple[str, ...] = IMPLS,
) -> list[dict[str, Any]]:
    """Time each implementation; one dict per implementation (skipped/failed ones say why).

    Defaults: CUDA 50 samples x 20 batches (one batch is a few microseconds, so samples are
    groups timed with CUDA events); CPU 15 samples x 1 batch.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA requested but not available")
    repeats = repeats if repeats is not None else (50 if dev.type == "cuda" else 15)
    inner = inner if inner is not None else (20 if dev.type == "cuda" else 1)
    inputs = make_inputs(dev, batch=batch, n_images=n_images, pad=pad)
    h, w, c = CIFAR_SHAPE
    elem = torch.empty(0, dtype=dtype).element_size()
    bytes_moved = batch * h * w * c * (1 + elem)  # uint8 read + output written
    ref0 = inputs.call(prepare_batch_reference, 0, dtype)

    rows: list[dict[str, Any]] = []
    for impl in impls:
        row: dict[str, Any] = {
            "impl": impl,
            "device": str(dev),
            "dtype": str(dtype).removeprefix("torch."),
            "batch": batch,
            "bytes_per_batch": bytes_moved,
        }
        rows.append(row)
        fn, reason = _impl_fn(impl, dev)
        if fn is None:
            row.update(status="skipped", reason=reason)
            continue
        try:
            _sync(dev)
            t0 = time.perf_counter()
            first = inputs.call(fn, 0, dtype)  # includes JIT / torch.compile
            _sync(dev)
            row["warmup_s"] = time.perf_counter() - t0
            row["check"] = _compare(first, ref0)
            for k in range(warmup):
                inputs.call(fn, k, dtype)
            _sync(dev)
            samples = _time_batches(lambda k, fn=fn: inputs.call(fn, k, dtype), dev, repeats, inner)
        except Exception as exc:  # e.g. torch.compile without a working C++ compiler
            row.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
        median = statistics.median(samples)
        row.update(
            status="ok",
            median_us=median * 1e6,
            iqr_us=(q[2] - q[0]) * 1e6,
            min_us=min(samples) * 1e6,
            gbps=bytes_moved / median / 1e9,
            samples=len(samples),
            inner=inner,
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`run_kernel_benchmark` rows."""
    head = f"{'impl':<8} {'median us':>10} {'IQR us':>9} {'min us':>10} {'GB/s':>7} "
    head += f"{'warm-up s':>9}  {'vs eager':<12} note"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            dash = f"{'-':>10} {'-':>9} {'-':>10} {'-':>7} {'-':>9}  {'-':<12}"
            lines.append(f"{r['impl']:<8} {dash} {r['status']}: {r['reason']}")
            continue
        lines.append(
            f"{r['impl']:<8} {r['median_us']:>10.1f} {r['iqr_us']:>9.1f} {r['min_us']:>10.1f} "
            f"{r['gbps']:>7.2f} {r['warmup_s']:>9.2f}  {r['check']:<12} "
            f"{r['samples']} samples x {r['inner']} batches"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=None,
        help="default: cuda when available, else cpu",
    )
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="bf16")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--inner", type=int, default=None)
    p.add_argument("--impl", action="append", choices=IMPLS, help="repeatable; default: all")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = _DTYPES[args.dtype]
    rows = run_kernel_benchmark(
        device,
        args.batch,
        dtype,
        args.repeats,
        inner=args.inner,
        impls=tuple(args.impl) if args.impl else IMPLS,
    )
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"batch preparation, CIFAR-10 shape {CIFAR_SHAPE}, batch {args.batch}, pad 4, "
        f"random crop+flip, out {args.dtype}; device {name}; torch {torch.__version__}"
    )
    print(f"bytes per batch (read uint8 + write {args.dtype}): {rows[0]['bytes_per_batch']:,}")
    print(format_table(rows))


if __name__ == "__main__":
    main()
