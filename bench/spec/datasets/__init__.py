"""Dataset registry: the family table, the named datasets, and loading into memory.

Everything is returned as numpy uint8 images (N, H, W, C) plus int64 labels, the form every
loader starts from. Local files in the official layout are read directly (checksums are not
checked: a rebuilt copy or a subset must load); only what we download is verified, by
torchvision. Archives are unpacked into a cache folder the harness owns, never beside the data.

A dataset family (MNIST-shaped, CIFAR-shaped) is one row of `FAMILIES` plus its reader module;
the named datasets (`DATASETS`) are a family, optionally synthetic or pixel-permuted.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.defaults import CACHE_HINT, DATA_DIR_ENV, cache_dir
from bench.errors import BenchError
from bench.fsutil import writable_dir
from bench.spec.datasets import cifar10, mnist
from bench.spec.datasets.mnist import read_idx

__all__ = ["CACHE_HINT", "DATASETS", "DOWNLOAD_TIMEOUT_S", "FAMILIES", "FETCH_HINT", "NORMS",
           "DatasetArrays", "DatasetSpec", "FamilySpec", "apply_permutation", "cache_dir",
           "check_arrays", "default_data_dir", "get_dataset_spec", "get_family", "load_dataset",
           "pixel_permutation", "read_idx"]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train_x, train_y, test_x, test_y


@dataclass(frozen=True)
class FamilySpec:
    """Everything the harness knows about one dataset family."""

    name: str
    shape: tuple[int, int, int]  # one image as stored: (H, W, C)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # normalisation on the [0, 1] pixel scale
    std: tuple[float, ...]
    sizes: tuple[int, int]  # official (train, test) image counts; the synthetic twin's too
    reader: Callable[[Path], Arrays]  # reads the official layout under a root folder
    expected: str  # that layout, for error messages
    download: Callable[[Path], None]  # fetch into a root folder (checksummed by torchvision)
    augment: bool  # the standard training augmentation (random crop, pad 4, flip) applies

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image as the model sees it: (C, H, W)."""
        h, w, c = self.shape
        return (c, h, w)


FAMILIES: dict[str, FamilySpec] = {f.name: f for f in (
    FamilySpec("mnist", (28, 28, 1), mnist.CLASSES, (0.1307,), (0.3081,), (60_000, 10_000),
               mnist.read_mnist, mnist.EXPECTED, mnist.download, augment=False),
    FamilySpec("cifar10", (32, 32, 3), cifar10.CLASSES, (0.4914, 0.4822, 0.4465),
               (0.2470, 0.2435, 0.2616), (50_000, 10_000), cifar10.read_cifar10,
               cifar10.EXPECTED, cifar10.download, augment=True),
)}

# Normalisation constants by name: each family's own, plus the course LeNet's Normalize(0.5, 0.5).
NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    **{f.name: (f.mean, f.std) for f in FAMILIES.values()},
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


@dataclass
class DatasetArrays:
    """A dataset in memory: uint8 NHWC images, int64 labels, and where they came from."""

    name: str
    family: str  # a key of FAMILIES: input shape and normalisation family
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


def default_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    if data_dir:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def get_family(name: str) -> FamilySpec:
    try:
        return FAMILIES[name]
    except KeyError:
        raise BenchError(f"unknown dataset family {name!r}; choices: "
                         f"{', '.join(FAMILIES)}") from None


