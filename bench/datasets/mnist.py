"""MNIST in LeCun's IDX format: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import BenchError

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CLASSES = tuple(str(i) for i in range(10))
EXPECTED = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def download(root: Path) -> None:
    """Fetch through torchvision, which verifies the archives' MD5s."""
    import torchvision

    torchvision.datasets.MNIST(str(root), train=True, download=True)
    torchvision.datasets.MNIST(str(root), train=False, download=True)
