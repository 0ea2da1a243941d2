"""What `bench suite` and `bench ci` call: the `--history DIR` flag and the one call after their
runs. Off unless the flag is given; torch- and plotly-free, so the callers pay nothing for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from bench.errors import BenchError
from bench.results import ResultDoc, read_docs


def add_history_flag(parser: Any) -> None:
    parser.add_argument("--history", metavar="DIR", default=None,
                        help="also append the results to the history store in DIR (one JSONL "
                        "file per device; `bench history --out site/ DIR` plots it; default: "
                        "off)")


def _append(folder: str, docs: Sequence[ResultDoc], source: str, comparison: Any) -> None:
    from bench.history.store import append_docs

    try:
        written = append_docs(folder, docs, source, comparison)
    except BenchError as exc:
        raise BenchError(f"{exc} (the results themselves are written; add them later with "
                         "`bench history append RESULTS`)") from None
    n = sum(written.values())
    print(f"history: appended {n} record(s) to {folder}", file=sys.stderr)


def record_suite(folder: str | None, paths: Iterable[str | os.PathLike[str]]) -> None:
    """`bench suite --history DIR`: append the suite's runs (no-op without the flag)."""
    if folder:
        _append(folder, [d for p in paths for d in read_docs(p)], "suite", None)


def record_ci(folder: str | None, docs: Sequence[ResultDoc], comparison: Any = None) -> None:
    """`bench ci --history DIR`: append the gated runs with the gate's figures per
    configuration (`comparison`: the `bench.gate.compare.Comparison`; no-op without the flag)."""
    if folder:
        _append(folder, docs, "ci", comparison)


__all__ = ["add_history_flag", "record_ci", "record_suite"]
