"""The numbers behind the report: each configuration on each device, its repeats aggregated,
and the ratios between two devices with their intervals.

Pure functions over the flat run rows (`bench.results.docs_rows`), so every figure and table
draws the same numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from functools import partial
from typing import Any, TypedDict

from bench.errors import BenchError
from bench.results import RunRow, config_label, run_key
from bench.results.aggregate import column, figures, group, spread, spread_of
from bench.results.escape import term


class ConfigStats(TypedDict):
    """One configuration on one device, its repeats aggregated (a row of `summarize`)."""

    config: str  # results.config_label
    experiment: str  # 'model on dataset': what the seed and fast recipes are compared on
    recipe: str | None
    device: str
    runs: int
    ips: list[float]  # images/s of each repeat
    images_per_s: float | None  # median over repeats
    ips_min: float | None
    ips_max: float | None
    epoch_time_s: float | None  # median
    final_acc: float | None  # mean
    final_acc_sd: float | None  # with 2+ repeats
    best_acc: float | None  # best over repeats
    target_accuracy: float | None
    tta: list[float]  # time to accuracy of each repeat that reached the target
    tta_s: float | None  # median over the repeats that reached the target
    tta_reached: int
    train_time_s: float | None  # median total training time (how long a miss trained)
    max_steps: int | None  # the run's step cap (a capped run may stop short of its target)
    peak_memory_bytes: float | None
    mfu: float | None  # median over the repeats with a figure (never above 1: results.flatten)
    mfu_note: str | None  # why a repeat's MFU is no figure (it came out above 100%)


def clean(v: Any) -> float | None:
    """A finite float, or None for missing/NaN cells."""
    return next(iter(figures([v])), None)


def _med(records: list[RunRow], name: str) -> float | None:
    return spread_of(records, name).median


def experiment_of(row: RunRow) -> str:
    return f"{row.get('model')} on {row.get('dataset')}"


def _headline_tta(row: RunRow) -> Any:
    """Time to target after the warm-up pass; a schema-1 result (no such figure: its warm-up
    was inside the clock) gives its cold figure, which `cold_tta` counts so the report says so."""
    warm = row.get("time_to_accuracy_s")
    return warm if figures([warm]) else row.get("time_to_accuracy_cold_s")


def cold_tta(row: RunRow) -> bool:
    """True when this row's time to target is a schema-1 figure (warm-up included)."""
    return not figures([row.get("time_to_accuracy_s")]) and bool(
        figures([row.get("time_to_accuracy_cold_s")]))


def config_stats(label: str, device: str, records: list[RunRow]) -> ConfigStats:
    """The repeats (flat rows) of one configuration on one device, aggregated."""
    med = partial(_med, records)  # med(name): the median of that column over the repeats
    ips = spread_of(records, "images_per_s", positive=True)
    acc = spread_of(records, "final_test_acc")
    tta = spread((_headline_tta(r) for r in records), positive=True)
    best = column(records, "best_test_acc") or list(acc.values)
    return {
        "config": label, "experiment": experiment_of(records[0]),
        "recipe": records[0].get("recipe"), "device": device, "runs": len(records),
        "ips": list(ips.values), "images_per_s": ips.median, "ips_min": ips.min,
        "ips_max": ips.max, "epoch_time_s": med("epoch_time_s"),
        "final_acc": acc.mean, "final_acc_sd": acc.sd, "best_acc": max(best) if best else None,
        "target_accuracy": med("target_accuracy"),
        "tta": list(tta.values), "tta_s": tta.median, "tta_reached": tta.n,
        "train_time_s": med("total_train_time_s"), "max_steps": int(med("max_steps") or 0) or None,
        "peak_memory_bytes": med("peak_memory_bytes"), "mfu": med("mfu"),
        "mfu_note": next((n for n in (r.get("mfu_note") for r in records)
                          if isinstance(n, str) and n), None),
    }


