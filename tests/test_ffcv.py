"""ffcv conversion, verification and loader, on small generated data.

Every ffcv Loader costs a numba compile (2-25 s on this shared 2-core machine), so the loaders
are module fixtures shared by several tests: MNIST-shaped test split (permuted), CIFAR-shaped
test split, CIFAR-shaped train split with augmentation. Labels are unique sample ids, which
makes coverage ("each sample once per epoch") a set comparison. Loads of damaged files run in
a subprocess with a timeout: a regression there could segfault or hang.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_interrupts import signals_as_at_a_terminal

from bench.data.ffcv import INSTALL_HINT
from bench.data.ffcv.verify import read_header, sidecar_path, verify_beton
from bench.data.loaders.base import NORMS, LoaderConfig
from bench.errors import BenchError
from bench.spec.datasets import DatasetArrays, apply_permutation, pixel_permutation

HAVE_FFCV = importlib.util.find_spec("ffcv") is not None
ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def make_data(name: str, family: str, n_train: int, n_test: int, seed: int,
              perm_seed: int | None = None) -> DatasetArrays:
    """Random uint8 images; labels are unique ids (train 0.., test 10_000..)."""
    shape = (28, 28, 1) if family == "mnist" else (32, 32, 3)
    rng = np.random.default_rng(seed)
    tx = rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8)
    vx = rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8)
    ty = np.arange(n_train, dtype=np.int64)
    vy = np.arange(10_000, 10_000 + n_test, dtype=np.int64)
    perm = None
    if perm_seed is not None:
        perm = pixel_permutation(perm_seed, shape[0] * shape[1])
        tx, vx = apply_permutation(tx, perm), apply_permutation(vx, perm)
    return DatasetArrays(name, family, tx, ty, vx, vy, [str(i) for i in range(10)],
                         real=False, source="generated", perm=perm)


def cfg_for(split: str, beton_dir: Path, norm: str, **kw) -> LoaderConfig:
    base = dict(split=split, batch_size=32, device=CPU, norm=norm, workers=2,
                options={"beton_dir": str(beton_dir), "progress": False})
    base.update(kw)
    return LoaderConfig(**base)


def reference(x_nhwc: np.ndarray, norm: str) -> np.ndarray:
    """Normalised NCHW float64, torchvision ToTensor + Normalize semantics."""
    mean, std = (np.array(v, dtype=np.float64).reshape(1, -1, 1, 1) for v in NORMS[norm])
    return (x_nhwc.transpose(0, 3, 1, 2).astype(np.float64) / 255.0 - mean) / std


def to_pixels(x: torch.Tensor, norm: str) -> np.ndarray:
    """Undo the normalisation: NCHW float -> NHWC uint8 (exact when within 0.5/255)."""
    mean, std = (np.array(v, dtype=np.float64).reshape(1, -1, 1, 1) for v in NORMS[norm])
    px = np.rint((x.float().numpy().astype(np.float64) * std + mean) * 255.0)
    assert px.min() >= 0 and px.max() <= 255
    return px.astype(np.uint8).transpose(0, 2, 3, 1)


def epoch(loader) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys), [len(y) for y in ys]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def beton_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("betons")


@pytest.fixture(scope="module")
def mnist_perm() -> DatasetArrays:
    return make_data("gen-mnist-perm", "mnist", 40, 70, seed=1, perm_seed=7)


@pytest.fixture(scope="module")
def cifar() -> DatasetArrays:
    return make_data("gen-cifar", "cifar10", 230, 90, seed=2)


@pytest.fixture(scope="module")
def cifar_test_loader(cifar, beton_dir):
    from bench.data.loaders.ffcv_loader import build

    return build(cifar, cfg_for("test", beton_dir, "cifar10", channels_last=True))


@pytest.fixture(scope="module")
def cifar_train_loader(cifar, beton_dir):
    from bench.data.loaders.ffcv_loader import build

    return build(cifar, cfg_for("train", beton_dir, "cifar10", batch_size=64, shuffle=True,
                                drop_last=True, augment=True, channels_last=True, seed=5))


# ----------------------------------------------------------------------------- loader
@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_mnist_perm_round_trip_exact(mnist_perm, beton_dir):
    """Sequential test split: every sample once, in order, pixel-exact after the torch
    permutation; the tail batch is kept; the file stores un-permuted MNIST (shared)."""
    from bench.data.ffcv.convert import base_arrays, fingerprint_arrays
    from bench.data.loaders.ffcv_loader import build

    loader = build(mnist_perm, cfg_for("test", beton_dir, "mnist", channels_last=False))
    assert len(loader) == 3 and loader.num_samples == 70
    x, y, sizes = epoch(loader)
    assert sizes == [32, 32, 6]
    assert y.dtype == torch.int64 and y.tolist() == list(range(10_000, 10_070))
    assert x.dtype == torch.float32 and x.shape == (70, 1, 28, 28) and x.is_contiguous()
    np.testing.assert_allclose(x.numpy(), reference(mnist_perm.test_x, "mnist"), atol=1e-5)
    assert np.array_equal(to_pixels(x, "mnist"), mnist_perm.test_x)
    # the .beton holds plain MNIST under the base name, shared by every permutation seed
    meta = json.loads(sidecar_path(beton_dir / "mnist-test.beton").read_text())
    bx, by = base_arrays(mnist_perm, "test")
    assert meta["source_fingerprint"] == fingerprint_arrays(bx, by)
    assert not np.array_equal(bx, mnist_perm.test_x)
    d = loader.describe()
    assert d["name"] == "ffcv" and d["order"] == "sequential" and d["permuted"]
    assert d["drop_last"] is False and d["os_cache"] is True and d["workers"] == 2
    assert d["compile_s"] is not None and d["beton"].endswith("mnist-test.beton")


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_cifar_round_trip_exact(cifar, cifar_test_loader):
    """RGB raw round trip, channels-last output, tail batch kept, two identical epochs."""
    loader = cifar_test_loader
    assert len(loader) == 3 and loader.num_samples == 90
    for e in range(2):
        loader.set_epoch(e)
        x, y, sizes = epoch(loader)
        assert sizes == [32, 32, 26]
        assert y.tolist() == list(range(10_000, 10_090))
        assert x.shape == (90, 3, 32, 32)
        assert x.is_contiguous(memory_format=torch.channels_last)
        np.testing.assert_allclose(x.numpy(), reference(cifar.test_x, "cifar10"), atol=1e-5)
        assert np.array_equal(to_pixels(x, "cifar10"), cifar.test_x)


def _augment_candidates(img: np.ndarray, pad: int = 4) -> np.ndarray:
    """All flips x translations (zero fill) of one HWC image: (2 * (2 pad + 1)^2, H, W, C)."""
    h, w, _ = img.shape
    out = []
    for src in (img, img[:, ::-1]):
        padded = np.pad(src, ((pad, pad), (pad, pad), (0, 0)))
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                out.append(padded[dy:dy + h, dx:dx + w])
    return np.stack(out)


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_train_epoch_coverage_order_and_augmentation(cifar, cifar_train_loader):
    loader = cifar_train_loader
    assert len(loader) == 230 // 64 and loader.num_samples == 192  # drop_last
    orders = []
    for e in (0, 1, 0):
        loader.set_epoch(e)
        x, y, sizes = epoch(loader)
        assert sizes == [64, 64, 64]
        ids = y.tolist()
        assert len(set(ids)) == 192 and set(ids) <= set(range(230))  # each at most once
        orders.append(ids)
    assert orders[0] != orders[1] and orders[0] == orders[2]  # seeded by (seed, epoch)
    # every output is some flip + translation (zero fill) of its own source image
    px = to_pixels(x, "cifar10")
    changed = 0
    for img, i in zip(px, ids, strict=True):
        src = cifar.train_x[i]
        assert (_augment_candidates(src) == img).all(axis=(1, 2, 3)).any(), f"sample {i}"
        changed += not np.array_equal(img, src)
    assert changed > 150  # identity has probability 1/162 per image
    d = loader.describe()
    assert d["order"] == "random" and d["drop_last"] and len(d["augment"]) == 2

    # bf16 and NCHW-contiguous output: the cast and layout are torch ops after ffcv
    loader.cfg = dataclasses.replace(loader.cfg, dtype=torch.bfloat16, channels_last=False)
    try:
        xb, _, _ = epoch(loader)
    finally:
        loader.cfg = dataclasses.replace(loader.cfg, dtype=torch.float32, channels_last=True)
    assert xb.dtype == torch.bfloat16 and xb.is_contiguous()
    assert float(xb.float().abs().max()) < 3.0


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_pipeline_exception_is_bencherror_not_hang(cifar_test_loader, monkeypatch):
    """ffcv alone would wait forever when its pipeline thread raises."""
    from ffcv.loader.epoch_iterator import EpochIterator

    original = EpochIterator.run_pipeline

    def failing(self, b_ix, *args):
        if b_ix == 1:
            raise RuntimeError("injected failure")
        return original(self, b_ix, *args)

    monkeypatch.setattr(EpochIterator, "run_pipeline", failing)
    outcome: dict = {}

    def consume():
        try:
            outcome["batches"] = len(epoch(cifar_test_loader)[2])
        except BaseException as exc:  # noqa: BLE001
            outcome["exc"] = exc

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "ffcv loader hung on a pipeline exception"
    exc = outcome.get("exc")
    assert isinstance(exc, BenchError), outcome
    assert "injected failure" in str(exc) and "\n" not in str(exc)
    monkeypatch.setattr(EpochIterator, "run_pipeline", original)
    assert epoch(cifar_test_loader)[2] == [32, 32, 26]  # the loader recovers


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_distributed_needs_initialised_process_group(cifar, cifar_test_loader, beton_dir):
    from bench.data.loaders.ffcv_loader import build

    with pytest.raises(BenchError, match="torch.distributed"):
        build(cifar, cfg_for("test", beton_dir, "cifar10", world_size=2, rank=0))


# ----------------------------------------------------------------------------- conversion
@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_conversion_skipped_when_current_redone_when_source_changes(tmp_path):
    from bench.data.ffcv.convert import ensure_betons

    data = make_data("tiny", "mnist", 30, 20, seed=3)
    logs: list[str] = []
    run = lambda d, **kw: ensure_betons(d, tmp_path, progress=False, log=logs.append, **kw)
    first = run(data)
    assert {i.status for i in first.values()} == {"converted"}
    path = first["train"].path
    stamp = path.stat().st_mtime_ns
    again = run(data)
    assert {i.status for i in again.values()} == {"current"}
    assert path.stat().st_mtime_ns == stamp
    data.train_x[3, 5, 5, 0] ^= 0xFF  # one pixel of the source changes
    changed = run(data)
    assert changed["train"].status == "converted" and changed["test"].status == "current"
    assert any("source data changed" in m for m in logs)
    data.test_y[0] = 99  # a label changes
    assert run(data)["test"].status == "converted"
    assert run(data, force=True)["train"].status == "converted"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_interrupted_conversion_leaves_no_final_file(tmp_path, monkeypatch):
    import bench.data.ffcv.convert as conv

    data = make_data("tiny", "mnist", 30, 20, seed=4)
    path = tmp_path / "tiny-train.beton"

    def interrupt(*_a, **_k):
        raise KeyboardInterrupt

    # 1. killed after ffcv wrote the temporary file, before the rename
    monkeypatch.setattr(conv, "file_sha256", interrupt)
    with pytest.raises(KeyboardInterrupt):
        conv.ensure_betons(data, tmp_path, ["train"], progress=False)
    assert not path.exists() and not sidecar_path(path).exists()
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()

    # 2. a good file survives an interrupted rewrite untouched and still verifies
    good = conv.ensure_betons(data, tmp_path, ["train"], progress=False)["train"]
    monkeypatch.setattr(conv, "file_sha256", interrupt)
    with pytest.raises(KeyboardInterrupt):
        conv.ensure_betons(data, tmp_path, ["train"], force=True, progress=False)
    monkeypatch.undo()
    assert verify_beton(path)["beton"]["sha256"] == good.meta["beton"]["sha256"]

    # 3. killed between the rename and the sidecar: the file does not verify, and is redone
    monkeypatch.setattr(conv, "atomic_write_text", interrupt)
    with pytest.raises(KeyboardInterrupt):
        conv.ensure_betons(data, tmp_path, ["train"], force=True, progress=False)
    monkeypatch.undo()
    assert path.exists() and not sidecar_path(path).exists()
    with pytest.raises(BenchError, match="no sidecar"):
        verify_beton(path)
    assert conv.ensure_betons(data, tmp_path, ["train"], progress=False)["train"].status == (
        "converted")


# ----------------------------------------------------------------------------- verification
def _corrupt(src: Path, dst: Path, kind: str, seed: int = 0) -> None:
    """Copy `src` (+ sidecar) to `dst`, damaged in one of the ways ffcv mishandles."""
    raw = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    header = read_header(src, len(raw))
    if kind == "truncated-1000":
        raw = raw[:-1000]
    elif kind == "truncated-half":
        raw = raw[: len(raw) // 2]
    elif kind == "empty":
        raw = bytearray()
    elif kind == "random":
        raw = bytearray(rng.integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    elif kind == "flip-data":
        pos = header["alloc_table_ptr"] - 5000
        raw[pos] ^= 0x5A
    elif kind == "flip-alloc-table":
        pos = header["alloc_table_ptr"] + 24 * 3 + 9  # the ptr of the 4th allocation
        raw[pos] ^= 0x80
    else:
        raise ValueError(kind)
    dst.write_bytes(bytes(raw))
    sidecar_path(dst).write_text(sidecar_path(src).read_text())


KINDS = ["truncated-1000", "truncated-half", "empty", "random", "flip-data", "flip-alloc-table"]


@pytest.fixture(scope="module")
def good_beton(tmp_path_factory) -> Path:
    if not HAVE_FFCV:
        pytest.skip(f"ffcv not installed; {INSTALL_HINT}")
    from bench.data.ffcv.convert import ensure_betons

    out = tmp_path_factory.mktemp("good")
    data = make_data("gen-cifar-small", "cifar10", 40, 20, seed=6)
    return ensure_betons(data, out, ["test"], progress=False)["test"].path


@pytest.mark.ffcv
@pytest.mark.parametrize("kind", KINDS + ["foreign"])
def test_verify_rejects_damaged_files(kind, good_beton, tmp_path):
    bad = tmp_path / good_beton.name
    if kind == "foreign":  # a valid ffcv file that we did not write: no sidecar
        bad.write_bytes(good_beton.read_bytes())
    else:
        _corrupt(good_beton, bad, kind)
    with pytest.raises(BenchError) as info:
        verify_beton(bad)
    msg = str(info.value)
    assert str(bad) in msg and "\n" not in msg and "convert" in msg


@pytest.mark.ffcv
def test_verify_accepts_good_file_and_checks_expectations(good_beton):
    meta = verify_beton(good_beton, expected_samples=20)
    assert meta["num_samples"] == 20 and meta["fields"]["image"]["type"] == "RGBImageField"
    with pytest.raises(BenchError, match="expected 21"):
        verify_beton(good_beton, expected_samples=21)
    with pytest.raises(BenchError, match="other source data"):
        verify_beton(good_beton, expected_fingerprint="sha256:0")


_SUBPROCESS = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    import torch
    from test_ffcv import make_data, cfg_for
    from bench.errors import BenchError
    from bench.data.loaders.ffcv_loader import build

    data = make_data("gen-cifar-small", "cifar10", 40, 20, seed=6)
    try:
        build(data, cfg_for("test", {out!r}, "cifar10"))
        print(json.dumps({{"ok": True}}))
    except BenchError as exc:
        print(json.dumps({{"error": str(exc)}}))
""")


