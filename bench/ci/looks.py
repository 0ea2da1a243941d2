"""The rounds of a sequential `bench ci` job (stored baseline and `--against` alike): measure
`--repeats` rounds, look, and measure again only the configurations no look has decided, one
round at a time, until every one is decided, `--max-repeats` rounds ran, or the next round
would end the job past `--time-cap-s`. Each verdict is frozen at the look that reached it (the
sequential test's error rates assume it: `bench.gate.sequential`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.gate.compare import Comparison, MatchRow
from bench.gate.sequential import DECIDED, Looks
from bench.results import Key


@dataclass(frozen=True)
class Caps:
    """How long a job may measure: `first` rounds before the first look, `most` rounds in
    all, and no round started that would end it past `time_cap_s` (the first rounds always
    run)."""

    first: int
    most: int
    time_cap_s: float

    def looks(self, sigma_df: int | None, base_in_job: bool = False) -> Looks | None:
        """The sequential test's plan; None when no round may follow the first look (then
        the fixed test decides, as `bench compare` does)."""
        if self.most <= self.first:
            return None
        return Looks(self.most - self.first + 1, sigma_df, base_in_job)


@dataclass
class Outcome:
    comparison: Comparison  # every row: its frozen verdict, or its last look's "not gated"
    rounds: int
    seconds: float

    def line(self) -> str:
        rows = self.comparison.rows
        decided = sum(r.verdict in DECIDED for r in rows)
        return (f"ci: {self.rounds} round(s) in {self.seconds:.0f}s; {decided} of {len(rows)} "
                "configuration(s) decided")


def undecided_models(rows: Sequence[MatchRow], frozen: dict[Key, MatchRow]) -> list[str]:
    """The models of the configurations no look has decided (the next round runs only them)."""
    return sorted({str(r.key[0]).split("@")[0] for r in rows if r.key not in frozen})


def run_looks(measure: Callable[[int, Sequence[str]], None], look: Callable[[], Comparison],
              caps: Caps) -> Outcome:
    """`measure(rounds, models)` adds rounds (all models when `models` is empty); `look()`
    compares what has been measured so far."""
    started = time.monotonic()
    measure(caps.first, ())
    rounds, last = caps.first, (time.monotonic() - started) / caps.first
    frozen: dict[Key, MatchRow] = {}
    while True:
        cmp = look()
        frozen.update({r.key: r for r in cmp.rows
                       if r.verdict in DECIDED and r.key not in frozen})
        cmp.rows = [frozen.get(r.key, r) for r in cmp.rows]
        models = undecided_models(cmp.rows, frozen)
        elapsed = time.monotonic() - started
        if (not models or cmp.failed or rounds >= caps.most
                or elapsed + last > caps.time_cap_s):
            return Outcome(cmp, rounds, elapsed)
        t0 = time.monotonic()
        measure(1, models)
        rounds, last = rounds + 1, time.monotonic() - t0


__all__ = ["Caps", "Outcome", "run_looks", "undecided_models"]
