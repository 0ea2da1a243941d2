"""The history store: one append-only JSON-lines file per device, `DIR/<device-slug>.jsonl`.

Appending is safe with several writers at once (two CI jobs, a suite and a manual append): each
writer opens the file with O_APPEND, takes an exclusive `flock` on that descriptor (released
when it is closed, also when the process dies), and writes each record as one line with one
write(). Under the lock it also reads the run ids already stored, so appending the same results
twice adds nothing. `flock`, not `lockf`: a POSIX lock would be dropped as soon as the writer
closes the second descriptor it reads the file through.

A crash in the middle of a write leaves a torn last line. Readers skip any line that is not a
record with a warning (never fatal), and the next writer first ends the torn line, so that the
fragment cannot glue itself to the record written after it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..defaults import RESULTS_DIR
from ..errors import BenchError
from ..fsutil import os_reason, warn, writable_dir
from ..results import ResultDoc, device_slug
from .records import RECORD_KIND, RECORD_VERSION, Record, build_records, device_of

DEFAULT_HISTORY_DIR = Path(RESULTS_DIR) / "history"
SUFFIX = ".jsonl"


def history_path(folder: str | os.PathLike[str], device: str) -> Path:
    """The file of one device's records."""
    return Path(folder) / f"{device_slug(device)}{SUFFIX}"


# --------------------------------------------------------------------------- writing


def _stored_state(path: Path) -> tuple[set[str], bool]:
    """Run ids already recorded in `path`, and whether its last line is torn (no newline)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set(), False
    known: set[str] = set()
    for line in data.splitlines():
        try:
            rec = json.loads(line)
            known.update(str(i) for i in rec.get("run_ids") or [])
        except (ValueError, AttributeError, TypeError):
            continue
    return known, bool(data) and not data.endswith(b"\n")


def _write_all(fd: int, data: bytes) -> None:
    """One write() for the record; a short write (a full disk, a signal) is continued, still
    under the lock, so no other writer's bytes can come between."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def encode(record: Record) -> bytes:
    """A record as its one line."""
    return (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()


def locked_append(path: Path, make: Callable[[set[str]], Sequence[Record]]) -> int:
    """Append `make(known_run_ids)` to `path` under an exclusive lock; returns how many."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        known, torn = _stored_state(path)
        records = make(known)
        if records and torn:
            _write_all(fd, b"\n")  # end the torn line: the fragment stays a line of its own
        for record in records:
            _write_all(fd, encode(record))
        if records:
            os.fsync(fd)
        return len(records)
    finally:
        os.close(fd)  # releases the lock


def append_docs(folder: str | os.PathLike[str], docs: Iterable[ResultDoc], source: str,
                comparison: Any = None) -> dict[Path, int]:
    """Append the records of `docs` (runs already stored are left out) to their devices' files;
    returns the records written per file. `comparison`: the `bench ci` gate's, if any."""
    by_device: dict[str, list[ResultDoc]] = {}
    for doc in docs:
        by_device.setdefault(device_of(doc), []).append(doc)
    out = writable_dir(folder, "history folder")
    written = {}
    for device, group in sorted(by_device.items()):
        path = history_path(out, device)

        def make(known: set[str], group: list[ResultDoc] = group) -> list[Record]:
            fresh = [d for d in group if str(d.get("run_id")) not in known]
            return build_records(fresh, source, comparison)

        try:
            written[path] = locked_append(path, make)
        except OSError as exc:
            raise BenchError(f"cannot append to history file {path}: {os_reason(exc)}") from None
    return written


# --------------------------------------------------------------------------- reading


def _valid(rec: Any) -> bool:
    return (isinstance(rec, dict) and rec.get("kind") == RECORD_KIND
            and isinstance(rec.get("version"), int) and rec["version"] <= RECORD_VERSION
            and isinstance(rec.get("device"), str) and isinstance(rec.get("config"), str)
            and isinstance(rec.get("date"), str))


def read_file(path: Path) -> list[Record]:
    """The records of one history file; lines that are not records (a torn last line, an edit
    gone wrong, a newer format) are skipped with one warning per file."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BenchError(f"{path}: cannot read history file ({os_reason(exc)})") from None
    records, bad = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if _valid(rec):
            records.append(rec)
        else:
            bad.append(n)
    if bad:
        torn = " (a torn last line: a writer was killed mid-write)" if bad == [len(lines)] else ""
        warn(f"warning: {path}: skipped {len(bad)} line(s) that are not history records, "
             f"line {', '.join(map(str, bad[:5]))}{'...' if len(bad) > 5 else ''}{torn}")
    return records


def history_files(source: str | os.PathLike[str]) -> list[Path]:
    """A history folder's `*.jsonl` files, or the one file named."""
    p = Path(source)
    if p.is_dir():
        return sorted(f for f in p.glob(f"*{SUFFIX}") if not f.name.startswith("."))
    if p.is_file():
        return [p]
    raise BenchError(f"history {p}: no such file or folder")


def read_history(source: str | os.PathLike[str]) -> list[Record]:
    """Every record of a history folder (or file), in file then line order."""
    return [rec for f in history_files(source) for rec in read_file(f)]


__all__ = ["DEFAULT_HISTORY_DIR", "append_docs", "encode", "history_files", "history_path",
           "locked_append", "read_file", "read_history"]