def summarize(runs: Sequence[RunRow]) -> list[ConfigStats]:
    """One row per (configuration, device) of the runs that finished, in a stable order."""
    records = [r for r in runs if r.get("status") == "ok"]
    groups = group(records, lambda r: (config_label(run_key(r)), str(r.get("device_label"))))
    return [config_stats(label, device, rs) for (label, device), rs in sorted(groups.items())]


RECIPE_ORDER = {"seed": 0, "fast": 1}


def config_order(summary: Sequence[ConfigStats]) -> list[str]:
    """Configurations grouped by experiment, the seed loop before the fast recipe."""
    first = {}
    for s in summary:
        first.setdefault(s["config"], (s["experiment"], RECIPE_ORDER.get(str(s["recipe"]), 2),
                                       s["config"]))
    return sorted(first, key=first.__getitem__)


def geomean(values: Sequence[float]) -> float:
    """The geometric mean of the positive finite values (NaN when there is none)."""
    xs = figures(values, positive=True)
    return math.exp(statistics.fmean(math.log(v) for v in xs)) if xs else math.nan


# --------------------------------------------------------------------------- devices


def choose_baseline_device(devices: Sequence[str], summary: Sequence[ConfigStats],
                           requested: str | None) -> str:
    """The requested device, else the one with the most configurations (ties: by name)."""
    if requested is not None:
        if requested not in devices:
            raise BenchError(term(f"--baseline-device {requested!r} not among the results'"
                                  f" devices: {', '.join(devices) or 'none'}"))
        return requested
    counts = {d: sum(1 for s in summary if s["device"] == d) for d in devices}
    return sorted(devices, key=lambda d: (-counts[d], d))[0]


class Ratio(TypedDict):
    """How much better `device` is than the baseline on one configuration (>1: better)."""

    config: str
    device: str
    base: float  # the baseline's median
    value: float  # this device's median
    ratio: float
    low: float  # worst pairing of repeats
    high: float  # best pairing of repeats


# What each compared metric reads, and which way is better: time to accuracy is a time, so the
# speed-up is baseline / device; throughput is a rate, so device / baseline.
METRICS = {"throughput": ("ips", "images_per_s", True),
           "time_to_accuracy": ("tta", "tta_s", False)}

INTERVAL_NOTE = ("interval: min-max over every pairing of the two devices' repeats "
                 "(worst repeat against best, and the reverse)")


def _usable(x: ConfigStats, samples_key: str, median_key: str) -> bool:
    """A positive median and only positive samples: ratios and their logs exist."""
    samples: list[Any] = x.get(samples_key) or []  # type: ignore[assignment]
    return bool(samples) and len(figures(samples, positive=True)) == len(samples) and bool(
        figures([x.get(median_key)], positive=True))


def device_ratios(summary: Sequence[ConfigStats], baseline: str, metric: str) -> list[Ratio]:
    """Per configuration and non-baseline device: the ratio of medians and its min-max interval
    over the repeats (a single run on each side gives a zero-width interval)."""
    samples_key, median_key, higher_is_better = METRICS[metric]
    base = {s["config"]: s for s in summary if s["device"] == baseline}
    order = config_order(summary)
    out: list[Ratio] = []
    for s in sorted(summary, key=lambda s: (s["device"], order.index(s["config"]))):
        b = base.get(s["config"])
        if s["device"] == baseline or b is None or not (
                _usable(s, samples_key, median_key) and _usable(b, samples_key, median_key)):
            continue
        (mine, value), (theirs, ref) = ((x.get(samples_key), x.get(median_key)) for x in (s, b))
        if not higher_is_better:  # a time: the speed-up is the baseline's time over ours
            mine, value, theirs, ref = theirs, ref, mine, value
        out.append({"config": s["config"], "device": s["device"],
                    "base": b.get(median_key), "value": s.get(median_key), "ratio": value / ref,
                    "low": min(mine) / max(theirs), "high": max(mine) / min(theirs)})
    return out
