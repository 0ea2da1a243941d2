"""Tests for ``kernels``: the reference's semantics, the dispatcher, and the Triton kernel.

The kernel is checked on CPU with Triton's interpreter (``TRITON_INTERPRET=1``) in one
subprocess (tests/_kernel_checks.py), so the flag is in force before Triton is first imported
regardless of what other tests in this process imported. Each case there is one test here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import kernels
from kernels import prepare_batch, prepare_batch_reference

REPO = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("_kernel_checks.py")


def _load_helper() -> ModuleType:
    """Import the helper by path (only for its case names; this does not import Triton)."""
    spec = importlib.util.spec_from_file_location("_kernel_checks", HELPER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_helper = _load_helper()
CASE_NAMES = ["interpreter_active", *_helper.CASES]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}


@pytest.fixture(scope="module")
def interpreter_results() -> dict[str, dict[str, Any]]:
    """Run every interpreter case once, in a fresh process; map case name to its result."""
    proc = subprocess.run(
        [sys.executable, str(HELPER)],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == _helper.EXIT_NO_TRITON:
        pytest.skip(lines[0]["msg"] if lines else "triton cannot be imported")
    results = {r["name"]: r for r in lines}
    if not results:
        pytest.fail(f"helper produced no results (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return results


@pytest.mark.parametrize("name", CASE_NAMES)
def test_triton_kernel_matches_reference_interpreted(
    name: str, interpreter_results: dict[str, dict[str, Any]]
) -> None:
    res = interpreter_results.get(name)
    assert res is not None, f"case {name} did not run (helper crashed or stopped early)"
    assert res["ok"], res["msg"]


def test_import_does_not_import_triton() -> None:
    """``import kernels`` must work without Triton and must not fix TRITON_INTERPRET early."""
    code = "import sys, kernels, kernels.triton_batch; assert 'triton' not in sys.modules"
    env = {k: v for k, v in _env().items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


# --- The reference itself, against an independent oracle (torchvision functional ops) ---


def test_reference_matches_torchvision_crop_flip_normalize() -> None:
    tvf = pytest.importorskip("torchvision.transforms.functional")
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (4, 8, 6, 3), dtype=torch.uint8, generator=g)
    mean, std = torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.3, 0.2, 0.25])
    pad = 2
    cases = [(0, 0, 0, False), (3, 4, 4, True), (1, 0, 4, True), (2, 3, 1, False)]
    idx = torch.tensor([c[0] for c in cases])
    offs = torch.tensor([[c[1], c[2]] for c in cases])
    flips = torch.tensor([c[3] for c in cases])
    got = prepare_batch_reference(data, idx, offs, flips, pad=pad, mean=mean, std=std)
    assert got.is_contiguous(memory_format=torch.channels_last)
    for k, (i, dy, dx, flip) in enumerate(cases):
        img = tvf.pad(data[i].permute(2, 0, 1), [pad])  # CHW, zero padding on all sides
        img = tvf.crop(img, dy, dx, 8, 6)
        if flip:
            img = tvf.hflip(img)
        exp = tvf.normalize(img.float() / 255.0, mean.tolist(), std.tolist())
        assert torch.equal(got[k], exp)  # same fp32 ops as ToTensor + Normalize on CPU


def test_reference_permutation_semantics() -> None:
    """out_flat[i] = img_flat[perm[i]], applied after crop and flip."""
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, 256, (3, 5, 4, 1), dtype=torch.uint8, generator=g)
    perm = torch.randperm(20, generator=g)
    one, zero = torch.tensor([1.0]), torch.tensor([0.0])
    idx, flips = torch.tensor([2, 0]), torch.tensor([True, False])
    got = prepare_batch_reference(data, idx, None, flips, perm=perm, mean=zero, std=one)
    for k in range(2):
        img = data[idx[k], :, :, 0].float() / 255.0
        if flips[k]:
            img = img.flip(1)
        torch.testing.assert_close(got[k, 0].reshape(-1), img.reshape(-1)[perm], rtol=0, atol=0)


# --- The normalisation table (issue 25: one host-built table, so no device division) ---

CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
CIFAR_STD = torch.tensor([0.2470, 0.2435, 0.2616])


def _fp32_formula(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Today's CPU arithmetic, per byte: (v / 255 - mean) / std in fp32, exact divisions."""
    v = torch.arange(256, dtype=torch.float32)
    return ((v[None, :] / 255.0) - mean[:, None]) / std[:, None]


