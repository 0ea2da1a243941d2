"""Rounds run in turns (`--against`): each round's figure is the median over turns of the two
sides' log ratio (bench.gate.paired), and the verdict is on those figures'
spread (bench.gate.sequential.decide_paired), not on the runs' spread between rounds."""

from __future__ import annotations

import math
import random

import pytest

from bench.gate.compare import compare_runs
from bench.gate.paired import MIN_TURNS, paired_rounds, turn_ratio
from bench.gate.sequential import Looks, decide_paired
from bench.results import docs_rows, flatten, run_key

CFG = dict(model="cnn", dataset="mnist", loader="device", precision="fp32", compile="none",
           channels_last=False, batch_size=256, recipe="fast", world_size=1,
           measure="throughput", max_steps=None)


def _doc(rates: list[float | None], turns: list[int | None] | None = None, ips: float = 1.0,
         status: str = "ok") -> dict:
    turns = turns or list(range(1, len(rates) + 1))
    windows = [{"epoch": -1, "steps": 9, "images": 9, "seconds": 1.0, "warmup": True}]
    windows += [{"epoch": 0, "steps": 1, "images": 100, "seconds": 100 / r if r else 0.0,
                 "warmup": False, "turn": k} for r, k in zip(rates, turns, strict=True)]
    return {"status": status, "config": CFG, "env": {"host": "h"}, "windows": windows,
            "summary": {"images_per_s": ips}}


def test_a_round_is_the_median_of_its_turns() -> None:
    base = _doc([100, 100, 100, 100, 100, 100])
    cand = _doc([90, 90, 90, 30, 90, 91])  # one turn spoilt by a neighbour
    assert turn_ratio(base, cand) == pytest.approx(math.log(0.9))


def test_turns_pair_by_number_and_need_one_in_common() -> None:
    base = _doc([100, 100, 100, 50], [1, 2, 3, None])
    cand = _doc([80, 80, 10, 80], [None, None, 3, 4])  # its first two windows ran alone
    assert turn_ratio(base, cand) == pytest.approx(math.log(0.1))  # turn 3 alone pairs
    assert MIN_TURNS == 1
    assert turn_ratio(_doc([40]), _doc([20])) == pytest.approx(math.log(0.5))  # one 2 s window
    assert turn_ratio(_doc([100] * 6, [None] * 6), _doc([80] * 6, [None] * 6)) is None
    assert turn_ratio(_doc([100, 100], [1, 2]), _doc([80, 80], [3, 4])) is None


def test_hostile_windows_are_skipped_not_trusted() -> None:
    base = _doc([100] * 6)
    cand = _doc([90] * 6)
    cand["windows"] += ["x", {"turn": "7", "images": 1, "seconds": 1},
                        {"turn": 8, "images": float("nan"), "seconds": 1},
                        {"turn": 9, "images": 5, "seconds": -1}, None]
    base["windows"].append({"turn": 8, "images": 1, "seconds": 1})
    assert turn_ratio(base, cand) == pytest.approx(math.log(0.9))
    base["windows"] = "not a list"
    assert turn_ratio(base, cand) is None


def test_paired_rounds_take_ok_runs_of_both_sides() -> None:
    rounds = [{"baseline": [_doc([100] * 6)], "candidate": [_doc([90] * 6)]},
              {"baseline": [_doc([50] * 6)], "candidate": [_doc([45] * 6)]},  # a slow machine
              {"baseline": [_doc([100] * 6)], "candidate": [_doc([1] * 6, status="nan")]},
              {"baseline": [], "candidate": [_doc([90] * 6)]}]
    key = run_key(flatten(_doc([1])))
    assert paired_rounds(rounds) == {key: [pytest.approx(math.log(0.9))] * 2}


def _diffs(shift: float, sd: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [math.log1p(shift) + rng.gauss(0, sd) for _ in range(n)]


def test_decide_paired_on_the_spread_of_the_differences() -> None:
    looks = Looks(8)
    slow = decide_paired(_diffs(-0.10, 0.02, 6, 1), 0.05, 0.0125, looks)
    assert slow.verdict == "regression" and slow.noise_source == "turns"
    assert slow.n_base == slow.n_cand == 6
    same = decide_paired(_diffs(0.0, 0.02, 3, 2), 0.05, 0.0125, looks)
    assert same.verdict == "ok"
    noisy = decide_paired(_diffs(-0.10, 0.30, 3, 3), 0.05, 0.0125, looks)
    assert noisy.verdict == "not gated"
    one = decide_paired([math.log(0.5)], 0.05, 0.0125, looks)
    assert one.verdict == "not gated" and one.low is None  # one pair has no spread


def test_the_bound_is_the_mean_difference_over_its_standard_error() -> None:
    diffs = [-0.10, -0.12, -0.08, -0.11]
    g = decide_paired(diffs, 0.05, 0.05, Looks(1))
    from scipy.stats import t

    mean, sd = sum(diffs) / 4, (sum((d + 0.1025) ** 2 for d in diffs) / 3) ** 0.5
    assert g.high == pytest.approx(math.exp(mean + t.ppf(0.95, 3) * sd / 2))
    assert g.ratio == pytest.approx(math.exp(mean))


def test_compare_runs_takes_the_pairs_over_the_runs() -> None:
    """The runs alone (a 30% swing between rounds) cannot gate; their pairs say 0.9."""
    base = [_doc([100] * 6, ips=100.0), _doc([130] * 6, ips=130.0)]
    cand = [_doc([90] * 6, ips=117.0), _doc([117] * 6, ips=90.0)]
    rounds = [{"baseline": [b], "candidate": [c]} for b, c in zip(base, cand, strict=True)]
    rows_b, rows_c = docs_rows(base), docs_rows(cand)
    unpaired = compare_runs(rows_b, rows_c, 0.05, 0.05, looks=Looks(4))
    assert unpaired.rows[0].verdict == "not gated"
    paired = compare_runs(rows_b, rows_c, 0.05, 0.05, looks=Looks(4),
                          paired=paired_rounds(rounds))
    assert paired.rows[0].verdict == "regression"
    assert paired.rows[0].ips_ratio == pytest.approx(0.9)
    assert paired.metric == "images_per_s_in_turns" and unpaired.metric == "images_per_s"
    empty = compare_runs(rows_b, rows_c, 0.05, 0.05, looks=Looks(4), paired={})
    assert empty.rows[0].verdict == "not gated"  # ran in turns but no round paired: no claim
