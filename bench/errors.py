"""The one exception type for errors a user can cause (the CLI prints its message on one line),
and the trace of an error the harness goes on without."""

import os
import sys
import traceback


class BenchError(Exception):
    """A user-facing error (bad flag, missing data, corrupt file). Never shown as a traceback."""


def debug_trace(what: str) -> None:
    """Under BENCH_DEBUG=1, the traceback of the exception being handled, for an error the
    harness goes on without (a figure left out, a reading missing): never a silent swallow."""
    if os.environ.get("BENCH_DEBUG"):
        print(f"bench: debug: {what} failed:\n{traceback.format_exc()}", file=sys.stderr)