@pytest.mark.ffcv
@pytest.mark.parametrize("kind", ["truncated-1000", "random", "empty", "flip-alloc-table"])
def test_build_on_damaged_file_fails_cleanly_in_subprocess(kind, good_beton, tmp_path):
    """End to end through `build` (what `bench run --loader ffcv` calls): one-line error,
    no segfault, no hang, and ffcv never opens the file."""
    _corrupt(good_beton, tmp_path / good_beton.name, kind)
    code = _SUBPROCESS.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(tmp_path))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" in out and good_beton.name in out["error"], out
    assert time.perf_counter() - t0 < 120


# ----------------------------------------------------------------------------- no ffcv
def test_missing_ffcv_is_one_line_bencherror(monkeypatch, tmp_path):
    from bench.data.ffcv import require_ffcv
    from bench.data.loaders.ffcv_loader import build

    monkeypatch.setitem(sys.modules, "ffcv", None)
    with pytest.raises(BenchError) as info:
        require_ffcv()
    msg = str(info.value)
    assert "apt-get install pkg-config libopencv-dev libturbojpeg0-dev" in msg
    assert "pip install -e '.[ffcv]'" in msg and "\n" not in msg
    data = make_data("tiny", "mnist", 10, 10, seed=0)
    with pytest.raises(BenchError, match="pip install"):
        build(data, cfg_for("train", tmp_path, "mnist"))


