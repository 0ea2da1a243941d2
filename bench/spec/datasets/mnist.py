"""MNIST in LeCun's IDX format: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bench.errors import BenchError

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CLASSES = tuple(str(i) for i in range(10))
EXPECTED = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"

_MAX_IDX_DIMS = 4  # MNIST uses 1 (labels) and 3 (images)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# The most data bytes one IDX file may declare: 4 x the largest official MNIST file (60,000
# train images of 28 x 28 bytes, 47,040,000). Only that much is ever read, so a small .gz that
# unpacks to gigabytes (a gzip bomb) or a header declaring 2^64 bytes is refused up front.
MAX_IDX_BYTES = 4 * 60_000 * 28 * 28


def _idx_header(f: BinaryIO, p: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """(element type, dims) from an IDX file's header, refusing what cannot be one."""
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise BenchError(f"{p}: not an IDX file (bad magic number)")
    ndim = magic[3]
    if not 1 <= ndim <= _MAX_IDX_DIMS:
        raise BenchError(f"{p}: IDX header gives {ndim} dimensions (expected 1 to "
                         f"{_MAX_IDX_DIMS})")
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise BenchError(f"{p}: truncated IDX header")
    return np.dtype(_IDX_DTYPES[magic[2]]), struct.unpack(">" + "I" * ndim, raw)


def _read_idx_payload(f: BinaryIO, p: Path) -> tuple[np.dtype, tuple[int, ...], bytes]:
    """The header and exactly the data it declares (read no further than that, plus one byte
    to see whether the file goes on), within MAX_IDX_BYTES."""
    dtype, dims = _idx_header(f, p)
    expected = math.prod(dims) * dtype.itemsize  # Python ints: huge dims cannot wrap around
    if expected > MAX_IDX_BYTES:
        raise BenchError(f"{p}: IDX size mismatch: header says {dims} ({expected} bytes), over "
                         f"the {MAX_IDX_BYTES}-byte bound of an MNIST file (the largest "
                         "official one holds 47040000); refused unread")
    raw = f.read(expected + 1)
    if len(raw) != expected:
        held = f"{expected}+ (more than declared)" if len(raw) > expected else str(len(raw))
        raise BenchError(f"{p}: IDX size mismatch: header says {dims} ({expected} bytes), "
                         f"file holds {held}")
    return dtype, dims, raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped or not): the format of LeCun's MNIST files."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            dtype, dims, raw = _read_idx_payload(f, p)
    except (OSError, EOFError, zlib.error) as exc:
        raise BenchError(f"{p}: cannot read IDX file ({exc})") from None
    return np.frombuffer(raw, dtype=dtype).reshape(dims).astype(
        dtype.newbyteorder("=") if dtype.itemsize > 1 else dtype, copy=True)


def _check_idx_types(arrs: dict[str, np.ndarray], paths: dict[str, Path | None]) -> None:
    """Images must be unsigned bytes and labels integers, as in LeCun's files: anything else
    fails later with a message about PIL modes or tensor types, not about the file."""
    for key, arr in arrs.items():
        if key.endswith("_x") and arr.dtype != np.uint8:
            raise BenchError(f"{paths[key]}: IDX images of type {arr.dtype}; MNIST images are "
                             "unsigned bytes (IDX type 0x08)")
        if key.endswith("_y") and arr.dtype.kind not in "iu":
            raise BenchError(f"{paths[key]}: IDX labels of type {arr.dtype}; MNIST labels are "
                             "integers (IDX type 0x08)")


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
    _check_idx_types(arrs, paths)
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
