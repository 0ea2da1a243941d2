"""`--history DIR` on `bench suite` and `bench ci`, kept so that the jobs that pass it go on
running: the history is now a view of the result store (`view.py`), so the flag has nothing
left to do, and says so once.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.defaults import RESULTS_DIR
from bench.fsutil import warn


def add_history_flag(parser: Any) -> None:
    parser.add_argument("--history", metavar="DIR", default=None, help=argparse.SUPPRESS)


def warn_history_flag(folder: str | None) -> None:
    """One line when the flag was given: it is ignored, and why."""
    if folder:
        warn(f"warning: --history {folder} is ignored: the history is drawn from the result "
             f"files themselves (`bench history {RESULTS_DIR}/ --out site/`)")


__all__ = ["add_history_flag", "warn_history_flag"]
