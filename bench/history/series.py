"""History records as series (one per configuration and device, in date order) and the
regressions to mark on them.

A point is a regression when the `bench ci` gate said so when it was recorded (against the
stored baseline), or else when `bench.gate.stats.gate` finds it slower than the previous point
of its series beyond the threshold at the false-alarm rate (this needs 2+ runs on each side, as
every gate does; single runs are never marked). Pure: the page draws what this returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.gate.stats import gate
from bench.history.records import Record
from bench.results import num
from bench.results.aggregate import group

SeriesKey = tuple[str, str]  # configuration label, device label


@dataclass
class Series:
    config: str
    device: str
    points: list[Record] = field(default_factory=list)  # in date order
    regressions: list[tuple[Record, str]] = field(default_factory=list)  # (point, why)


def short_commit(commit: str | None) -> str:
    """'0123456789abcdef...-dirty' -> '01234567-dirty'; '?' when unknown."""
    if not commit:
        return "?"
    sha, dirty, _ = str(commit).partition("-dirty")
    return sha[:8] + ("-dirty" if dirty else "")


def _runs(rec: Record) -> list[float]:
    return [v for v in (num(x) for x in rec.get("images_per_s_runs") or []) if v and v > 0]


def _gate_reason(rec: Record) -> str | None:
    g = rec.get("gate") or {}
    if g.get("verdict") == "failed":
        return "ci gate: failed in this run (ok in the baseline)"
    if g.get("verdict") != "regression":
        return None
    bounds = (f" [{g['low']:.3f}, {g['high']:.3f}]"
              if g.get("low") is not None and g.get("high") is not None else "")
    return f"ci gate vs baseline: ratio {g.get('ratio', 0):.3f}{bounds}"


def _step_reason(prev: Record, cur: Record, threshold: float, alpha: float) -> str | None:
    base, cand = _runs(prev), _runs(cur)
    if not base or not cand:
        return None
    g = gate(base, cand, threshold, alpha)
    if g.verdict != "regression":
        return None
    return (f"vs {short_commit(prev.get('commit'))}: ratio {g.ratio:.3f} "
            f"[{g.low:.3f}, {g.high:.3f}]")


def _same_work(a: Record, b: Record) -> bool:
    """False when both points carry a benchmark version and they differ: a changed benchmark
    is never read as a regression of its old self (results.version)."""
    va, vb = a.get("benchmark_version"), b.get("benchmark_version")
    return not (isinstance(va, str) and isinstance(vb, str) and va != vb)


def find_regressions(points: Sequence[Record], threshold: float, alpha: float
                     ) -> list[tuple[Record, str]]:
    """The regressions of one series (points in date order) and why each is one."""
    found = []
    for i, rec in enumerate(points):
        why = _gate_reason(rec)
        if why is None and i > 0 and _same_work(points[i - 1], rec):
            why = _step_reason(points[i - 1], rec, threshold, alpha)
        if why is not None:
            found.append((rec, why))
    return found


def build_series(records: Iterable[Record], threshold: float = 0.05, alpha: float = 0.05
                 ) -> list[Series]:
    """Series ordered by configuration then device; records without any figure (every run
    failed) are left out."""
    groups: dict[SeriesKey, list[Record]] = group(
        (rec for rec in records
         if num(rec.get("images_per_s")) is not None or num(rec.get("time_to_accuracy_s"))),
        lambda rec: (rec["config"], rec["device"]))
    out = []
    for (config, device), points in sorted(groups.items()):
        points.sort(key=lambda r: (r["date"], r.get("recorded") or ""))
        out.append(Series(config, device, points, find_regressions(points, threshold, alpha)))
    return out


__all__ = ["Series", "build_series", "find_regressions", "short_commit"]
