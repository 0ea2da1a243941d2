"""The history stores of earlier versions, read only: one JSON-lines file per device,
`DIR/<device-slug>.jsonl`, each line a record (`records.py`) written when a suite or ci job
appended its runs. The history is now a view of the result store (`view.py`); these files
keep drawing, and nothing writes them any more.

Every line is parsed by the guarded reader (`results.guarded`): a line over MAX_LINE_BYTES, JSON
nested too deep, NaN or Infinity, or a record of wrong types (`records.record_problem`) is not a
record. A line that is not a record (a torn last line a killed writer left, an edit gone wrong,
a newer format) is skipped with one warning per file, never fatal. A file that is a FIFO or a
link out of the folder read is refused without blocking.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.fsutil import os_reason, warn
from bench.history.records import Record, record_problem
from bench.results.guarded import (
    MAX_LINE_BYTES,
    Refused,
    iter_lines,
    loads,
    open_regular,
)

SUFFIX = ".jsonl"


def _parse(line: bytes | None, where: str) -> tuple[Any, str | None]:
    """One line through the guarded parser: (the parsed JSON, None) or (None, why not)."""
    if line is None:
        return None, f"over {MAX_LINE_BYTES // 1024} KiB"
    try:
        return loads(line, where, "history line"), None
    except Refused as exc:
        return None, exc.reason


def read_file(path: Path, within: Path | None = None) -> list[Record]:
    """The records of one history file; lines that are not records (a torn last line, an edit
    gone wrong, a newer format, a line the guarded parser refuses) are skipped with one warning
    per file. `within`: the folder being read, which a symlink must not point out of."""
    try:
        fd = open_regular(path, "history file", within)
    except OSError as exc:
        raise BenchError(f"{path}: cannot read history file ({os_reason(exc)})") from None
    try:
        records, bad = _records(iter_lines(fd), path)
    finally:
        os.close(fd)
    if bad:
        lines = ", ".join(str(n) for n, _ in bad[:5])
        warn(f"warning: {path}: skipped {len(bad)} line(s) that are not history records, "
             f"line {lines}{'...' if len(bad) > 5 else ''}; line {bad[0][0]}: {bad[0][1]}")
    return records


def _records(lines: Iterable[bytes | None], path: Path
             ) -> tuple[list[Record], list[tuple[int, str]]]:
    """The records among `lines`, and the (line number, reason) of the rest."""
    records: list[Record] = []
    bad: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if line is not None and not line.strip():
            continue
        rec, why = _parse(line, f"{path}:{n}")
        why = why or record_problem(rec)
        if why:
            bad.append((n, why))
        else:
            records.append(rec)
    return records, bad


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


__all__ = ["SUFFIX", "history_files", "read_file", "read_history"]