def test_table_entries() -> None:
    table = kernels.normalisation_table(CIFAR_MEAN, CIFAR_STD)
    assert table.shape == (3, 256) and table.dtype == torch.float32
    assert torch.equal(table[:, 0], -CIFAR_MEAN / CIFAR_STD)  # byte 0, also the crop padding
    assert bool((table.diff(dim=1) > 0).all()), "not strictly increasing in the byte value"
    assert torch.equal(table, _fp32_formula(CIFAR_MEAN, CIFAR_STD))


def test_table_broadcasts_and_validates() -> None:
    one = kernels.normalisation_table(0.5, torch.tensor(0.25), channels=3)
    assert one.shape == (3, 256) and torch.equal(one[0], one[2])
    assert torch.equal(one[0], _fp32_formula(torch.tensor([0.5]), torch.tensor([0.25]))[0])
    lists = kernels.normalisation_table([0.4914, 0.4822, 0.4465], (0.2470, 0.2435, 0.2616))
    assert torch.equal(lists, kernels.normalisation_table(CIFAR_MEAN, CIFAR_STD))
    with pytest.raises(ValueError, match="entries"):
        kernels.normalisation_table(CIFAR_MEAN, CIFAR_STD, channels=1)


def test_reciprocal_form_differs_in_fp32() -> None:
    """The bug's premise, so the division tests have teeth: x / 255 != x * (1/255) in fp32
    for many bytes, and the emulation in _kernel_checks really switches torch to that form."""
    x = torch.arange(256, dtype=torch.float32)
    exact = x / 255.0
    recip = x * torch.tensor(1.0, dtype=torch.float32).div(255.0)
    assert int((exact != recip).sum()) > 50
    with _helper.device_style_division():
        emulated = [x / 255.0, x.div(255.0), torch.div(x, 255.0), x.clone().div_(255.0)]
        y = x.clone()
        y /= 255.0
    for got in [*emulated, y]:
        assert torch.equal(got, recip)
    assert torch.equal(x / 255.0, exact), "division not restored after the block"


def test_reference_division_free_under_device_style_division() -> None:
    """Reference output does not change when torch divides like CUDA; the old formula does."""
    args = _small_batch()
    plain = prepare_batch_reference(**args)
    old_plain = _helper.old_reference(args)
    with _helper.device_style_division():
        patched = prepare_batch_reference(**args)
        old_patched = _helper.old_reference(args)
    assert torch.equal(plain, patched)
    assert torch.equal(plain, old_plain), "CPU values changed from the pre-table reference"
    assert not torch.equal(old_plain, old_patched), "emulation had no effect on the old formula"


def test_reference_table_argument() -> None:
    args = _small_batch()
    stats = {k: args.pop(k) for k in ("mean", "std")}
    table = kernels.normalisation_table(**stats)
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        got = prepare_batch_reference(**args, table=table, out_dtype=dtype)
        assert torch.equal(got, prepare_batch_reference(**args, **stats, out_dtype=dtype))
    with pytest.raises(ValueError, match="not both"):
        prepare_batch_reference(**args, **stats, table=table)
    with pytest.raises(ValueError, match="mean and std"):
        prepare_batch_reference(**args)
    with pytest.raises(ValueError, match="table must be"):
        prepare_batch_reference(**args, table=table[:1])
    with pytest.raises(ValueError, match="table must be"):
        prepare_batch_reference(**args, table=table.double())


def test_reference_padding_is_table_zero() -> None:
    """Padded pixels (crop at offset 0 of pad 4) take table[c, 0] = -mean / std."""
    args = {**_small_batch(), "crop_offsets": torch.zeros(3, 2, dtype=torch.long)}
    out = prepare_batch_reference(**args)
    expected = (-args["mean"] / args["std"])[None, :, None, None].expand(3, 3, 4, 32)
    assert torch.equal(out[:, :, :4, :], expected)


