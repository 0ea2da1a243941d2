"""Dataset registry and readers for the official on-disk formats.

Everything is returned as numpy uint8 images (N, H, W, C) plus int64 labels, the form every
loader starts from. Local files in the official layout are read directly (checksums are not
checked: a rebuilt copy or a subset must load); only what we download is verified, by
torchvision. Archives are unpacked into a cache folder the harness owns, never beside the data.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BenchError

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_BATCH = "test_batch"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
MNIST_CLASSES = [str(i) for i in range(10)]
DATA_ENV = "BENCH_DATA_DIR"
CACHE_ENV = "BENCH_CACHE_DIR"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class DatasetArrays:
    """A dataset in memory: uint8 NHWC images, int64 labels, and where they came from."""

    name: str
    family: str  # "mnist" or "cifar10": input shape and normalisation family
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    real: bool
    source: str
    perm: np.ndarray | None = None  # pixel permutation already applied (mnist-perm)
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "name": self.name, "family": self.family, "real": self.real, "source": self.source,
            "n_train": int(len(self.train_y)), "n_test": int(len(self.test_y)),
            "shape": list(self.train_x.shape[1:]),
            "permuted": self.perm is not None, **self.extra,
        }


def cache_dir() -> Path:
    """Harness-owned cache (unpacked archives, downloads, .beton files)."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bench")
    return Path(base)


def default_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    if data_dir:
        return Path(data_dir)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else None


# ----------------------------------------------------------------------------- MNIST (IDX)
def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped or not): the format of LeCun's MNIST files."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise BenchError(f"{p}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise BenchError(f"{p}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise BenchError(f"{p}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise BenchError(
            f"{p}: IDX size mismatch: header says {dims} ({expected} bytes), "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("=") if dtype.itemsize > 1 else dtype, copy=True)


def _find_mnist_file(raw_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (raw_dir / name).is_file():
            return raw_dir / name
    return None


def read_mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read <root>/MNIST/raw/*-ubyte[.gz] into (train_x NHWC, train_y, test_x, test_y)."""
    raw_dir = root / "MNIST" / "raw"
    paths = {k: _find_mnist_file(raw_dir, v) for k, v in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{raw_dir}: missing {', '.join(missing)}")
    arrs = {k: read_idx(p) for k, p in paths.items() if p is not None}
    for split in ("train", "test"):
        x, y = arrs[f"{split}_x"], arrs[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise BenchError(f"{raw_dir}: {split} images {x.shape} and labels {y.shape} disagree")
    return (arrs["train_x"][..., None], arrs["train_y"].astype(np.int64),
            arrs["test_x"][..., None], arrs["test_y"].astype(np.int64))


# ----------------------------------------------------------------------------- CIFAR-10
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


# ----------------------------------------------------------------------------- download
def _download(family: str) -> Path:
    """Download through torchvision (which verifies MD5s) into the cache; raise if impossible."""
    import torchvision

    root = cache_dir() / "downloads"
    try:
        if family == "mnist":
            torchvision.datasets.MNIST(str(root), train=True, download=True)
            torchvision.datasets.MNIST(str(root), train=False, download=True)
        else:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise OSError(f"download failed: {type(exc).__name__}") from exc
    return root


_EXPECTED = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch} or cifar-10-python.tar.gz",
}


def _read_family(family: str, data_dir: Path | None, download: bool):
    reader: Callable[[Path], tuple] = read_mnist if family == "mnist" else read_cifar10
    roots = [data_dir] if data_dir is not None else []
    roots.append(cache_dir() / "downloads")
    for root in roots:
        try:
            return reader(root), str(root)
        except FileNotFoundError:
            continue
    where = data_dir if data_dir is not None else f"${DATA_ENV} (unset; or pass --data-dir)"
    if download:
        try:
            root = _download(family)
            return reader(root), f"{root} (downloaded)"
        except (OSError, FileNotFoundError) as exc:
            reason = str(exc)
    else:
        reason = "download disabled"
    raise BenchError(f"{family} not found in {where}: expected {_EXPECTED[family]} ({reason})")


@functools.lru_cache(maxsize=4)
def _load_real(family: str, data_dir: str | None, download: bool):
    return _read_family(family, Path(data_dir) if data_dir else None, download)


# ----------------------------------------------------------------------------- synthetic
@functools.lru_cache(maxsize=2)
def _synthetic(family: str) -> tuple[np.ndarray, ...]:
    """Deterministic random images of the real shapes and sizes, with a learnable class signal."""
    shape, n_train, n_test = ((28, 28, 1), 60_000, 10_000) if family == "mnist" else (
        (32, 32, 3), 50_000, 10_000)
    rng = np.random.default_rng(12345)
    out = []
    protos = rng.integers(0, 256, size=(10, *shape), dtype=np.uint8)
    for n in (n_train, n_test):
        y = rng.integers(0, 10, size=n, dtype=np.int64)
        noise = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        x = ((noise.astype(np.uint16) + protos[y]) // 2).astype(np.uint8)
        out += [x, y]
    return tuple(out)


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    family: str
    synthetic: bool = False
    permuted: bool = False


DATASETS: dict[str, DatasetSpec] = {
    s.name: s for s in [
        DatasetSpec("mnist", "mnist"),
        DatasetSpec("mnist-perm", "mnist", permuted=True),
        DatasetSpec("cifar10", "cifar10"),
        DatasetSpec("synthetic-mnist", "mnist", synthetic=True),
        DatasetSpec("synthetic-cifar10", "cifar10", synthetic=True),
    ]
}


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise BenchError(f"unknown dataset {name!r}; choices: {', '.join(DATASETS)}") from None


def pixel_permutation(seed: int, n_pixels: int = 28 * 28) -> np.ndarray:
    """The fixed pixel permutation of mnist-perm, derived from the run's seed."""
    return np.random.default_rng([seed, 0x9E3779B9]).permutation(n_pixels).astype(np.int64)


def apply_permutation(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return np.ascontiguousarray(x.reshape(n, h * w, c)[:, perm].reshape(n, h, w, c))


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, seed: int = 0,
                 allow_synthetic: bool = False, download: bool = True) -> DatasetArrays:
    """Load a dataset by registry name. With allow_synthetic, missing real data falls back to
    the synthetic twin (and the result says so)."""
    spec = get_dataset_spec(name)
    classes = MNIST_CLASSES if spec.family == "mnist" else CIFAR_CLASSES
    if spec.synthetic:
        tx, ty, vx, vy = _synthetic(spec.family)
        return DatasetArrays(name, spec.family, tx, ty, vx, vy, classes, real=False,
                             source="synthetic (deterministic, seed 12345)")
    root = default_data_dir(data_dir)
    try:
        (tx, ty, vx, vy), source = _load_real(spec.family, str(root) if root else None, download)
    except BenchError:
        if not allow_synthetic:
            raise
        syn = load_dataset(f"synthetic-{spec.family}")
        syn.extra["fallback_for"] = name
        return syn
    perm = None
    if spec.permuted:
        perm = pixel_permutation(seed, tx.shape[1] * tx.shape[2])
        tx, vx = apply_permutation(tx, perm), apply_permutation(vx, perm)
    return DatasetArrays(name, spec.family, tx, ty, vx, vy, classes, real=True, source=source,
                         perm=perm, extra={"perm_seed": seed} if spec.permuted else {})
