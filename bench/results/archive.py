"""One gzip'd tar of a run's files: what a lent machine sends back when only a few files may.

Written atomically (a temporary file beside it, renamed over it), so a reader or a kill mid-way
sees the previous archive or the whole new one. Member names are relative POSIX paths: no
absolute path and no `..` ever goes into an archive.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from bench.results.store import atomic_write


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"archive member name {name!r} must be a relative path inside it")
    return path.as_posix()


def write_archive(dest: Path, members: Mapping[str, Path]) -> None:
    """Write `members` (name inside the archive -> file) as a .tar.gz at `dest`, atomically.
    A member that vanished meanwhile is left out; symlinks are not followed out of the tree
    (only regular files are added)."""
    names = {_safe_name(n): p for n, p in members.items()}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            with tarfile.open(fileobj=f, mode="w:gz") as tar:
                for name, path in names.items():
                    if path.is_file() and not path.is_symlink():
                        tar.add(path, arcname=name, recursive=False)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(dest, write)
