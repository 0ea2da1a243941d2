"""A round run in turns (`--against`), read as one figure: the candidate's speed over the
baseline's, window by window.

In a round run in turns (`bench.measure.turns`) the two sides' windows alternate, ~0.1 s each,
so turn k of the baseline and turn k of the candidate ran on the same machine a moment apart.
The round's figure is the median over the turns both took of log(candidate / baseline images/s
of that turn): the median because a window the neighbour hit spoils one turn, not the round.
On the 2-core VM its spread between rounds was 1.2-3.6% where the ratio of two processes
seconds apart moved 17-50% (docs/ci.md, `benchmarks/lockstep_pilot.py`).

Pure: result docs in, numbers out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.results import Key, ResultDoc, flatten, run_key
from bench.results.aggregate import group

# turns both sides took, for a round to count as paired: one is enough (vgg16's ci run on a
# 2-core CPU holds a single 2 s window); a round's noise is judged by the spread across rounds
MIN_TURNS = 1


def turn_rates(doc: ResultDoc) -> dict[int, float]:
    """Turn number -> images/s of the run's windows timed in turns."""
    rates = {}
    for w in doc.get("windows") or []:
        if not isinstance(w, dict) or w.get("warmup"):
            continue
        turn, images, seconds = w.get("turn"), w.get("images"), w.get("seconds")
        if (isinstance(turn, int) and isinstance(images, int | float)
                and isinstance(seconds, int | float) and images > 0 and seconds > 0
                and math.isfinite(images / seconds)):
            rates[turn] = images / seconds
    return rates


def turn_ratio(base: ResultDoc, cand: ResultDoc) -> float | None:
    """The round's log(candidate / baseline): median over the turns both took; None when
    fewer than MIN_TURNS (the round did not run in turns, or its partner died first)."""
    b, c = turn_rates(base), turn_rates(cand)
    common = sorted(b.keys() & c.keys())
    if len(common) < MIN_TURNS:
        return None
    return statistics.median(math.log(c[k] / b[k]) for k in common)


def paired_rounds(rounds: Sequence[Mapping[str, Sequence[ResultDoc]]]) -> dict[Key, list[float]]:
    """Per configuration, the turn ratio of every round whose two sides ran it in turns and
    finished ok. `rounds`: per round, {"baseline": docs, "candidate": docs}."""
    found: list[tuple[Key, float]] = []
    for r in rounds:
        sides = [_ok_by_key(r.get(side) or ()) for side in ("baseline", "candidate")]
        for key in sorted(sides[0].keys() & sides[1].keys(), key=str):
            ratio = turn_ratio(sides[0][key], sides[1][key])
            if ratio is not None:
                found.append((key, ratio))
    return {key: [r for _, r in pairs] for key, pairs in group(found, lambda p: p[0]).items()}


def _ok_by_key(docs: Sequence[ResultDoc]) -> dict[Key, ResultDoc]:
    found: dict[Key, Any] = {}
    for d in docs:
        if d.get("status") == "ok":
            found[run_key(flatten(d))] = d
    return found


__all__ = ["MIN_TURNS", "paired_rounds", "turn_rates", "turn_ratio"]
