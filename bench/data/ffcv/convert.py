"""Write the harness datasets as ffcv .beton files, once, and know when they are current.

Layout: `<out>/<stem>-<split>.beton` plus `<stem>-<split>.beton.json` (the sidecar, see
verify.py). `<stem>` is the dataset name, except that mnist-perm shares MNIST's files: its
arrays arrive already permuted, so we undo the permutation (inverse gather) before
fingerprinting, store plain MNIST, and the ffcv loader applies the permutation as a torch
gather on each batch. One set of files then serves every permutation seed.

A conversion is skipped when the sidecar's source fingerprint (SHA-256 over shapes, image and
label bytes: ~0.1 s for CIFAR-10 train) equals that of the arrays in hand and the file passes
verification; it is redone when the source changed. The file is written under a temporary
name in the same folder and renamed only when complete; the old sidecar is removed before the
rename and the new one written (atomically) after, so an interrupted conversion never leaves
a file that verifies. Writing uses one ffcv worker: that is byte-reproducible (two workers
interleave pages differently) and no slower here, ~2 s for CIFAR-10 train.

Check-and-convert of one file holds its lock (`_lock.py`: released even when the process
dies, taken over from a dead owner); under it, temporary files left by a conversion killed
outright are removed. SIGINT, SIGTERM and SIGHUP (exceptions, see `bench.host.interrupts`)
stop a conversion cleanly (the writer children stopped, the temporary file and the lock
removed; exit 130, 143, 129), a failed writer (disk full) is one line, exit 2 (`_writer.py`,
`_proc.py`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.ffcv import ffcv_version, require_ffcv
from bench.data.ffcv._lock import beton_lock
from bench.data.ffcv._proc import shielded
from bench.data.ffcv.verify import (
    SIDECAR_FORMAT,
    file_sha256,
    read_header,
    read_sidecar,
    sidecar_path,
    verify_beton,
)
from bench.defaults import CACHE_HINT, cache_dir
from bench.errors import BenchError
from bench.fsutil import os_reason, writable_dir
from bench.results import atomic_write_text
from bench.spec.datasets import DATASETS, DatasetArrays, load_dataset
from bench.spec.runspec import add_run_flags

SPLITS = ("train", "test")


@dataclass
class BetonInfo:
    """One split's .beton after `ensure_betons`: where it is and whether we just wrote it."""

    dataset: str
    split: str
    path: Path
    meta: dict[str, Any]
    status: str  # "current" (verified, untouched) or "converted"
    seconds: float  # fingerprint + (write +) verify

    @property
    def num_samples(self) -> int:
        return int(self.meta["num_samples"])


def default_out_dir() -> Path:
    return cache_dir() / "ffcv"


def beton_stem(data: DatasetArrays) -> str:
    """File name stem: permuted variants share the base dataset's files."""
    return data.family if data.perm is not None else data.name


