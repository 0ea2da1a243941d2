"""The one aggregation of the readers (compare, ci, report, history, the suite tables): runs
grouped by a key, then the spread of one figure over a group's runs. Pure and torch-free; a
row is a mapping (a flat row of `results.flatten`, a summary, or a result document)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.results.rows import num

K = TypeVar("K")
T = TypeVar("T")


def group(rows: Iterable[T], by: Callable[[T], K]) -> dict[K, list[T]]:
    """The rows by `by(row)`; groups, and rows within a group, in the order first seen."""
    groups: dict[K, list[T]] = {}
    for row in rows:
        groups.setdefault(by(row), []).append(row)
    return groups


def figures(values: Iterable[Any], positive: bool = False) -> list[float]:
    """The values that are finite numbers (and above 0 with `positive`: a throughput or a time
    of 0 or below is no measurement); missing cells, NaN, infinities and text are left out."""
    out = []
    for v in values:
        f = num(v)
        if f is not None and math.isfinite(f) and (f > 0 or not positive):
            out.append(f)
    return out


def column(rows: Iterable[Mapping[str, Any]], name: str, positive: bool = False) -> list[float]:
    """The figures of one field over the rows (see `figures`)."""
    return figures((r.get(name) for r in rows), positive)


@dataclass(frozen=True)
class Spread:
    """One figure over a group's runs: its median and range, and mean and sd for accuracies
    (each repeat has its own seed, so they are samples of one distribution)."""

    values: tuple[float, ...]  # the figures, sorted

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def min(self) -> float | None:
        return self.values[0] if self.values else None

    @property
    def max(self) -> float | None:
        return self.values[-1] if self.values else None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float | None:
        """The sample standard deviation; None with fewer than 2 runs."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    @property
    def rel_range(self) -> float | None:
        """(max - min) / median; None with fewer than 2 runs or a median of 0."""
        med = self.median
        return (self.values[-1] - self.values[0]) / med if self.n >= 2 and med else None


def spread(values: Iterable[Any], positive: bool = False) -> Spread:
    return Spread(tuple(sorted(figures(values, positive))))


def spread_of(rows: Iterable[Mapping[str, Any]], name: str, positive: bool = False) -> Spread:
    """The spread of one field over the rows."""
    return spread((r.get(name) for r in rows), positive)


__all__ = ["Spread", "column", "figures", "group", "spread", "spread_of"]
