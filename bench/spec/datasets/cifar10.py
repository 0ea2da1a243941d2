"""CIFAR-10 in its official python form: cifar-10-batches-py/ or cifar-10-python.tar.gz.

The batches are pickles, and a pickle can name any importable callable: a batch file dropped
into a data folder could run code when read. So they are read with an unpickler that admits
only the globals the official files (and numpy's own pickles of uint8 arrays) name, and every
batch is checked for the official structure before use.

The archive is untrusted too: a few hundred KB of gzip can unpack to gigabytes. It is read as a
stream through a byte cap, each member's declared size checked against what the official file
needs before a byte of it is written, links, devices and paths out of the folder refused, and
what is unpacked goes to a temporary folder renamed into the cache only once complete.
"""

from __future__ import annotations

import _codecs
import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from bench.errors import BenchError
from bench.fsutil import os_reason, warn

CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_BATCH = "test_batch"
CIFAR_BATCHES = [*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
EXPECTED = "cifar-10-batches-py/{data_batch_1..5,test_batch} or cifar-10-python.tar.gz"
_ROW = 3 * 32 * 32  # one image: R, G, B planes of 32 x 32 bytes
_TOP = "cifar-10-batches-py"  # the archive's one folder

# Bounds on the archive (checked before unpacking). An official batch is a pickle of 10,000
# images, 31,035,xxx bytes; batches.meta 158 bytes; the whole archive unpacks to ~178 MB.
BATCH_MAX_BYTES = 40 * 2**20
META_MAX_BYTES = 64 * 2**10
ARCHIVE_MAX_BYTES = len(CIFAR_BATCHES) * BATCH_MAX_BYTES + 16 * 2**20  # headers, readme
ARCHIVE_MAX_MEMBERS = 64  # the official archive holds 9
_UNPACKED = {**dict.fromkeys(CIFAR_BATCHES, "batch"), "batches.meta": "meta"}  # the rest: skipped


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


class _CappedStream:
    """The decompressed archive, refused (BenchError) once it yields more than `cap` bytes:
    tarfile itself reads whatever a header declares (a pax header, a member it skips)."""

    def __init__(self, f: IO[bytes], cap: int, tar_path: Path) -> None:
        self.f, self.cap, self.tar_path, self.pos = f, cap, tar_path, 0

    def read(self, n: int = -1) -> bytes:
        left = self.cap - self.pos + 1  # one byte past the cap tells "more" from "exactly"
        data = self.f.read(left if n is None or n < 0 else min(n, left))
        self.pos += len(data)
        if self.pos > self.cap:
            raise BenchError(f"{self.tar_path}: unpacks to more than {self.cap} bytes (the "
                             "official CIFAR-10 archive: about 178 MB); refused")
        return data


def _member_kind(m: tarfile.TarInfo) -> str:
    """What a member that is not a plain file is, for the refusal."""
    if m.issym() or m.islnk():
        return f"a {'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}"
    if m.isdev():
        return "a device or FIFO"
    return "a sparse file" if m.sparse is not None or m.issparse() else f"of tar type {m.type!r}"


def _wanted(tar_path: Path, m: tarfile.TarInfo, seen: set[str]) -> str | None:
    """The batch file a member holds (None: skip it), or a BenchError for a member no CIFAR-10
    archive holds: a link, a device, a path out of the folder, a batch past its bound."""
    name = m.name[2:] if m.name.startswith("./") else m.name
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise BenchError(f"{tar_path}: member {m.name!r} points outside the archive's folder; "
                         "refused")
    if m.isdir():
        return None
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or m.sparse is not None:
        raise BenchError(f"{tar_path}: member {m.name!r} is {_member_kind(m)}, not a regular "
                         "file; a CIFAR-10 archive holds only files; refused")
    kind = _UNPACKED.get(path.name) if path.parent == PurePosixPath(_TOP) else None
    if kind is None:
        return None
    bound = BATCH_MAX_BYTES if kind == "batch" else META_MAX_BYTES
    if m.size > bound:
        official = "about 31 MB, 10,000 images" if kind == "batch" else "158 bytes"
        raise BenchError(f"{tar_path}: member {m.name!r} declares {m.size} bytes, over the "
                         f"{bound}-byte bound of a CIFAR-10 {kind} file (official: {official});"
                         " refused before unpacking")
    if path.name in seen:
        raise BenchError(f"{tar_path}: member {m.name!r} appears twice; refused")
    seen.add(path.name)
    return path.name


def _copy_member(tf: tarfile.TarFile, m: tarfile.TarInfo, out: Path, tar_path: Path) -> None:
    """Write one member's bytes, never more than its (bounded) declared size."""
    src = tf.extractfile(m)
    if src is None:
        raise BenchError(f"{tar_path}: member {m.name!r} has no data")
    written = 0
    with src, open(out, "xb") as dst:
        while chunk := src.read(min(1 << 20, m.size - written + 1)):
            written += len(chunk)
            if written > m.size:
                raise BenchError(f"{tar_path}: member {m.name!r} holds more than its declared "
                                 f"{m.size} bytes; refused")
            dst.write(chunk)
    if written != m.size:
        raise BenchError(f"{tar_path}: member {m.name!r} is truncated ({written} of {m.size} "
                         "bytes)")


def _extract_bounded(tar_path: Path, tmp: Path) -> None:
    """Unpack the batches into `tmp`/cifar-10-batches-py, streaming, within the bounds."""
    (tmp / _TOP).mkdir()
    seen: set[str] = set()
    with open(tar_path, "rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
        stream = _CappedStream(gz, ARCHIVE_MAX_BYTES, tar_path)
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for count, m in enumerate(tf, 1):
                if count > ARCHIVE_MAX_MEMBERS:
                    raise BenchError(f"{tar_path}: more than {ARCHIVE_MAX_MEMBERS} members "
                                     "(the official CIFAR-10 archive holds 9); refused")
                name = _wanted(tar_path, m, seen)
                if name is not None:
                    _copy_member(tf, m, tmp / _TOP / name, tar_path)
    missing = _missing_batches(tmp / _TOP)
    if missing:
        raise BenchError(f"{tar_path}: the archive lacks {_TOP}/{', '.join(missing)}")


def _unpack(tar_path: Path, dest: Path) -> None:
    """Unpack the archive's batches into `dest` through a temporary folder and a rename: a
    refused or interrupted unpack leaves nothing in the cache."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    except OSError as exc:
        raise BenchError(f"cache folder {dest.parent} is not writable ({os_reason(exc)}); "
                         "set $BENCH_CACHE_DIR to a writable folder") from None
    try:
        _extract_bounded(tar_path, tmp)
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
    from bench.defaults import CACHE_HINT, cache_dir
    from bench.fsutil import writable_dir

    dest = cache_dir() / "cifar10" / key[:16]
    done = dest / "cifar-10-batches-py"
    if (dest / ".complete").exists() and not _heal_cache(dest, tar_path):
        return done
    writable_dir(dest.parent, "cache folder", CACHE_HINT)
    _unpack(tar_path, dest)
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


def _drop_if_cached(folder: Path) -> None:
    """A batch unpacked into the cache that does not read is removed with its entry: the
    archive's junk does not stay on disk (the next run unpacks and refuses it again)."""
    from bench.defaults import cache_dir

    entry = folder.parent
    if entry.parent == cache_dir() / "cifar10" and folder.name == _TOP:
        shutil.rmtree(entry, ignore_errors=True)


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
    try:
        parts = [_read_cifar_batch(folder / b) for b in CIFAR_TRAIN_BATCHES]
        tx, ty = _read_cifar_batch(folder / CIFAR_TEST_BATCH)
    except BenchError:
        _drop_if_cached(folder)
        raise
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), tx, ty)


def download(root: Path) -> None:
    """Fetch through torchvision, which verifies the archive's MD5."""
    import torchvision

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)