# ----------------------------------------------------------------------------- real data
# Seconds one network operation of a download (connect, one read) may wait: a node without a
# route would otherwise hang for minutes per file. A slow download that makes progress goes on.
DOWNLOAD_TIMEOUT_S = 20.0
# What a missing dataset's line says to do about it (download only when asked: `--download`).
FETCH_HINT = "pass --download to fetch it, or --data-dir DIR to a folder holding it"


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """torchvision's urllib calls take no timeout: set the socket default for the download
    only, and put back whatever it was."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _first_line(exc: BaseException) -> str:
    """'Type: first line of the message', short: the reason in a one-line error."""
    text = (str(exc).splitlines() or [""])[0].strip()[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _download(family: FamilySpec) -> Path:
    """Download into the cache, each network operation bounded by DOWNLOAD_TIMEOUT_S. A
    failure is one line: torchvision's printed lines (URLs, "Failed to download (trying
    next)" with the error over several lines) are swallowed; its progress bar (stderr) shows.
    Raise OSError if impossible."""
    root = writable_dir(cache_dir() / "downloads", "cache folder", CACHE_HINT)
    try:
        with _network_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(io.StringIO()):
            family.download(root)
    except Exception as exc:  # network errors come in many types
        raise OSError(f"download failed: {_first_line(exc)}") from exc
    return root


def _check_split(family: FamilySpec, split: str, x: np.ndarray, y: np.ndarray) -> str | None:
    """Why one split cannot be trained or evaluated on, or None. A reader hands back what the
    files hold; an empty split or a label past the last class would otherwise run and record
    nonsense (0% accuracy, "ok")."""
    if len(x) == 0 or len(y) == 0:
        return f"the {split} split is empty ({len(x)} images, {len(y)} labels)"
    if x.dtype != np.uint8 or x.shape[1:] != family.shape or len(x) != len(y):
        return (f"the {split} split holds {x.dtype} images of shape {x.shape[1:]} and "
                f"{len(y)} labels for {len(x)} images; expected uint8 {family.shape}, one "
                "label per image")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        return f"the {split} labels are {y.dtype} {y.shape}, expected one integer per image"
    bad = np.flatnonzero((y < 0) | (y >= len(family.classes)))
    if len(bad):
        return (f"the {split} labels must be 0..{len(family.classes) - 1}, found "
                f"{int(y[bad[0]])} at index {int(bad[0])}")
    return None


def check_arrays(family: FamilySpec, arrays: Arrays, where: str | os.PathLike[str]) -> Arrays:
    """Refuse inconsistent data in one line naming where it came from; return it unchanged."""
    tx, ty, vx, vy = arrays
    for split, x, y in (("train", tx, ty), ("test", vx, vy)):
        reason = _check_split(family, split, x, y)
        if reason:
            raise BenchError(f"{where}: {family.name}: {reason}")
    return arrays


def _read_family(family: FamilySpec, data_dir: Path | None, download: bool):
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise BenchError(f"data folder {data_dir} is a file; expected a folder holding "
                         f"{family.expected}")
    roots = [data_dir] if data_dir is not None else []
    roots.append(cache_dir() / "downloads")
    for root in roots:
        try:
            return check_arrays(family, family.reader(root), root), str(root)
        except FileNotFoundError:
            continue
    where = data_dir if data_dir is not None else f"${DATA_DIR_ENV} (unset; or pass --data-dir)"
    if download:
        try:
            root = _download(family)
            return check_arrays(family, family.reader(root), root), f"{root} (downloaded)"
        except (OSError, FileNotFoundError) as exc:
            reason = str(exc)
    else:
        reason = f"not downloaded: {FETCH_HINT}"
    raise BenchError(f"{family.name} not found in {where}: expected {family.expected} "
                     f"({reason})")


@functools.lru_cache(maxsize=4)
def _load_real(family: str, data_dir: str | None, download: bool):
    return _read_family(FAMILIES[family], Path(data_dir) if data_dir else None, download)


# ----------------------------------------------------------------------------- synthetic
@functools.lru_cache(maxsize=2)
def _synthetic(family: str) -> tuple[np.ndarray, ...]:
    """Deterministic random images of the real shapes and sizes, with a learnable class signal."""
    spec = FAMILIES[family]
    shape, (n_train, n_test) = spec.shape, spec.sizes
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


# Every family as itself and as its synthetic twin (same shapes and sizes, random pixels with a
# learnable class signal: throughput without the data), plus the course's permuted MNIST.
DATASETS: dict[str, DatasetSpec] = {
    s.name: s for s in [
        *(DatasetSpec(f, f) for f in FAMILIES),
        DatasetSpec("mnist-perm", "mnist", permuted=True),
        *(DatasetSpec(f"synthetic-{f}", f, synthetic=True) for f in FAMILIES),
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
                 allow_synthetic: bool = False, download: bool = False) -> DatasetArrays:
    """Load a dataset by registry name. With allow_synthetic, missing real data falls back to
    the synthetic twin (and the result says so)."""
    spec = get_dataset_spec(name)
    classes = list(FAMILIES[spec.family].classes)
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
