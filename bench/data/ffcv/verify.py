"""Check a .beton against the sidecar written with it, before ffcv ever opens it.

ffcv 1.0.2 trusts its input completely: an empty or truncated file raises an obscure
IndexError/ValueError, a file shortened by 1000 bytes or with flipped data bytes loads with
silently wrong images, and a damaged allocation table segfaults a loader thread. So every
.beton the harness loads must match what `bench convert` recorded when it wrote the file:
byte size, sample count (also read from the ffcv header) and a SHA-256 of the whole file.

Why a full checksum on every load rather than a (size, mtime) cache: SHA-256 runs at about
1.7 GB/s here (SHA-NI), i.e. ~0.1 s for CIFAR-10 train (169 MB) and ~0.03 s for MNIST train;
the read also pulls the file into the page cache that ffcv's `os_cache=True` reads next, and
it is small next to the ~6 s numba compile of every ffcv Loader. A stat-based cache would miss
exactly the corruptions that matter (bit rot, `cp -p` of a damaged copy), so we do not keep one.

Nothing here imports ffcv: the header layout below is ffcv's file format version 2
(`ffcv.types` in 1.0.2), so damaged files are rejected without loading the native library.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError

SIDECAR_FORMAT = "bench-beton/1"
FFCV_FILE_VERSION = 2
# ffcv.types (format version 2), copied so verification does not need ffcv importable.
HEADER_TYPE = np.dtype([
    ("version", "<u2"), ("num_fields", "<u2"), ("page_size", "<u4"),
    ("num_samples", "<u8"), ("alloc_table_ptr", "<u8"),
], align=True)
ALLOC_TABLE_TYPE = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
_FIELD_DESC_SIZE = 1041  # FieldDescType.itemsize: type_id u1, name 16 u1, arguments 1024 u1
_CHUNK = 8 << 20


def sidecar_path(beton: str | os.PathLike[str]) -> Path:
    """`x.beton` -> `x.beton.json`: the metadata that vouches for the file."""
    p = Path(beton)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 8 MiB chunks (constant memory, works on Python 3.10)."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def _remedy(meta: dict[str, Any] | None) -> str:
    name = (meta or {}).get("dataset")
    return f"rewrite it with `bench convert {name}`" if name else (
        "re-create it with `bench convert`")


def read_sidecar(beton: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and sanity-check the sidecar of `beton`; any problem is a one-line BenchError."""
    side = sidecar_path(beton)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise BenchError(
            f"{beton}: no sidecar {side.name} (not written by `bench convert`, or the "
            "conversion was interrupted); re-create it with `bench convert`") from None
    except (OSError, ValueError) as exc:
        raise BenchError(f"{side}: unreadable sidecar ({exc}); re-create it with "
                         "`bench convert`") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise BenchError(f"{side}: not a {SIDECAR_FORMAT} sidecar; re-create it with "
                         "`bench convert`")
    beton_meta = meta.get("beton")
    if not isinstance(beton_meta, dict) or not {"size", "sha256"} <= beton_meta.keys() or (
            not isinstance(meta.get("num_samples"), int)):
        raise BenchError(f"{side}: sidecar lacks beton size/sha256/num_samples; "
                         f"{_remedy(meta)}")
    return meta


def read_header(path: str | os.PathLike[str], size: int) -> dict[str, int]:
    """Parse and bounds-check the ffcv header and allocation table (no ffcv needed).

    This is what keeps a file that slipped past the sidecar (or a foreign file inspected with
    `check_structure`) from reaching ffcv with pointers outside the file.
    """
    if size < HEADER_TYPE.itemsize:
        raise ValueError(f"{size} bytes is shorter than an ffcv header")
    header = np.fromfile(path, dtype=HEADER_TYPE, count=1)[0]
    version, n_fields = int(header["version"]), int(header["num_fields"])
    n, table = int(header["num_samples"]), int(header["alloc_table_ptr"])
    if version != FFCV_FILE_VERSION:
        raise ValueError(f"not an ffcv v{FFCV_FILE_VERSION} file (version field {version})")
    data_start = HEADER_TYPE.itemsize + n_fields * _FIELD_DESC_SIZE
    if not 0 < n_fields <= 16 or table < data_start or table > size:
        raise ValueError(f"header points outside the file (allocation table at {table}, "
                         f"file is {size} bytes)")
    if (size - table) % ALLOC_TABLE_TYPE.itemsize:
        raise ValueError("allocation table does not fill the end of the file (truncated?)")
    alloc = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table)
    if len(alloc) and (np.any(alloc["sample_id"] >= max(n, 1))
                       or np.any(alloc["ptr"] < data_start)
                       or np.any(alloc["ptr"] + alloc["size"] > table)):
        raise ValueError("allocation table points outside the data region")
    return {"num_samples": n, "num_fields": n_fields, "alloc_table_ptr": table,
            "page_size": int(header["page_size"]), "allocations": int(len(alloc))}


def verify_beton(path: str | os.PathLike[str], *, expected_samples: int | None = None,
                 expected_fingerprint: str | None = None) -> dict[str, Any]:
    """Return the sidecar of `path` if the file is exactly what was written; else BenchError.

    Checks, cheapest first: file exists and is not empty, sidecar present, byte size, ffcv
    header/allocation-table bounds and sample count, then the SHA-256 of the whole file.
    `expected_fingerprint` ties the file to the source arrays the caller holds.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise BenchError(f"{p}: .beton file not found; create it with `bench convert`") from None
    if not p.is_file():
        raise BenchError(f"{p}: not a regular file")
    if size == 0:
        raise BenchError(f"{p}: empty .beton file; re-create it with `bench convert`")
    meta = read_sidecar(p)
    fix = _remedy(meta)
    want_size = int(meta["beton"]["size"])
    if size != want_size:
        raise BenchError(f"{p}: {size} bytes but its sidecar says {want_size} "
                         f"(truncated or replaced); {fix}")
    try:
        header = read_header(p, size)
    except (ValueError, OSError) as exc:
        raise BenchError(f"{p}: damaged ffcv file: {exc}; {fix}") from None
    if header["num_samples"] != meta["num_samples"]:
        raise BenchError(f"{p}: header holds {header['num_samples']} samples, sidecar says "
                         f"{meta['num_samples']}; {fix}")
    if expected_samples is not None and meta["num_samples"] != expected_samples:
        raise BenchError(f"{p}: holds {meta['num_samples']} samples, expected "
                         f"{expected_samples}; {fix}")
    if expected_fingerprint is not None and meta.get("source_fingerprint") != (
            expected_fingerprint):
        raise BenchError(f"{p}: written from other source data than the dataset loaded now; "
                         f"{fix}")
    digest = file_sha256(p)
    if digest != meta["beton"]["sha256"]:
        raise BenchError(f"{p}: content changed since it was written (sha256 mismatch: "
                         f"damaged or modified file); {fix}")
    return meta


__all__ = ["SIDECAR_FORMAT", "file_sha256", "read_header", "read_sidecar", "sidecar_path",
           "verify_beton"]
