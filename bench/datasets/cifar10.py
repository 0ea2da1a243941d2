"""CIFAR-10 in its official python form: cifar-10-batches-py/ or cifar-10-python.tar.gz."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BenchError

CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
EXPECTED = "cifar-10-batches-py/{data_batch_1..5,test_batch} or cifar-10-python.tar.gz"


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise BenchError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise BenchError(f"{path}: CIFAR-10 batch without data/labels")
    data = np.asarray(d["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(d["labels"]):
        raise BenchError(f"{path}: unexpected CIFAR-10 batch shape {data.shape}")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R, G, B planes
    return np.ascontiguousarray(x), np.asarray(d["labels"], dtype=np.int64)


def _cifar_dir_from_tar(tar_path: Path) -> Path:
    """Unpack cifar-10-python.tar.gz once into the cache, keyed by the archive's size/mtime."""
    st = tar_path.stat()
    key = hashlib.sha1(f"{tar_path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    from . import cache_dir

    dest = cache_dir() / "cifar10" / key[:16]
    done = dest / "cifar-10-batches-py"
    if (dest / ".complete").exists():
        return done
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        with tarfile.open(tar_path, "r:gz") as tf:
            members = [m for m in tf.getmembers()
                       if m.isfile() and m.name.startswith("cifar-10-batches-py/")
                       and ".." not in m.name]
            for m in members:
                tf.extract(m, tmp, filter="data")
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, dest)  # atomic; fails if another process (a DDP rank) got there first
        except OSError:
            if not (dest / ".complete").exists():  # a stale partial unpack: replace it
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"{tar_path}: cannot unpack CIFAR-10 archive ({exc})") from None
    return done


def locate_cifar10(root: Path) -> Path | None:
    """The extracted batches folder, from either official form (folder, or the tar.gz)."""
    folder = root / "cifar-10-batches-py"
    if (folder / CIFAR_TEST_BATCH).is_file():
        return folder
    tar = root / "cifar-10-python.tar.gz"
    if tar.is_file():
        return _cifar_dir_from_tar(tar)
    return None


def read_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = locate_cifar10(root)
    if folder is None:
        raise FileNotFoundError(
            f"{root}: expected cifar-10-batches-py/ (data_batch_1..5, test_batch) "
            "or cifar-10-python.tar.gz")
    present = [b for b in CIFAR_TRAIN_BATCHES if (folder / b).is_file()]
    if not present or not (folder / CIFAR_TEST_BATCH).is_file():
        raise FileNotFoundError(f"{folder}: missing data_batch_1..5 or test_batch")
    parts = [_read_cifar_batch(folder / b) for b in present]
    tx, ty = _read_cifar_batch(folder / CIFAR_TEST_BATCH)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), tx, ty)


def download(root: Path) -> None:
    """Fetch through torchvision, which verifies the archive's MD5."""
    import torchvision

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)
