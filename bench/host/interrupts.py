"""Ctrl-C, SIGTERM and SIGHUP mean the same thing to every long-running verb: stop, keep what
finished, exit 128 + the signal's number.

CI cancels (SIGTERM), `timeout`, Slurm and Kubernetes stop a job with SIGTERM; a closed terminal
sends SIGHUP. Python turns only SIGINT into KeyboardInterrupt, so a plain SIGTERM would kill
`bench run` with no result at all. `install()` makes the other two raise `Stopped`, a
KeyboardInterrupt, so the runner records the run in flight as `interrupted` (its finished epochs
kept) and a suite writes the table of what finished, whichever signal came.
"""

from __future__ import annotations

import signal
from typing import Any

from bench.defaults import EXIT_CODES

_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
_received: list[int] = []  # the signals seen by this process, first one first


class Stopped(KeyboardInterrupt):
    """A stop signal other than SIGINT, raised where the main thread is."""

    def __init__(self, signum: int) -> None:
        super().__init__(_NAMES.get(signum, f"signal {signum}"))
        self.signum = signum


def _raise(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Stopped(signum)


def _note_sigint(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> dict[int, Any]:
    """SIGTERM and SIGHUP raise Stopped; SIGINT still raises KeyboardInterrupt (and is noted).
    Forgets earlier signals; returns the previous handlers (for `restore`)."""
    reset()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _raise)
    if previous[signal.SIGHUP] is not signal.SIG_IGN:  # `nohup bench ...` keeps running
        signal.signal(signal.SIGHUP, _raise)
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, _note_sigint)
    return previous


def restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        if handler is not None:
            signal.signal(signum, handler)


def seen() -> bool:
    """Whether a stop signal arrived (also one a caller caught and recorded, as the runner
    records a run `interrupted`): a loop over many steps stops at the next one."""
    return bool(_received)


def describe() -> str:
    """What stopped us, for a result's message."""
    return _NAMES.get(_received[0], "a signal") if _received else "Ctrl-C (SIGINT)"


def exit_code() -> int:
    """128 + the first stop signal's number (130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + _received[0] if _received else EXIT_CODES["interrupted"]


def reset() -> None:
    """Forget the signals seen (tests run many verbs in one process)."""
    _received.clear()
