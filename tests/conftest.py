"""Shared fixtures: tiny datasets written in the official on-disk formats, and an isolated cache.

Tests never need the real data; the few that use it are marked `slow` and read the folder from
$BENCH_DATA_DIR (skipping with a reason when it is absent).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

N_TRAIN_MNIST, N_TEST_MNIST = 256, 64
CIFAR_PER_BATCH, N_TEST_CIFAR = 40, 50
# Read before the autouse fixture below hides it from the code under test.
_USER_DATA_DIR = os.environ.get("BENCH_DATA_DIR")


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root: Path, gz_train: bool = True, gz_test: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_x": rng.integers(0, 256, (N_TRAIN_MNIST, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, N_TRAIN_MNIST).astype(np.uint8),
        "test_x": rng.integers(0, 256, (N_TEST_MNIST, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, N_TEST_MNIST).astype(np.uint8),
    }
    write_idx(raw / "train-images-idx3-ubyte", arrays["train_x"], gz_train)
    write_idx(raw / "train-labels-idx1-ubyte", arrays["train_y"], gz_train)
    write_idx(raw / "t10k-images-idx3-ubyte", arrays["test_x"], gz_test)
    write_idx(raw / "t10k-labels-idx1-ubyte", arrays["test_y"], gz_test)
    return arrays


def _cifar_batch(path: Path, x: np.ndarray, y: np.ndarray, label: str) -> None:
    """Python-2 style pickle as in the official files (bytes keys under encoding='bytes')."""
    d = {b"batch_label": label.encode(), b"labels": [int(v) for v in y],
         b"data": x.transpose(0, 3, 1, 2).reshape(len(x), 3072),
         b"filenames": [f"{i:05d}.png".encode() for i in range(len(x))]}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def make_cifar(root: Path, as_tar: bool = False, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (CIFAR_PER_BATCH, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, CIFAR_PER_BATCH)
        _cifar_batch(folder / f"data_batch_{i}", x, y, f"training batch {i} of 5")
        xs.append(x)
        ys.append(y)
    tx = rng.integers(0, 256, (N_TEST_CIFAR, 32, 32, 3), dtype=np.uint8)
    ty = rng.integers(0, 10, N_TEST_CIFAR)
    _cifar_batch(folder / "test_batch", tx, ty, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10}, f, protocol=2)
    if as_tar:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tf:
            tf.add(folder, arcname="cifar-10-batches-py")
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    return {"train_x": np.concatenate(xs), "train_y": np.concatenate(ys), "test_x": tx,
            "test_y": ty}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets its own harness cache; the user's ~/.cache is never touched."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    from bench.spec import datasets

    datasets._load_real.cache_clear()


@pytest.fixture(autouse=True)
def _no_nvidia_driver(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device auto` stops when a GPU shows but torch cannot use it; tests that rely on auto
    picking the CPU must pass on such a machine too, so the probe sees no driver unless a test
    points it at a fake one (tests/test_gpu_first_contact.py)."""
    from bench.host import device

    monkeypatch.setattr(device, "NVIDIA_SMI", "nvidia-smi-hidden-by-the-tests")
    monkeypatch.setattr(device, "NVIDIA_PROC_VERSION",
                        tmp_path_factory.getbasetemp() / "no-nvidia-driver" / "version")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A data folder with tiny MNIST (train gzipped, test not) and CIFAR-10 (extracted)."""
    root = tmp_path_factory.mktemp("data")
    mnist = make_mnist(root)
    cifar = make_cifar(root)
    return root, mnist, cifar


@pytest.fixture
def real_data_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for cand in (os.environ.get("BENCH_REAL_DATA_DIR"), _USER_DATA_DIR, here / "../shared/data"):
        if cand and (Path(cand) / "MNIST" / "raw").is_dir():
            return Path(cand)
    pytest.skip("real data not found: set BENCH_REAL_DATA_DIR to a folder with MNIST/raw "
                "and cifar-10-python.tar.gz")


@pytest.fixture
def bench_cli(capsys: pytest.CaptureFixture[str]):
    """Run `bench ARGS...` in-process: (exit code, stderr lines). Reliability tests check that
    bad input gives exactly one line and exit 2, never a traceback."""
    from bench.cli import main

    def run(*argv: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        return code, err

    return run
