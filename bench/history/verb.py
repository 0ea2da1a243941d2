"""`bench history`: the speed of every configuration over commits, per device.

  bench history [RESULTS] --out site/    draw RESULTS (default results/) as site/index.html

The history is a view of the result store: every `bench suite`, `ci` or `run` result in the
folder is a point's run, and `bench ci`'s verdicts (RESULTS/gates/) mark the points it judged;
the JSON-lines stores of earlier versions in the folder still draw. docs/history.md describes
the page. Only the page needs plotly.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.defaults import RESULTS_DIR
from bench.errors import BenchError
from bench.fsutil import writable_dir
from bench.gate.compare import add_gate_flags
from bench.history.view import history_records

APPEND = "append"


def handler(args: argparse.Namespace) -> int:
    from bench.gate.compare import parse_alpha, parse_threshold
    from bench.history.series import build_series

    items = list(args.items)
    if items[:1] == [APPEND]:
        raise BenchError("history append: there is no history store to append to any more; the "
                         "history is drawn from the result files themselves (`bench history "
                         "RESULTS --out site/`)")
    if len(items) > 1:
        raise BenchError(f"history: one results folder at most, got {len(items)} "
                         f"({' '.join(items)})")
    source = items[0] if items else RESULTS_DIR
    threshold, alpha = parse_threshold(args.threshold), parse_alpha(args.alpha)
    records = history_records(source)
    if not records:
        raise BenchError(f"history {source}: no results in it (`bench suite`, `bench ci` and "
                         "`bench run` write them)")
    series = build_series(records, threshold, alpha)
    if not series:
        raise BenchError(f"history {source}: no run has a figure to plot (every run failed)")
    from bench.history.page import require_plotly, write_page

    out = writable_dir(args.out, "--out folder")  # a bad --out is reported before no plotly
    require_plotly()
    path = write_page(out, records, series, source)
    print(f"{path}: {len(records)} point(s), {len(series)} series")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("history", help="plot images/s and time-to-accuracy over commits "
                       "(static HTML page) from the result files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="RESULTS",
                   help=f"the results folder to plot (default {RESULTS_DIR}/; an old history "
                   "folder or .jsonl file too)")
    p.add_argument("--out", default="site", help="folder the page is written to, as "
                   "index.html (default site/)")
    add_gate_flags(p, "slowdown from the previous point that is marked as a regression, "
                   "when also significant",
                   "false-alarm rate of each point's test against the previous one")
    p.set_defaults(func=handler)


__all__ = ["handler", "register"]
