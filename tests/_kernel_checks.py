"""Triton-kernel-vs-reference checks, run as a subprocess under ``TRITON_INTERPRET=1``.

Why a subprocess: Triton reads ``TRITON_INTERPRET`` when a kernel is decorated, and other tests
in the same pytest process may import Triton first. Running here gives a clean interpreter.

Usage: ``TRITON_INTERPRET=1 python tests/_kernel_checks.py [CASE ...]``. Prints one JSON line per
case ({"name", "ok", "msg"}); exit 0 all passed, 1 a case failed, 77 Triton cannot be imported.
Importing this module (as test_kernels.py does, for the case names) does not import Triton.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from kernels import normalisation_table, prepare_batch, prepare_batch_reference
from kernels.reference import _crop_flip_perm

EXIT_NO_TRITON = 77
N_IMAGES = 20  # small dataset: the interpreter runs every program in Python
MNIST_MEAN, MNIST_STD = torch.tensor([0.1307]), torch.tensor([0.3081])
CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
CIFAR_STD = torch.tensor([0.2470, 0.2435, 0.2616])

CASES: dict[str, Callable[[], None]] = {}


def case(fn: Callable[[], None]) -> Callable[[], None]:
    CASES[fn.__name__] = fn
    return fn


def _dataset(h: int, w: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (N_IMAGES, h, w, c), dtype=torch.uint8, generator=g)


def _indices(b: int, seed: int) -> torch.Tensor:
    """Random indices that always include both dataset edges (0 and N-1) when b >= 2."""
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randint(0, N_IMAGES, (b,), generator=g)
    idx[0] = N_IMAGES - 1
    if b >= 2:
        idx[-1] = 0
    return idx


def _perm(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randperm(h * w, generator=torch.Generator().manual_seed(seed + 2))


def _ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of ``dtype`` values around fp32 ``x`` (one rounding step), subnormals included."""
    fi = torch.finfo(dtype)
    _, e = torch.frexp(x)  # x = m * 2**e, 0.5 <= |m| < 1
    ulp = fi.eps * torch.exp2((e - 1).to(torch.float32))
    return torch.clamp(ulp, min=fi.smallest_normal * fi.eps)


# --- CUDA's division by a scalar, emulated on CPU ---
# ATen's CUDA kernel (BinaryDivTrueKernel.cu) divides a tensor by a CPU scalar as a * (1/b),
# "may lose one bit of precision"; the CPU divides exactly. Emulating it here makes a CPU test
# see what a GPU computes, so a reference that divides on the device fails on CPU too.

_DIV_METHODS = ("div", "div_", "true_divide", "true_divide_", "__truediv__", "__itruediv__")
_DIV_FUNCS = ("div", "true_divide")


def _reciprocal_form(orig: Callable[..., Any], inplace: bool) -> Callable[..., Any]:
    """``orig`` (a division), except tensor / Python scalar becomes a * fp32(1/b), as on CUDA."""

    def div(a: Any, b: Any, *args: Any, **kw: Any) -> Any:
        scalar = isinstance(b, (int, float)) and not isinstance(b, bool)
        if not scalar or args or kw.get("rounding_mode") is not None:
            return orig(a, b, *args, **kw)
        inv = float(np.float32(1.0) / np.float32(b))  # CUDA: opmath_t(1) / b, in fp32
        return a.mul_(inv) if inplace else a.mul(inv)

    return div


