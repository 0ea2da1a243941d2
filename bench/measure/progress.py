"""Progress on stderr: a tqdm bar over a run's steps (or a suite's runs) and one line per epoch.

The engine calls `RunProgress.window` only where it has synchronised anyway (a window edge), so
progress adds no host sync to the step loop. The bar shows steps done/total, the training
clock's images/s of the last window and tqdm's ETA; it is off when stderr is not a terminal
(tqdm's `disable=None`), on ranks other than 0, with `--quiet` and with `--no-progress`. The
epoch lines follow `--quiet` alone (as before) and go through the bar so they do not tear it.
Nothing here writes to stdout: what `run` and `suite` print there stays parseable.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


def bar_disable(enabled: bool) -> bool | None:
    """tqdm's `disable`: None (off unless stderr is a terminal) when wanted, else True."""
    return None if enabled else True


class RunProgress:
    """One run's bar and lines. `total` is steps (a training run) or seconds of timed budget
    (a throughput measurement, whose step count the budget decides)."""

    def __init__(self, label: str, *, lines: bool, bar: bool, total: float | None = None,
                 unit: str = "step", min_interval_s: float = 1.0) -> None:
        self.label, self.lines = label, lines
        self.min_interval_s = min_interval_s
        self._last = float("-inf")
        self._bar: Any = tqdm(total=total, desc=label, unit=unit, file=sys.stderr,
                              disable=bar_disable(bar), leave=False, dynamic_ncols=True)

    @property
    def bar_shown(self) -> bool:
        return not self._bar.disable

    def window(self, done: float, images: int, seconds: float) -> None:
        """A window closed: `done` steps (or seconds) so far, the window's images and time."""
        if self._bar.disable:
            return
        self._bar.update(done - self._bar.n)
        if seconds > 0:
            self._bar.set_postfix_str(f"{images / seconds:,.0f} img/s", refresh=False)

    def line(self, text: str, force: bool = True) -> None:
        """A progress line (at most one a second unless forced), written around the bar."""
        t = time.monotonic()
        if self.lines and (force or t - self._last >= self.min_interval_s):
            self._last = t
            self._bar.write(f"[{self.label}] {text}", file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


def quiet_progress() -> RunProgress:
    """No bar, no lines (tests, helpers that drive the engine directly)."""
    return RunProgress("", lines=False, bar=False)


class SuiteProgress:
    """The outer bar over a suite's runs, with the last run's status beside it; when the bar is
    off (no terminal, --no-progress) each finished run gets one status line instead."""

    def __init__(self, name: str, total: int, enabled: bool, lines: bool) -> None:
        self.name, self.lines, self.total, self.finished = name, lines, total, 0
        self._bar: Any = tqdm(total=total, desc=f"suite {name}", unit="run", file=sys.stderr,
                              disable=bar_disable(enabled), position=0, leave=True,
                              dynamic_ncols=True)

    def done(self, what: str, status: str) -> None:
        """A run finished (or failed to start) with `status`."""
        self.finished += 1
        if not self._bar.disable:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{what}: {status}")
        elif self.lines:
            print(f"suite {self.name}: [{self.finished}/{self.total}] {what}: {status}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        self._bar.close()