# ----------------------------------------------------------------------------- loader bench
class _FakeLoader:
    def __init__(self, n_batches: int, batch: int, delay: float) -> None:
        self.n, self.b, self.delay = n_batches, batch, delay
        self.epochs: list[int] = []

    def set_epoch(self, e: int) -> None:
        self.epochs.append(e)

    def __len__(self) -> int:
        return self.n

    @property
    def num_samples(self) -> int:
        return self.n * self.b

    def __iter__(self):
        for _ in range(self.n):
            time.sleep(self.delay)
            yield torch.zeros(self.b, 3, 4, 4), torch.zeros(self.b, dtype=torch.long)

    def describe(self) -> dict:
        return {"name": "fake"}


def test_loader_bench_table_with_fake_loaders():
    """The table's shape and the figures' consistency, never which loader was faster: two
    sleeps timed on a shared machine may come out in either order."""
    from bench.data.loader_bench import bench_loaders, format_table

    made: dict[str, _FakeLoader] = {}

    def factory(name, data, cfg):
        if name == "ffcv":
            raise BenchError("ffcv is not available; install it")
        made[name] = _FakeLoader(4, 8, 0.001)
        return made[name]

    cfg = cfg_for("train", Path("."), "cifar10", batch_size=8)
    rows = bench_loaders(None, ["torch", "gpu", "ffcv"], cfg, epochs=3, factory=factory)
    assert [r.loader for r in rows] == ["torch", "gpu", "ffcv"]
    torch_row, gpu_row, ffcv_row = rows
    for row in (torch_row, gpu_row):
        assert made[row.loader].epochs == [0, 1, 2, 3]  # one warm-up + 3 timed, each set_epoch'ed
        assert len(row.epoch_s) == 3 and row.images_per_epoch == 32 and row.error is None
        assert row.describe == {"name": "fake"}
        figures = [row.warmup_s, *row.epoch_s, *row.rates, row.median]  # each holds sleeps
        assert all(v is not None and math.isfinite(v) and v > 0 for v in figures), figures
        assert row.build_s is not None and math.isfinite(row.build_s) and row.build_s >= 0
        assert len(row.rates) == 3 and min(row.rates) <= row.median <= max(row.rates)
    assert ffcv_row.error and "not available" in ffcv_row.error and ffcv_row.median is None
    table = format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows) and set(lines[1]) == {"-"}
    assert "images/s median" in lines[0] and "vs torch" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["torch", "gpu", "ffcv"]
    assert lines[2].rstrip().endswith("1.0x")
    assert lines[3].split()[-1] == f"{gpu_row.median / torch_row.median:.1f}x"
    assert lines[2].split()[4] == lines[3].split()[4] == "3"  # the timed epochs column
    assert "error: BenchError: ffcv is not available" in lines[4]


