"""CIFAR-10 in its official python form: cifar-10-batches-py/ or cifar-10-python.tar.gz.

The batches are pickles, and a pickle can name any importable callable: a batch file dropped
into a data folder could run code when read. So they are read with an unpickler that admits
only the globals the official files (and numpy's own pickles of uint8 arrays) name, and every
batch is checked for the official structure before use.
"""

from __future__ import annotations

import _codecs
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchError
from ..fsutil import os_reason, warn

CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_BATCH = "test_batch"
CIFAR_BATCHES = [*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
EXPECTED = "cifar-10-batches-py/{data_batch_1..5,test_batch} or cifar-10-python.tar.gz"
_ROW = 3 * 32 * 32  # one image: R, G, B planes of 32 x 32 bytes


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as Python 3 protocol-2 pickles use it for bytes, latin-1 only."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return _codecs.encode(text, "latin1")


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own, whatever its module
# What the official batches name (pickled by Python 2 with numpy 1.x), plus what numpy 2 and
# Python 3 name when a batch is rebuilt with protocol 2 (tests/conftest.py does).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("_codecs", "encode"): _latin1_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a callable that a CIFAR-10 batch never contains."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ALLOWED_GLOBALS: data, never code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load_batch_pickle(path: Path) -> Any:
    """Unpickle one batch file with the restricted unpickler (bytes keys, as in Python 2)."""
    try:
        with open(path, "rb") as f:
            return _BatchUnpickler(f, encoding="bytes").load()
    except RefusedGlobal as exc:
        raise BenchError(f"{path}: refused to unpickle {exc}: a CIFAR-10 batch holds only "
                         "arrays, lists, bytes, str and ints (is this file what it claims?)"
                         ) from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchError(f"{path}: not a CIFAR-10 python batch ({reason})") from None


def _batch_data(path: Path, data: Any) -> np.ndarray:
    """The batch's images as a (N, 3072) uint8 array, or a BenchError saying what is wrong."""
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "iu":
        kind = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise BenchError(f"{path}: CIFAR-10 'data' is a {kind}, expected a uint8 array")
    if data.ndim != 2 or data.shape[1] != _ROW:
        raise BenchError(f"{path}: unexpected CIFAR-10 batch shape {data.shape}, expected "
                         f"(N, {_ROW})")
    if data.dtype != np.uint8 and data.size and (data.min() < 0 or data.max() > 255):
        raise BenchError(f"{path}: CIFAR-10 pixel values outside 0..255 "
                         f"({data.min()}..{data.max()})")
    return data.astype(np.uint8, copy=False)


def _batch_labels(path: Path, labels: Any, n: int) -> np.ndarray:
    """The batch's labels as int64 0..9, one per image, or a BenchError."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1:
        y = labels.astype(np.int64)
    elif isinstance(labels, list) and all(type(v) is int for v in labels):
        y = np.array(labels, dtype=np.int64) if labels else np.zeros(0, np.int64)
    else:
        raise BenchError(f"{path}: CIFAR-10 'labels' must be a list of ints, got "
                         f"{type(labels).__name__}")
    if len(y) != n:
        raise BenchError(f"{path}: {len(y)} labels for {n} images")
    bad = np.flatnonzero((y < 0) | (y >= len(CLASSES)))
    if len(bad):
        raise BenchError(f"{path}: CIFAR-10 labels must be 0..9, found {int(y[bad[0]])} at "
                         f"index {int(bad[0])}")
    return y


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = load_batch_pickle(path)
    if not isinstance(d, dict):
        raise BenchError(f"{path}: not a CIFAR-10 batch (a pickled {type(d).__name__}, "
                         "expected a dict)")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise BenchError(f"{path}: CIFAR-10 batch without data/labels")
    data = _batch_data(path, d["data"])
    y = _batch_labels(path, d["labels"], len(data))
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R, G, B planes
    return np.ascontiguousarray(x), y


def _missing_batches(folder: Path) -> list[str]:
    return [b for b in CIFAR_BATCHES if not (folder / b).is_file()]


def _unpack(tar_path: Path, dest: Path) -> None:
    """Unpack the archive's batches into `dest` through a temporary folder and a rename."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    except OSError as exc:
        raise BenchError(f"cache folder {dest.parent} is not writable ({os_reason(exc)}); "
                         "set $BENCH_CACHE_DIR to a writable folder") from None
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
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"{tar_path}: cannot unpack CIFAR-10 archive into {dest.parent} "
                         f"({exc})") from None
    except BaseException:  # Ctrl-C, a signal: no half-unpacked folder left in the cache
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _heal_cache(dest: Path, tar_path: Path) -> bool:
    """A cache entry marked complete that lacks a batch (deleted by hand, a cleaner) is removed
    with one line so that it is unpacked again; True if it was removed."""
    missing = _missing_batches(dest / "cifar-10-batches-py")
    if not missing:
        return False
    warn(f"CIFAR-10 cache {dest} is incomplete (missing {', '.join(missing)}); unpacking "
         f"{tar_path.name} again")
    try:
        shutil.rmtree(dest)
    except OSError as exc:
        raise BenchError(f"CIFAR-10 cache {dest} is incomplete (missing {', '.join(missing)}) "
                         f"and cannot be removed ({os_reason(exc)}); delete that folder") from None
    return True


def _cifar_dir_from_tar(tar_path: Path) -> Path:
    """Unpack cifar-10-python.tar.gz once into the cache, keyed by the archive's size/mtime."""
    st = tar_path.stat()
    key = hashlib.sha1(f"{tar_path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    from ..fsutil import writable_dir
    from . import CACHE_HINT, cache_dir

    dest = cache_dir() / "cifar10" / key[:16]
    done = dest / "cifar-10-batches-py"
    if (dest / ".complete").exists() and not _heal_cache(dest, tar_path):
        return done
    writable_dir(dest.parent, "cache folder", CACHE_HINT)
    _unpack(tar_path, dest)
    missing = _missing_batches(done)
    if missing:
        raise BenchError(f"{tar_path}: the archive lacks cifar-10-batches-py/"
                         f"{', '.join(missing)}")
    return done


def locate_cifar10(root: Path) -> Path | None:
    """The extracted batches folder, from either official form (folder, or the tar.gz). A
    complete folder wins, then the archive; a partial folder is returned so that the reader
    can name what it lacks."""
    folder = root / "cifar-10-batches-py"
    if not _missing_batches(folder):
        return folder
    tar = root / "cifar-10-python.tar.gz"
    if tar.is_file():
        return _cifar_dir_from_tar(tar)
    if len(_missing_batches(folder)) < len(CIFAR_BATCHES):
        return folder
    return None


def read_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = locate_cifar10(root)
    if folder is None:
        raise FileNotFoundError(
            f"{root}: expected cifar-10-batches-py/ (data_batch_1..5, test_batch) "
            "or cifar-10-python.tar.gz")
    missing = _missing_batches(folder)
    if missing:  # a partial copy would train on fewer images without a word
        raise BenchError(f"{folder}: missing {', '.join(missing)}; CIFAR-10 needs "
                         "data_batch_1..5 and test_batch")
    parts = [_read_cifar_batch(folder / b) for b in CIFAR_TRAIN_BATCHES]
    tx, ty = _read_cifar_batch(folder / CIFAR_TEST_BATCH)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), tx, ty)


def download(root: Path) -> None:
    """Fetch through torchvision, which verifies the archive's MD5."""
    import torchvision

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)