@contextlib.contextmanager
def device_style_division() -> Iterator[None]:
    """Within the block, every torch division by a Python scalar uses CUDA's reciprocal form.

    Patches ``torch.Tensor.{div, div_, true_divide, true_divide_, __truediv__, __itruediv__}``
    and ``torch.div`` / ``torch.true_divide``; restores them on exit.
    """
    saved_methods = {n: torch.Tensor.__dict__.get(n) for n in _DIV_METHODS}
    saved_funcs = {n: getattr(torch, n) for n in _DIV_FUNCS}
    try:
        for n in _DIV_METHODS:
            inplace = n in ("div_", "true_divide_", "__itruediv__")
            setattr(torch.Tensor, n, _reciprocal_form(getattr(torch.Tensor, n), inplace))
        for n, f in saved_funcs.items():
            setattr(torch, n, _reciprocal_form(f, inplace=False))
        yield
    finally:
        for n, m in saved_methods.items():
            if m is None:
                delattr(torch.Tensor, n)  # it was inherited from TensorBase
            else:
                setattr(torch.Tensor, n, m)
        for n, f in saved_funcs.items():
            setattr(torch, n, f)


def old_reference(args: dict[str, Any]) -> torch.Tensor:
    """The reference's arithmetic before the table (issue 25): x / 255, then (x - mean) / std."""
    kw = {k: args.get(k) for k in ("crop_offsets", "flips", "perm")}
    imgs = _crop_flip_perm(args["data"], args["indices"], pad=args.get("pad", 0), **kw)
    x = imgs.to(torch.float32).div_(255.0)
    x = (x - args["mean"].to(torch.float32)) / args["std"].to(torch.float32)
    return x.permute(0, 3, 1, 2)


def check(args: dict[str, Any], out_dtype: torch.dtype = torch.float32, label: str = "") -> None:
    """Kernel vs reference on one batch; raises AssertionError with details on mismatch.

    The kernel writes into a NaN-poisoned buffer with one extra (sentinel) sample after the
    batch: every output element must be written, and nothing past the batch.
    """
    from kernels.triton_batch import prepare_batch_triton

    data, idx = args["data"], args["indices"]
    _, h, w, c = data.shape
    b = idx.shape[0]
    kw = {k: v for k, v in args.items() if k not in ("data", "indices")}
    ref = prepare_batch_reference(data, idx, out_dtype=out_dtype, **kw)
    buf = torch.full((b + 1, h, w, c), float("nan"), dtype=out_dtype)
    got = prepare_batch_triton(data, idx, out_dtype=out_dtype, out=buf[:b], **kw)
    where = f"{label} B={b} HWC={h}x{w}x{c} {out_dtype}"
    assert got.shape == ref.shape == (b, c, h, w), f"{where}: shape {got.shape} vs {ref.shape}"
    assert got.stride() == ref.stride(), f"{where}: stride {got.stride()} vs {ref.stride()}"
    assert got.dtype == out_dtype, f"{where}: dtype {got.dtype}"
    assert torch.isnan(buf[b]).all(), f"{where}: kernel wrote past the end of the batch"
    n_nan = int(torch.isnan(got).sum())
    assert n_nan == 0, f"{where}: {n_nan} output elements never written (NaN poison left)"
    if out_dtype in (torch.float32, torch.float64):
        if not torch.equal(got, ref):
            diff = (got - ref).abs()
            bad = int((diff != 0).sum())
            raise AssertionError(f"{where}: {bad} elements differ, max |diff| {diff.max():.3g}")
        return
    # Low precision: within one rounding step of the exact fp32 result. (The interpreter rounds
    # fp32->bf16 toward zero, so bf16 is 1 ulp off the round-to-nearest reference in places.)
    ref32 = prepare_batch_reference(data, idx, out_dtype=torch.float32, **kw)
    err = (got.to(torch.float32) - ref32).abs()
    tol = _ulp(ref32, out_dtype)
    bad = int((err > tol).sum())
    assert bad == 0, f"{where}: {bad} elements more than 1 ulp off, max |diff| {err.max():.3g}"


def _cifar(b: int, seed: int, *, crop: bool = True, flip: bool = True) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed + 3)
    return {
        "data": _dataset(32, 32, 3, seed),
        "indices": _indices(b, seed),
        "crop_offsets": torch.randint(0, 9, (b, 2), generator=g) if crop else None,
        "flips": (torch.rand(b, generator=g) < 0.5) if flip else None,
        "pad": 4,
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
    }


