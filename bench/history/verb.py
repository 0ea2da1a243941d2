"""`bench history`: the speed of every configuration over commits, per device.

  bench history [DIR] --out site/      render DIR (default results/history) as site/index.html
  bench history append RESULTS...      append result files/folders to the store (--history DIR)

`bench suite --history DIR` and `bench ci --history DIR` append as they finish. docs/history.md
describes the store and the page. Only the page needs plotly; appending works without it.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.errors import BenchError
from bench.fsutil import writable_dir
from bench.gate.compare import add_gate_flags
from bench.history.store import DEFAULT_HISTORY_DIR, append_docs, read_history
from bench.results import load_docs

APPEND = "append"


def _append(args: argparse.Namespace, items: list[str]) -> int:
    if not items:
        raise BenchError("history append: name the result files or folders to append")
    docs = load_docs(items)
    if not docs:
        raise BenchError(f"history append: no result files in {', '.join(items)}")
    written = append_docs(args.history, docs, "append")
    for path, n in written.items():
        print(f"{path}: appended {n} record(s)")
    return 0


def _render(args: argparse.Namespace, items: list[str]) -> int:
    from bench.gate.compare import parse_alpha, parse_threshold
    from bench.history.series import build_series

    if len(items) > 1:
        raise BenchError(f"history: one history folder at most, got {len(items)} "
                         f"({' '.join(items)}); to add results use `bench history append`")
    source = items[0] if items else args.history
    threshold, alpha = parse_threshold(args.threshold), parse_alpha(args.alpha)
    records = read_history(source)
    if not records:
        raise BenchError(f"history {source}: no history records in it (record some with "
                         "`bench ci --history`, `bench suite --history` or `bench history "
                         "append`)")
    series = build_series(records, threshold, alpha)
    if not series:
        raise BenchError(f"history {source}: no record has a figure to plot (every run failed)")
    from bench.history.page import require_plotly, write_page

    out = writable_dir(args.out, "--out folder")  # a bad --out is reported before no plotly
    require_plotly()
    path = write_page(out, records, series, source)
    print(f"{path}: {len(records)} record(s), {len(series)} series")
    return 0


def handler(args: argparse.Namespace) -> int:
    items = list(args.items)
    if items and items[0] == APPEND:
        return _append(args, items[1:])
    return _render(args, items)


def register(sub: Any) -> None:
    p = sub.add_parser("history", help="plot images/s and time-to-accuracy over commits "
                       "(static HTML page), or append results to the history store",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="DIR | append RESULTS",
                   help=f"the history folder to plot (default {DEFAULT_HISTORY_DIR}); or "
                   "`append` and result files/folders")
    p.add_argument("--out", default="site", help="folder the page is written to, as "
                   "index.html (default site/)")
    p.add_argument("--history", default=str(DEFAULT_HISTORY_DIR), metavar="DIR",
                   help=f"the store: where `append` writes, and what is drawn when no DIR is "
                   f"given (default {DEFAULT_HISTORY_DIR})")
    add_gate_flags(p, "slowdown from the previous point that is marked as a regression, "
                   "when also significant",
                   "false-alarm rate of each point's test against the previous one")
    p.set_defaults(func=handler)


__all__ = ["handler", "register"]