def test_verbs_register_and_validate():
    import argparse

    from bench.data import loader_bench
    from bench.data.ffcv import convert

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    convert.register(sub)
    loader_bench.register(sub)
    a = parser.parse_args(["convert", "mnist", "cifar10", "--out", "x"])
    assert a.func is convert.handler and a.datasets == ["mnist", "cifar10"] and a.out == "x"
    b = parser.parse_args(["loaders", "--loaders", "torch,nope"])
    assert b.func is loader_bench.handler and b.batch_size == 512 and b.epochs == 3
    with pytest.raises(BenchError, match="nope"):
        b.func(b)


# ----------------------------------------------------------------------------- reliability
# Issue 15: `bench convert` under signals, kill -9 and a failing writer, in subprocesses (the
# default SIGINT disposition, a new session so that a terminal's Ctrl-C can be imitated by
# signalling the whole process group). The writer is slowed down per sample and reports its
# PID in a marker file, so the signal lands while the child is writing.
_CONVERT = textwrap.dedent("""
    import errno, os, sys, time
    sys.path[:0] = [{root!r}]
    import bench.data.ffcv.convert as conv
    mode, marker = {mode!r}, {marker!r}
    if mode == "slow":
        original = conv._ArrayDataset.__getitem__
        def slow(self, i):
            if not os.path.exists(marker):
                with open(marker + ".part", "w") as f:
                    f.write(str(os.getpid()))
                os.rename(marker + ".part", marker)
            time.sleep(0.002)
            return original(self, i)
        conv._ArrayDataset.__getitem__ = slow
    elif mode == "enospc":
        from ffcv.memory_allocator import MemoryAllocator
        def full(self):
            raise OSError(errno.ENOSPC, "No space left on device")
        MemoryAllocator.flush_page = full
    from bench.cli import main

    sys.exit(main(["convert", "synthetic-mnist", "--out", {out!r}, "--no-progress"]))
""")


