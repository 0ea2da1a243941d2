"""The one aggregation (bench.results.aggregate): grouping and the spread of a figure."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from bench.results.aggregate import column, figures, group, spread, spread_of

ROOT = Path(__file__).resolve().parents[1]


def test_groups_and_their_rows_keep_the_order_first_seen() -> None:
    rows = [{"k": "b", "v": 1}, {"k": "a", "v": 2}, {"k": "b", "v": 3}]
    groups = group(rows, lambda r: r["k"])
    assert list(groups) == ["b", "a"]
    assert [r["v"] for r in groups["b"]] == [1, 3]
    assert group([], len) == {}


def test_only_finite_numbers_are_figures() -> None:
    values = [1, 2.5, None, math.nan, math.inf, -math.inf, "3", True, -1.0, 0]
    assert figures(values) == [1.0, 2.5, -1.0, 0.0]
    assert figures(values, positive=True) == [1.0, 2.5]  # 0 or below is no measurement
    assert column([{"x": 4}, {"y": 1}, {"x": "fast"}], "x") == [4.0]


def test_the_spread_of_a_figure() -> None:
    s = spread([30, 10, 20, math.nan])
    assert s.values == (10.0, 20.0, 30.0) and s.n == 3
    assert (s.median, s.min, s.max, s.mean) == (20.0, 10.0, 30.0, 20.0)
    assert s.sd == pytest.approx(10.0) and s.rel_range == pytest.approx(1.0)


def test_the_spread_of_one_run_and_of_none() -> None:
    one = spread_of([{"ips": 5.0}], "ips")
    assert (one.median, one.min, one.max, one.sd, one.rel_range) == (5.0, 5.0, 5.0, None, None)
    none = spread_of([{"ips": None}], "ips")
    assert (none.n, none.median, none.min, none.max, none.mean) == (0, None, None, None, None)


def test_the_readers_group_through_the_one_aggregation() -> None:
    """No module of bench/ hand-rolls a grouping (`d.setdefault(key, []).append(row)`)."""
    pattern = re.compile(r"setdefault\([^()]*,\s*\[\]\)\.append")
    found = [str(p.relative_to(ROOT)) for p in (ROOT / "bench").rglob("*.py")
             if p.name != "aggregate.py" and pattern.search(p.read_text())]
    assert found == []
