"""Folder checks done before expensive work: a bad output or cache folder is one line, early.

A folder is proven writable by creating it and a probe file in it (permissions alone do not say:
root ignores them, a read-only mount does not show in the mode bits).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench.errors import BenchError


def os_reason(exc: OSError) -> str:
    """The short reason of an OSError ("No space left on device"), without errno noise."""
    return exc.strerror or type(exc).__name__


def writable_dir(path: str | os.PathLike[str], what: str, hint: str = "") -> Path:
    """Create `path` (and parents) and write/remove a probe file in it; BenchError if either
    fails. `what` names the folder's role in the message ("output folder", "cache folder");
    `hint` says what to do about it."""
    p = Path(path)
    tail = f"; {hint}" if hint else ""
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise BenchError(f"{what} {p}: {parent} is a file, not a folder{tail}")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchError(f"{what} {p} is not writable ({os_reason(exc)}){tail}") from None
    return p


def warn(msg: str) -> None:
    """One line on stderr, in the CLI's voice."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


__all__ = ["os_reason", "warn", "writable_dir"]