def test_device_loader_builds_table_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader's batches use its one table: no table is built per batch."""
    import numpy as np

    import kernels.reference as ref_mod
    from bench.data.loaders import LoaderConfig, make_loader
    from bench.spec.datasets import DatasetArrays

    x = np.random.default_rng(3).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    data = DatasetArrays("t", "cifar10", x, np.arange(12), x[:2], np.arange(2),
                         [str(i) for i in range(10)], real=False, source="test")
    cfg = LoaderConfig(split="train", batch_size=4, device=torch.device("cpu"),
                       dtype=torch.float32, channels_last=True, augment=False, norm="cifar10",
                       shuffle=False, drop_last=True, seed=0, options={"backend": "reference"})
    loader = make_loader("device", data, cfg)
    assert loader.table.shape == (3, 256)
    calls: list[tuple[Any, ...]] = []
    real = ref_mod.normalisation_table

    def counting(*a: Any, **k: Any) -> torch.Tensor:
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(ref_mod, "normalisation_table", counting)
    batches = list(loader)
    assert len(batches) == 3 and not calls, f"{len(calls)} tables built while iterating"
    mean, std = (torch.tensor(v) for v in cfg.mean_std)
    images = torch.from_numpy(x)
    for i, (xb, _) in enumerate(batches):
        idx = torch.arange(4 * i, 4 * i + 4)
        assert torch.equal(xb, prepare_batch_reference(images, idx, mean=mean, std=std))


def test_table_arithmetic_stays_out_of_compiled_graphs() -> None:
    """Under torch.compile (whose CUDA lowering turns `/ 255` into `* (1/255)`), the table is
    still computed eagerly on the host: no division reaches any captured graph."""
    graphs: list[list[str]] = []

    def record(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append([str(n.target) for n in gm.graph.nodes if n.op.startswith("call")])
        return gm.forward

    args = _small_batch()
    got = torch.compile(prepare_batch_reference, backend=record)(**args)
    assert graphs, "nothing was compiled"
    divs = [t for g in graphs for t in g if "div" in t]
    assert not divs, f"division traced into a compiled graph: {divs}"
    assert torch.equal(got, prepare_batch_reference(**args))


# --- Dispatcher ---


def _small_batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(2)
    return {
        "data": torch.randint(0, 256, (10, 32, 32, 3), dtype=torch.uint8, generator=g),
        "indices": torch.tensor([0, 9, 3]),
        "crop_offsets": torch.randint(0, 9, (3, 2), generator=g),
        "flips": torch.tensor([True, False, True]),
        "pad": 4,
        "mean": torch.tensor([0.49, 0.48, 0.45]),
        "std": torch.tensor([0.25, 0.24, 0.26]),
    }


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_dispatch_cpu_uses_reference(backend: str) -> None:
    args = _small_batch()
    out = prepare_batch(**args, out_dtype=torch.bfloat16, backend=backend)
    assert torch.equal(out, prepare_batch_reference(**args, out_dtype=torch.bfloat16))


def test_dispatch_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        prepare_batch(**_small_batch(), backend="cuda")


def test_dispatch_triton_on_cpu_without_interpreter_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing Triton where it cannot run must fail loudly, never fall back silently."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="triton"):
        prepare_batch(**_small_batch(), backend="triton")


def test_triton_available_is_bool() -> None:
    assert isinstance(kernels.triton_available(), bool)


def test_triton_wrapper_validates_arguments() -> None:
    """Argument errors surface before any Triton import or launch."""
    from kernels.triton_batch import prepare_batch_triton

    args = _small_batch()
    with pytest.raises(ValueError, match="out must be"):
        prepare_batch_triton(**args, out=torch.empty(3, 3, 32, 32))  # NCHW-shaped buffer
    with pytest.raises(ValueError, match="out_dtype"):
        prepare_batch_triton(**args, out_dtype=torch.int32)
    with pytest.raises(ValueError, match="crop_offsets"):
        prepare_batch_triton(**{**args, "crop_offsets": torch.zeros(3, dtype=torch.long)})
