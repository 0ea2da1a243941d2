"""The history store: one append-only JSON-lines file per device, `DIR/<device-slug>.jsonl`.

Appending is safe with several writers at once (two CI jobs, a suite and a manual append): each
writer opens the file with O_APPEND, takes an exclusive `flock` on that descriptor (released
when it is closed, also when the process dies), and writes each record as one line with one
write(). Under the lock it also reads, through the same descriptor, the run ids already stored,
so appending the same results twice adds nothing. `flock`, not `lockf`: a POSIX lock would be
dropped as soon as any descriptor of the file is closed. The store is never written through a
symlink (a link to another file would be written instead) nor opened if it is a FIFO or device.

Every line is parsed by the guarded reader (`results.guarded`): a line over MAX_LINE_BYTES, JSON
nested too deep, NaN or Infinity, or a record of wrong types (`records.record_problem`) is not a
record.

A crash in the middle of a write leaves a torn last line. Readers skip any line that is not a
record with a warning (never fatal), and the next writer first ends the torn line, so that the
fragment cannot glue itself to the record written after it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.defaults import RESULTS_DIR
from bench.errors import BenchError
from bench.fsutil import os_reason, warn, writable_dir
from bench.history.records import RECORD_KIND, Record, build_records, device_of, record_problem
from bench.results import ResultDoc, device_slug
from bench.results.aggregate import group
from bench.results.guarded import (
    MAX_HISTORY_BYTES,
    MAX_LINE_BYTES,
    Refused,
    iter_lines,
    loads,
    open_regular,
)

DEFAULT_HISTORY_DIR = Path(RESULTS_DIR) / "history"
SUFFIX = ".jsonl"


def history_path(folder: str | os.PathLike[str], device: str) -> Path:
    """The file of one device's records."""
    return Path(folder) / f"{device_slug(device)}{SUFFIX}"


# --------------------------------------------------------------------------- lines


def _parse(line: bytes | None, where: str) -> tuple[Any, str | None]:
    """One line through the guarded parser: (the parsed JSON, None) or (None, why not)."""
    if line is None:
        return None, f"over {MAX_LINE_BYTES // 1024} KiB"
    try:
        return loads(line, where, "history line"), None
    except Refused as exc:
        return None, exc.reason


def _check_size(fd: int, path: Path) -> int:
    size = os.fstat(fd).st_size
    if size > MAX_HISTORY_BYTES:
        raise BenchError(f"{path}: history file of {size / (1 << 30):,.1f} GiB, over the "
                         f"{MAX_HISTORY_BYTES >> 30} GiB cap (damaged, or time to archive it)")
    return size


def _stored_state(fd: int, path: Path) -> tuple[set[str], bool]:
    """Run ids already recorded in the open store, and whether its last line is torn."""
    size = _check_size(fd, path)
    known: set[str] = set()
    for n, line in enumerate(iter_lines(fd), 1):
        rec, _ = _parse(line, f"{path}:{n}")
        if isinstance(rec, dict) and rec.get("kind") == RECORD_KIND and isinstance(
                rec.get("run_ids"), list):  # a newer version's ids count too: never re-added
            known.update(str(i) for i in rec["run_ids"])
    return known, size > 0 and os.pread(fd, 1, size - 1) != b"\n"


# --------------------------------------------------------------------------- writing


def _write_all(fd: int, data: bytes) -> None:
    """One write() for the record; a short write (a full disk, a signal) is continued, still
    under the lock, so no other writer's bytes can come between."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def encode(record: Record) -> bytes:
    """A record as its one line."""
    return (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()


def _open_store(path: Path) -> int:
    """The store, opened to append and to read its run ids: not through a symlink (O_NOFOLLOW),
    not a FIFO or a device (O_NONBLOCK, so that opening one cannot block, then fstat)."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise BenchError(f"history file {path} is a symlink (to {os.path.realpath(path)});"
                             " refusing to write through it: replace the link with the file"
                             ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BenchError(f"history file {path} is not a regular file (a FIFO, a device?); "
                         "refusing to write to it")
    return fd


def locked_append(path: Path, make: Callable[[set[str]], Sequence[Record]]) -> int:
    """Append `make(known_run_ids)` to `path` under an exclusive lock; returns how many."""
    fd = _open_store(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        known, torn = _stored_state(fd, path)
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
    by_device = group(docs, device_of)
    out = writable_dir(folder, "history folder")
    written = {}
    for device, device_docs in sorted(by_device.items()):
        path = history_path(out, device)

        def make(known: set[str], batch: list[ResultDoc] = device_docs) -> list[Record]:
            fresh = [d for d in batch if str(d.get("run_id")) not in known]
            return build_records(fresh, source, comparison)

        try:
            written[path] = locked_append(path, make)
        except OSError as exc:
            raise BenchError(f"cannot append to history file {path}: {os_reason(exc)}") from None
    return written


# --------------------------------------------------------------------------- reading


def read_file(path: Path, within: Path | None = None) -> list[Record]:
    """The records of one history file; lines that are not records (a torn last line, an edit
    gone wrong, a newer format, a line the guarded parser refuses) are skipped with one warning
    per file. `within`: the folder being read, which a symlink must not point out of."""
    try:
        fd = open_regular(path, "history file", within)
    except OSError as exc:
        raise BenchError(f"{path}: cannot read history file ({os_reason(exc)})") from None
    try:
        size = _check_size(fd, path)
        records, bad, last = _records(iter_lines(fd), path)
        unended = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
    finally:
        os.close(fd)
    if bad:
        torn = " (a torn last line: a writer was killed mid-write)" if unended and [
            n for n, _ in bad] == [last] else ""
        lines = ", ".join(str(n) for n, _ in bad[:5])
        warn(f"warning: {path}: skipped {len(bad)} line(s) that are not history records, "
             f"line {lines}{'...' if len(bad) > 5 else ''}{torn}; line {bad[0][0]}: "
             f"{bad[0][1]}")
    return records


def _records(lines: Iterable[bytes | None], path: Path
             ) -> tuple[list[Record], list[tuple[int, str]], int]:
    """The records among `lines`, the (line number, reason) of the rest, and the last line's
    number."""
    records: list[Record] = []
    bad: list[tuple[int, str]] = []
    n = 0
    for n, line in enumerate(lines, 1):
        if line is not None and not line.strip():
            continue
        rec, why = _parse(line, f"{path}:{n}")
        why = why or record_problem(rec)
        if why:
            bad.append((n, why))
        else:
            records.append(rec)
    return records, bad, n


def history_files(source: str | os.PathLike[str]) -> list[Path]:
    """A history folder's `*.jsonl` files, or the one file named."""
    p = Path(source)
    if p.is_dir():
        return sorted(f for f in p.glob(f"*{SUFFIX}") if not f.name.startswith("."))
    if p.is_file():
        return [p]
    raise BenchError(f"history {p}: no such file or folder")


def read_history(source: str | os.PathLike[str]) -> list[Record]:
    """Every record of a history folder (or file), in file then line order. In a folder, a file
    that cannot be read (a FIFO, a link out of the folder) is skipped with one line."""
    if not Path(source).is_dir():
        return [rec for f in history_files(source) for rec in read_file(f)]
    records: list[Record] = []
    for f in history_files(source):
        try:
            records.extend(read_file(f, within=Path(source)))
        except BenchError as exc:
            warn(f"warning: skipped {exc}")
    return records


__all__ = ["DEFAULT_HISTORY_DIR", "append_docs", "encode", "history_files", "history_path",
           "locked_append", "read_file", "read_history"]