def _start_convert(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, Path, Path]:
    out, marker = tmp_path / "out", tmp_path / "writer.pid"
    code = _CONVERT.format(root=str(ROOT), mode=mode, marker=str(marker), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                            preexec_fn=signals_as_at_a_terminal)
    return proc, out, marker


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    t0 = time.monotonic()
    while not marker.exists():
        assert proc.poll() is None, proc.communicate(timeout=120)
        assert time.monotonic() - t0 < timeout, "the writer never started"
        time.sleep(0.05)
    time.sleep(0.3)  # well into the write
    return int(marker.read_text())


def _gone(pid: int, timeout: float = 30) -> bool:
    """The process no longer runs (absent, or a zombie that nothing reaps in a container)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _finish(proc: subprocess.Popen) -> tuple[int, list[str]]:
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a hang: never leave it behind
        os.killpg(proc.pid, 9)
        proc.communicate(timeout=120)
        pytest.fail("bench convert hung")
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
@pytest.mark.parametrize("sig,to_group,code", [
    ("SIGINT", True, 130),  # Ctrl-C at a terminal: the whole foreground process group
    ("SIGTERM", False, 143),  # CI cancel, timeout(1), Slurm, Kubernetes
    ("SIGHUP", False, 129),  # the terminal went away
])
def test_signal_during_convert_stops_cleanly(tmp_path, sig, to_group, code):
    """Before: SIGTERM orphaned the writer child holding the lock (every later convert of the
    file waited for ever) with the .tmp left; Ctrl-C printed a line and hung at exit."""
    import signal

    proc, out, marker = _start_convert(tmp_path, "slow")
    child = _wait_for(marker, proc)
    (os.killpg if to_group else os.kill)(proc.pid, getattr(signal, sig))
    rc, lines = _finish(proc)
    assert rc == code, lines
    assert len(lines) == 1 and lines[0].startswith("bench: stopped by") and sig in lines[0]
    assert _gone(child), "the ffcv writer child outlived bench convert"
    assert sorted(p.name for p in out.iterdir()) == []  # no .tmp, no .lock, no .beton


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_killed_convert_orphans_nothing_and_the_next_one_cleans_up(tmp_path):
    """kill -9 cannot be handled: the writer child dies with its parent (PDEATHSIG), the lock
    is free, and the next conversion removes the stale .tmp in one line."""
    from bench.data.ffcv.convert import ensure_betons

    proc, out, marker = _start_convert(tmp_path, "slow")
    child = _wait_for(marker, proc)
    os.kill(proc.pid, 9)
    proc.communicate(timeout=120)  # returns: no orphan holds its pipes open
    assert _gone(child), "the ffcv writer child was orphaned"
    stale = [p.name for p in out.glob(".*.tmp")]
    assert stale == [f".synthetic-mnist-train.beton.{proc.pid}.tmp"]
    logs: list[str] = []
    data = make_data("synthetic-mnist", "mnist", 30, 20, seed=8)
    info = ensure_betons(data, out, ["train"], progress=False, log=logs.append)["train"]
    assert info.status == "converted" and logs == [
        f"ffcv: removed 1 temporary file(s) of synthetic-mnist-train.beton left by an "
        f"interrupted conversion ({stale[0]})"]
    assert not list(out.glob(".*"))


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_failing_writer_is_one_line_and_no_hang(tmp_path):
    """A writer child failing (disk full) with 60 chunks still queued. Before: the child's
    traceback, then a hang at exit (the queue's feeder thread blocked on a full pipe)."""
    proc, out, _ = _start_convert(tmp_path, "enospc")
    rc, lines = _finish(proc)
    assert rc == 2 and lines == [
        "bench: error: ffcv writer process failed (OSError: [Errno 28] No space left on "
        "device); no file was written"], lines
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_conversion_creates_its_folder_and_leaves_no_lock(tmp_path, monkeypatch):
    """What `run --loader ffcv` does on a fresh cache: the folder does not exist yet."""
    from bench.data.ffcv.convert import ensure_betons

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "fresh" / "cache"))
    data = make_data("tiny", "mnist", 30, 20, seed=11)
    info = ensure_betons(data, None, ["test"], progress=False)["test"]
    assert info.status == "converted"
    assert sorted(p.name for p in info.path.parent.iterdir()) == [
        "tiny-test.beton", "tiny-test.beton.json"]


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_disk_full_in_the_parent_is_one_line(tmp_path, monkeypatch):
    import errno

    from bench.data.ffcv import _writer
    from bench.data.ffcv.convert import ensure_betons

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_writer.GuardedWriter, "prepare", full)
    data = make_data("tiny", "mnist", 30, 20, seed=9)
    with pytest.raises(BenchError) as info:
        ensure_betons(data, tmp_path, ["train"], progress=False)
    assert str(info.value) == (f"cannot write {tmp_path / 'tiny-train.beton'} (No space left "
                               "on device); no file was written")
    assert not list(tmp_path.iterdir())


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_stalled_writer_is_stopped_by_the_watchdog(tmp_path, monkeypatch):
    """A worker that neither progresses nor dies: the watchdog gives up with one line."""
    from bench.data.ffcv import _writer
    from bench.data.ffcv.convert import ensure_betons

    original = _writer.GuardedWriter.__init__

    def short_stall(self, *a, **k):
        original(self, *a, **{**k, "stall_s": 1.0})

    monkeypatch.setattr(_writer.GuardedWriter, "__init__", short_stall)
    monkeypatch.setattr("bench.data.ffcv.convert._ArrayDataset.__getitem__",
                        lambda self, i: time.sleep(3600))
    data = make_data("tiny", "mnist", 30, 20, seed=10)
    t0 = time.monotonic()
    with pytest.raises(BenchError, match="no progress for 1 s"):
        ensure_betons(data, tmp_path, ["train"], progress=False)
    assert time.monotonic() - t0 < 60 and not list(tmp_path.iterdir())


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason=f"ffcv not installed; {INSTALL_HINT}")
def test_convert_out_that_is_a_file(tmp_path, bench_cli):
    (tmp_path / "f").write_text("x")
    code, lines = bench_cli("convert", "synthetic-mnist", "--out", tmp_path / "f" / "betons")
    assert code == 2 and len(lines) == 1 and "is a file, not a folder" in lines[0]