def _mnist(b: int, seed: int, *, perm: bool) -> dict[str, Any]:
    return {
        "data": _dataset(28, 28, 1, seed),
        "indices": _indices(b, seed),
        "perm": _perm(28, 28, seed) if perm else None,
        "mean": MNIST_MEAN,
        "std": MNIST_STD,
    }


def _offset_grid(values: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (dy, dx) from ``values`` crossed with both flips."""
    rows = [(dy, dx, f) for dy in values for dx in values for f in (False, True)]
    offs = torch.tensor([[dy, dx] for dy, dx, _ in rows])
    flips = torch.tensor([f for _, _, f in rows])
    return offs, flips


def _sweep(values: list[int], out_dtype: torch.dtype, batch: int) -> None:
    pad = 4
    data = _dataset(32, 32, 3, seed=10)
    offs, flips = _offset_grid(values)
    n = offs.shape[0]
    idx = torch.arange(n) % N_IMAGES
    idx[0], idx[-1] = 0, N_IMAGES - 1
    for s in range(0, n, batch):
        args = {
            "data": data,
            "indices": idx[s : s + batch],
            "crop_offsets": offs[s : s + batch],
            "flips": flips[s : s + batch],
            "pad": pad,
            "mean": CIFAR_MEAN,
            "std": CIFAR_STD,
        }
        check(args, out_dtype, label=f"sweep[{s}:{s + batch}]")


# --- MNIST: 1 channel, 28x28 (784 elements: one partial 1024-wide tile per sample) ---


@case
def mnist_b7_plain_fp32() -> None:
    check(_mnist(7, seed=0, perm=False), torch.float32)


@case
def mnist_b13_perm_fp32() -> None:
    check(_mnist(13, seed=1, perm=True), torch.float32)


@case
def mnist_b1_perm_bf16() -> None:
    check(_mnist(1, seed=2, perm=True), torch.bfloat16)


@case
def mnist_b1_plain_fp32() -> None:
    check(_mnist(1, seed=3, perm=False), torch.float32)


@case
def mnist_b7_perm_fp16() -> None:
    check(_mnist(7, seed=4, perm=True), torch.float16)


@case
def mnist_b13_crop_flip_perm_fp32() -> None:
    """All three index transforms at once: pins their order (crop, flip, then perm)."""
    args = _mnist(13, seed=5, perm=True)
    g = torch.Generator().manual_seed(55)
    args.update(
        crop_offsets=torch.randint(0, 5, (13, 2), generator=g),
        flips=torch.rand(13, generator=g) < 0.5,
        pad=2,
    )
    check(args, torch.float32)


# --- CIFAR: 3 channels, 32x32, pad 4 ---


@case
def cifar_all_offsets_and_flips_fp32() -> None:
    """All 81 (dy, dx) in [0, 8]^2 times both flips, in batches of 16 (last one 2)."""
    _sweep(list(range(9)), torch.float32, batch=16)


@case
def cifar_edge_offsets_bf16() -> None:
    _sweep([0, 1, 4, 7, 8], torch.bfloat16, batch=13)


@case
def cifar_edge_offsets_fp16() -> None:
    _sweep([0, 4, 8], torch.float16, batch=7)


@case
def cifar_b13_random_bf16() -> None:
    check(_cifar(13, seed=6), torch.bfloat16)


@case
def cifar_b7_random_fp64() -> None:
    check(_cifar(7, seed=7), torch.float64)


@case
def cifar_b1_fp32() -> None:
    check(_cifar(1, seed=8), torch.float32)


@case
def cifar_crop_only_fp32() -> None:
    check(_cifar(7, seed=9, flip=False), torch.float32)


@case
def cifar_flip_only_fp32() -> None:
    check(_cifar(7, seed=10, crop=False), torch.float32)


@case
def cifar_no_augment_fp32() -> None:
    check(_cifar(7, seed=11, crop=False, flip=False), torch.float32)


@case
def cifar_pad0_offsets_ignored_fp32() -> None:
    """Offsets with pad=0 are ignored by the reference; the kernel must agree."""
    args = _cifar(7, seed=12)
    args.update(pad=0, crop_offsets=torch.zeros(7, 2, dtype=torch.long))
    check(args, torch.float32)


@case
def cifar_other_int_dtypes_strided_fp32() -> None:
    """int32 indices/offsets, int64 0/1 flips, non-contiguous offsets, scalar mean/std."""
    args = _cifar(13, seed=13)
    args["indices"] = args["indices"].to(torch.int32)
    args["crop_offsets"] = args["crop_offsets"].to(torch.int32).t().contiguous().t()
    assert not args["crop_offsets"].is_contiguous()
    args["flips"] = args["flips"].to(torch.int64)
    args.update(mean=torch.tensor(0.5), std=torch.tensor(0.25))
    check(args, torch.float32)


# --- Odd shapes: tiles that straddle images, non-power-of-two sizes ---


@case
def odd_shape_20x30x3_partial_tiles_fp32() -> None:
    """1800 elements per image: two tiles of 1024, the second partial."""
    g = torch.Generator().manual_seed(14)
    args = {
        "data": _dataset(20, 30, 3, seed=14),
        "indices": _indices(5, seed=14),
        "crop_offsets": torch.randint(0, 7, (5, 2), generator=g),
        "flips": torch.rand(5, generator=g) < 0.5,
        "pad": 3,
        "perm": _perm(20, 30, seed=14),
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
    }
    check(args, torch.float32)


@case
def odd_shape_7x9x5_bf16() -> None:
    g = torch.Generator().manual_seed(15)
    args = {
        "data": _dataset(7, 9, 5, seed=15),
        "indices": _indices(3, seed=15),
        "crop_offsets": torch.randint(0, 7, (3, 2), generator=g),
        "flips": torch.tensor([True, False, True]),
        "pad": 3,
        "mean": torch.rand(5, generator=g),
        "std": torch.rand(5, generator=g) + 0.1,
    }
    check(args, torch.bfloat16)


@case
def empty_batch() -> None:
    from kernels.triton_batch import prepare_batch_triton

    empty = torch.zeros(0, dtype=torch.long)
    data = _dataset(32, 32, 3, seed=16)
    out = prepare_batch_triton(
        data, empty, empty.view(0, 2), empty.bool(), pad=4, mean=CIFAR_MEAN, std=CIFAR_STD
    )
    assert out.shape == (0, 3, 32, 32), out.shape


@case
def dispatcher_backend_triton() -> None:
    """kernels.prepare_batch(backend="triton") runs the kernel on CPU under the interpreter."""
    args = _cifar(7, seed=17)
    got = prepare_batch(**args, out_dtype=torch.float32, backend="triton")
    ref = prepare_batch_reference(**args, out_dtype=torch.float32)
    assert torch.equal(got, ref)


@case
def reciprocal_division_cannot_break_fp32_exactness() -> None:
    """Issue 25: with the device's division (a * (1/b)) in force inside the reference call,
    kernel and reference still agree bit for bit in fp32; the old formula would not have."""
    from kernels.triton_batch import prepare_batch_triton

    for args in (_cifar(16, seed=30), _mnist(7, seed=31, perm=True)):
        kernel = prepare_batch_triton(**args, out_dtype=torch.float32)
        table = normalisation_table(args["mean"], args["std"], args["data"].shape[-1])
        no_stats = {k: v for k, v in args.items() if k not in ("mean", "std")}
        with device_style_division():
            ref = prepare_batch_reference(**args, out_dtype=torch.float32)
            assert torch.equal(kernel, ref), "reference under CUDA-style division differs"
            ref_table = prepare_batch_reference(**no_stats, table=table, out_dtype=torch.float32)
            assert torch.equal(kernel, ref_table), "reference with table= differs"
            old = old_reference(args)
        # Teeth: the old formula matches on CPU (exact division) and breaks under the patch.
        assert torch.equal(kernel, old_reference(args)), "old formula differs even on CPU"
        n_diff = int((old != kernel).sum())
        assert n_diff > 0, "patch had no effect: the old formula matched under a * (1/b)"


@case
def dispatcher_backend_triton_with_table() -> None:
    """prepare_batch(table=...) through the kernel equals the reference given mean/std."""
    args = _cifar(7, seed=19)
    no_stats = {k: v for k, v in args.items() if k not in ("mean", "std")}
    table = normalisation_table(CIFAR_MEAN, CIFAR_STD)
    got = prepare_batch(**no_stats, table=table, out_dtype=torch.float32, backend="triton")
    assert torch.equal(got, prepare_batch_reference(**args, out_dtype=torch.float32))


def _device_loader_batches(backend: str, dtype: torch.dtype) -> list[tuple[Any, Any]]:
    """All batches of epoch 1 of a small augmented CIFAR-shaped `device` loader on CPU."""
    from bench.data.loaders import LoaderConfig, make_loader
    from bench.spec.datasets import DatasetArrays

    rng = np.random.default_rng(18)
    x = rng.integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8)
    data = DatasetArrays("t", "cifar10", x, np.arange(N_IMAGES), x[:4], np.arange(4),
                         [str(i) for i in range(10)], real=False, source="test")
    cfg = LoaderConfig(split="train", batch_size=6, device=torch.device("cpu"),
                       dtype=dtype, channels_last=True, augment=True,
                       norm="cifar10", shuffle=True, drop_last=True, seed=4,
                       options={"backend": backend})
    loader = make_loader("device", data, cfg)
    loader.set_epoch(1)
    return list(loader)


@case
def gpu_loader_batches_identical_through_both_paths() -> None:
    """The `gpu` loader yields the same batches with the kernel as with the reference."""
    batches = {b: _device_loader_batches(b, torch.bfloat16) for b in ("triton", "reference")}
    assert len(batches["triton"]) == 3
    for (xt, yt), (xr, yr) in zip(batches["triton"], batches["reference"], strict=True):
        assert torch.equal(yt, yr)
        # bf16: the interpreter's cast truncates where CUDA rounds; allow one bf16 step.
        diff = (xt.float() - xr.float()).abs()
        assert bool((diff <= _ulp(xr.float(), torch.bfloat16)).all()), float(diff.max())


@case
def device_loader_fp32_bit_identical_through_both_paths() -> None:
    """fp32 through the loader's one table: kernel and reference batches are equal bit for bit."""
    kernel = _device_loader_batches("triton", torch.float32)
    ref = _device_loader_batches("reference", torch.float32)
    assert len(kernel) == len(ref) == 3
    for (xt, yt), (xr, yr) in zip(kernel, ref, strict=True):
        assert torch.equal(yt, yr)
        assert torch.equal(xt, xr), int((xt != xr).sum())


def _interpreter_check() -> tuple[bool, str]:
    from kernels.triton_batch import _kernel

    kind = type(_kernel()).__name__
    return kind == "InterpretedFunction", f"jitted kernel is a {kind}"


def main(argv: list[str]) -> int:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first triton import
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError or a broken install
        print(json.dumps({"name": "import", "ok": False, "msg": f"cannot import triton: {exc}"}))
        return EXIT_NO_TRITON
    ok, msg = _interpreter_check()
    print(json.dumps({"name": "interpreter_active", "ok": ok, "msg": msg}), flush=True)
    if not ok:
        return 1
    names = argv or list(CASES)
    failed = 0
    for name in names:
        try:
            CASES[name]()
            res = {"name": name, "ok": True, "msg": ""}
        except Exception as exc:  # report every case, not just the first failure
            failed += 1
            res = {"name": name, "ok": False, "msg": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(res), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
