"""The history as a view of the result store: its records are built from the result files each
time it is drawn, one per job (batch id), device, commit and configuration (`records.py`), marked
with the verdicts `bench ci` kept beside the runs (`gates.py`). No copy of a run is kept
anywhere else.

The JSON-lines stores of earlier versions (`jsonl.py`), in the folder or in its `history/`
subfolder (where `--history` used to write), join the view, less the records whose runs the
store itself holds: an old store keeps drawing, and a run is never drawn twice.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError
from bench.history.gates import read_verdicts
from bench.history.jsonl import SUFFIX, read_history
from bench.history.records import Record, build_records
from bench.results import folder_docs, load_docs

LEGACY_SUBDIR = "history"  # results/history: where `--history` wrote the JSON-lines files


def _legacy_records(folder: Path) -> list[Record]:
    return [rec for f in (folder, folder / LEGACY_SUBDIR)
            if f.is_dir() and any(f.glob(f"*{SUFFIX}")) for rec in read_history(f)]


def _new(rec: Record, stored: set[str]) -> bool:
    """Whether an old record adds runs the store does not hold (none named: it does)."""
    ids = {str(i) for i in rec.get("run_ids") or []}
    return not ids or not ids <= stored


def history_records(source: str | os.PathLike[str]) -> list[Record]:
    """The records of a results folder (with any old JSON-lines stores in it), of one result
    file, or of one old `.jsonl` file."""
    p = Path(source)
    if p.is_file():
        return read_history(p) if p.suffix == SUFFIX else build_records(load_docs([p]))
    if not p.is_dir():
        raise BenchError(f"history {p}: no such file or folder")
    records = build_records(folder_docs(p), read_verdicts(p))
    stored = {i for rec in records for i in rec["run_ids"]}
    return records + [rec for rec in _legacy_records(p) if _new(rec, stored)]


__all__ = ["LEGACY_SUBDIR", "history_records"]