def base_arrays(data: DatasetArrays, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's images as stored in the .beton: un-permuted when `data.perm` is set."""
    if split not in SPLITS:
        raise BenchError(f"unknown split {split!r}; choices: {', '.join(SPLITS)}")
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    if data.perm is not None:
        n, h, w, c = x.shape
        inv = np.argsort(data.perm)  # apply_permutation did out[:, i] = x[:, perm[i]]
        # np.take on a 2-D view: 0.05 s for MNIST train, 12x faster than fancy indexing
        x = np.take(x.reshape(n, h * w, c), inv, axis=1).reshape(n, h, w, c)
    return x, y


def fingerprint_arrays(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 over shapes, dtypes and every byte: cheap enough (~0.6 GB/s incl. copies) that a
    sampled hash, which can miss a changed image, is not worth it."""
    h = hashlib.sha256()
    h.update(f"x{x.shape}{x.dtype.str};y{y.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(x)).cast("B"))
    h.update(memoryview(np.ascontiguousarray(y, dtype="<i8")).cast("B"))
    return "sha256:" + h.hexdigest()


def field_spec(x: np.ndarray) -> dict[str, dict[str, Any]]:
    """How images are stored: RGB raw (3 channels) or an NDArray (1 channel: RGBImageField
    refuses those). Recorded in the sidecar; a change of layout forces a rewrite."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise BenchError(f"ffcv conversion needs uint8 NHWC images with 1 or 3 channels, "
                         f"got {x.dtype} {x.shape}")
    shape = [int(s) for s in x.shape[1:]]
    image = ({"type": "RGBImageField", "write_mode": "raw", "shape": shape}
             if shape[-1] == 3 else {"type": "NDArrayField", "dtype": "uint8", "shape": shape})
    return {"image": image, "label": {"type": "IntField", "dtype": "int64"}}


def _ffcv_fields(spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from ffcv.fields import IntField, NDArrayField, RGBImageField

    img = spec["image"]
    image = (RGBImageField(write_mode="raw") if img["type"] == "RGBImageField"
             else NDArrayField(dtype=np.dtype("uint8"), shape=tuple(img["shape"])))
    return {"image": image, "label": IntField()}


class _ArrayDataset:
    """Indexable (image, label) view for ffcv's writer. Plain indexing cannot raise for valid
    indices, which matters: an exception in a writer process would otherwise hang ffcv."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, np.asarray(y, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.x[i], int(self.y[i])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(tmp: Path, path: Path, meta: dict[str, Any]) -> None:
    """Publish a completed temporary file: drop the old sidecar, rename, write the sidecar."""
    sidecar_path(path).unlink(missing_ok=True)
    os.replace(tmp, path)
    side = sidecar_path(path)
    atomic_write_text(side, json.dumps(meta, indent=1) + "\n")
    os.chmod(side, path.stat().st_mode & 0o666)  # mkstemp made it 0600; match the .beton


def write_beton(x: np.ndarray, y: np.ndarray, path: Path, *, info: dict[str, Any],
                progress: bool = True, desc: str = "") -> dict[str, Any]:
    """Write (x, y) to `path` with its sidecar and return the sidecar.

    `info` is merged into the sidecar (dataset, split, source, source_fingerprint).
    """
    require_ffcv()
    from bench.data.ffcv._writer import GuardedWriter

    if len(y) == 0 or len(x) != len(y):
        raise BenchError(f"{path}: nothing to convert ({len(x)} images, {len(y)} labels)")
    spec = field_spec(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    t0 = time.perf_counter()
    try:
        writer = GuardedWriter(str(tmp), _ffcv_fields(spec), desc=desc, progress=progress,
                               num_workers=1)
        writer.from_indexed_dataset(_ArrayDataset(x, y), chunksize=1000)
        _fsync(tmp)
        size = tmp.stat().st_size
        header = read_header(tmp, size)
        if header["num_samples"] != len(y):
            raise BenchError(f"{path}: ffcv wrote {header['num_samples']} samples, "
                             f"expected {len(y)}")
        meta = {
            "format": SIDECAR_FORMAT, **info, "num_samples": int(len(y)),
            "image_shape": spec["image"]["shape"], "fields": spec,
            "label_range": [int(np.min(y)), int(np.max(y))],
            "ffcv_version": ffcv_version(), "ffcv_file_version": 2,
            "beton": {"file": path.name, "size": size, "sha256": file_sha256(tmp)},
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "write_seconds": round(time.perf_counter() - t0, 3),
        }
        _finish(tmp, path, meta)
    except OSError as exc:  # disk full, read-only: one line, the partial file gone
        tmp.unlink(missing_ok=True)
        raise BenchError(f"cannot write {path} ({os_reason(exc)}); no file was written"
                         ) from None
    except BaseException:
        with shielded():
            tmp.unlink(missing_ok=True)
        raise
    return meta


def _remove_stale_tmps(path: Path, log: Callable[[str], None]) -> None:
    """Temporary files of `path` are written only under its lock, which we hold: any found is
    left by a conversion killed outright (kill -9, power loss). Remove them, in one line."""
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    if stale:
        log(f"ffcv: removed {len(stale)} temporary file(s) of {path.name} left by an "
            f"interrupted conversion ({', '.join(t.name for t in stale)})")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_betons(data: DatasetArrays, out_dir: str | os.PathLike[str] | None = None,
                  splits: Sequence[str] = SPLITS, *, repair: bool = True, force: bool = False,
                  progress: bool = True, log: Callable[[str], None] = _stderr,
                  ) -> dict[str, BetonInfo]:
    """Make sure each split has a current, verified .beton; convert where needed.

    A missing file (or one without sidecar: an interrupted conversion) or one written from
    other source data is (re)written. A file whose sidecar matches the source but that fails
    verification (damaged) is rewritten with `repair=True` (`bench convert`), and is a
    BenchError with `repair=False` (loading: a damaged cache should be noticed, not hidden).
    """
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    writable_dir(out, ".beton folder", CACHE_HINT if out_dir is None else "")
    stem = beton_stem(data)
    result: dict[str, BetonInfo] = {}
    for split in splits:
        t0 = time.perf_counter()
        x, y = base_arrays(data, split)
        fp = fingerprint_arrays(x, y)
        spec = field_spec(x)
        path = out / f"{stem}-{split}.beton"
        with beton_lock(path, log):
            _remove_stale_tmps(path, log)
            reason = _stale_reason(path, fp, spec, force, repair)
            if reason is None:
                try:
                    meta = verify_beton(path, expected_samples=len(y), expected_fingerprint=fp)
                    status = "current"
                except BenchError as exc:
                    if not repair:
                        raise
                    reason = f"failed verification ({str(exc).split(': ', 1)[-1]})"
            if reason is not None:
                if path.exists():
                    log(f"ffcv: {path.name}: {reason}; rewriting")
                info = {"dataset": stem, "split": split, "family": data.family,
                        "source": data.source, "real": data.real, "source_fingerprint": fp}
                meta = write_beton(x, y, path, info=info, progress=progress,
                                   desc=f"{stem} {split}")
                status = "converted"
        result[split] = BetonInfo(stem, split, path, meta, status,
                                  time.perf_counter() - t0)
    return result


def _stale_reason(path: Path, fp: str, spec: dict[str, Any], force: bool,
                  repair: bool) -> str | None:
    """Why `path` must be (re)written, or None if its sidecar matches (verify it next)."""
    if force:
        return "--force"
    if not path.exists() or not sidecar_path(path).exists():
        return "missing"
    try:
        meta = read_sidecar(path)
    except BenchError as exc:
        if repair:
            return f"bad sidecar ({exc})"
        raise
    if meta.get("source_fingerprint") != fp or meta.get("fields") != spec:
        return "source data changed"
    return None


# ----------------------------------------------------------------------------- CLI verb
def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `bench convert DATASET... [--data-dir] [--out] [--force]`."""
    p = sub.add_parser(
        "convert", help="write ffcv .beton copies of datasets (train and test)",
        description="Convert datasets to ffcv .beton files with a verified sidecar. Skips "
                    "files that are current; rewrites stale or damaged ones. mnist-perm "
                    "shares mnist's files (the permutation is applied when loading).")
    p.add_argument("datasets", nargs="+", metavar="DATASET", choices=list(DATASETS),
                   help=f"one or more of: {', '.join(DATASETS)}")
    add_run_flags(p, include=("data_dir", "download"))
    p.add_argument("--out", default=None,
                   help=f"folder for the .beton files (default: {default_out_dir()})")
    p.add_argument("--force", action="store_true", help="rewrite even if current")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=handler)
    return p


def handler(args: argparse.Namespace) -> int:
    """Convert each dataset. A stop signal (SIGINT/SIGTERM/SIGHUP, raised as KeyboardInterrupt
    by `bench.host.interrupts`) unwinds through the writer's and the lock's cleanup: the children
    stopped, no temporary or lock file left; the CLI prints one line, exits 130/143/129."""
    require_ffcv()
    out = Path(args.out) if args.out is not None else default_out_dir()
    writable_dir(out, "--out folder" if args.out is not None else "ffcv cache folder",
                 "" if args.out is not None else CACHE_HINT)
    _convert_all(args, out)
    return 0


def _convert_all(args: argparse.Namespace, out: Path) -> None:
    print(f"{'dataset':<18}{'split':<7}{'status':<11}{'samples':>8}{'MB':>9}{'seconds':>9}"
          "  file", flush=True)
    for name in dict.fromkeys(args.datasets):  # keep order, drop repeats
        data = load_dataset(name, args.data_dir, download=args.download)
        infos = ensure_betons(data, out, repair=True, force=args.force,
                              progress=not args.no_progress)
        for info in infos.values():
            mb = info.meta["beton"]["size"] / 1e6
            print(f"{name:<18}{info.split:<7}{info.status:<11}{info.num_samples:>8}"
                  f"{mb:>9.1f}{info.seconds:>9.2f}  {info.path}", flush=True)


__all__ = ["SPLITS", "BetonInfo", "base_arrays", "beton_stem", "default_out_dir",
           "ensure_betons", "field_spec", "fingerprint_arrays", "handler", "register",
           "write_beton"]
