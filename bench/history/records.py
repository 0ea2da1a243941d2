"""From result docs to history records: one record per (commit, device, configuration) of a
batch of runs, aggregated over its repeats, plus the CI gate's verdict where one was made.

Pure: no file access, so the store (`store.py`) and the tests build records the same way. A
record is a plain dict (one JSON line); `RECORD_FIELDS` names what readers may rely on.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..results import CONFIG_KEYS, Key, ResultDoc, config_label, flatten, num, run_key

RECORD_KIND = "bench-history"
RECORD_VERSION = 1
SOURCES = ("suite", "ci", "append")

# The fields every record has (values may be null where a run did not measure them).
RECORD_FIELDS = (
    "kind", "version", "source", "suite", "commit", "date", "recorded", "host", "device",
    "config", "key", "run_ids", "runs", "failed",
    "images_per_s", "images_per_s_min", "images_per_s_max", "images_per_s_runs",
    "time_to_accuracy_s", "time_to_accuracy_s_min", "time_to_accuracy_s_max", "reached",
    "accuracy", "target_accuracy", "gate",
)

Record = dict[str, Any]
GroupKey = tuple[str, Key, str | None]  # device label, configuration key, commit


def _finite(obj: Any) -> Any:
    """NaN and infinities are not JSON: null, as in result files."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _spread(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(median, min, max) of the values; Nones when there are none."""
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [v for v in (num(r.get(name)) for r in rows) if v is not None]


def _gate_fields(key: Key, label: str, comparison: Any) -> dict[str, Any] | None:
    """The gate's figures for one configuration of a `bench.compare.Comparison` (duck-typed:
    this module stays free of the comparison's imports)."""
    if comparison is None:
        return None
    if label in comparison.failed:
        return {"verdict": "failed", "ratio": None, "low": None, "high": None,
                "detectable": None, "threshold": comparison.threshold, "alpha": comparison.alpha}
    row = next((r for r in comparison.rows if tuple(r.key) == key), None)
    if row is None:
        return None
    g = row.gate
    return {"verdict": g.verdict, "ratio": g.ratio, "low": g.low, "high": g.high,
            "detectable": g.detectable, "noise_source": g.noise_source,
            "threshold": comparison.threshold, "alpha": comparison.alpha}


def build_record(group: GroupKey, rows: Sequence[Mapping[str, Any]], source: str,
                 comparison: Any = None) -> Record:
    """One record from the flat rows (`results.flatten`) of one group's runs."""
    device, key, commit = group
    ok = [r for r in rows if r.get("status") == "ok"]
    ips = _column(ok, "images_per_s")
    tta = _column(ok, "time_to_accuracy_s")
    acc = _column(ok, "final_test_acc")
    targets = _column(ok, "target_accuracy")
    label, now = config_label(key), _now()
    ips_med, ips_min, ips_max = _spread(ips)
    tta_med, tta_min, tta_max = _spread(tta)
    return _finite({
        "kind": RECORD_KIND, "version": RECORD_VERSION, "source": source,
        "suite": next((r.get("suite") for r in rows if r.get("suite")), None),
        "commit": commit, "date": max(str(r.get("created") or "") for r in rows) or now,
        "recorded": now, "host": rows[0].get("host"), "device": device, "config": label,
        "key": dict(zip(CONFIG_KEYS, key, strict=True)),
        "run_ids": sorted(str(r.get("run_id")) for r in rows),
        "runs": len(ips), "failed": len(rows) - len(ok),
        "images_per_s": ips_med, "images_per_s_min": ips_min, "images_per_s_max": ips_max,
        "images_per_s_runs": ips,
        "time_to_accuracy_s": tta_med, "time_to_accuracy_s_min": tta_min,
        "time_to_accuracy_s_max": tta_max, "reached": len(tta),
        "accuracy": statistics.median(acc) if acc else None,
        "target_accuracy": targets[0] if targets else None,
        "gate": _gate_fields(key, label, comparison),
    })


def group_rows(docs: Iterable[ResultDoc]) -> dict[GroupKey, list[dict[str, Any]]]:
    """Flat rows of the docs grouped by (device label, configuration key, commit)."""
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for doc in docs:
        row = dict(flatten(doc))
        group = (str(row["device_label"]), run_key(row), row.get("git_commit"))
        groups.setdefault(group, []).append(row)
    return groups


def build_records(docs: Iterable[ResultDoc], source: str, comparison: Any = None
                  ) -> list[Record]:
    """Records of a batch of runs, ordered by device, configuration and date."""
    if source not in SOURCES:
        raise ValueError(f"unknown history source {source!r}")
    records = [build_record(g, rows, source, comparison) for g, rows in group_rows(docs).items()]
    return sorted(records, key=lambda r: (r["device"], r["config"], r["date"] or ""))


def device_of(doc: ResultDoc) -> str:
    """The device label a doc's record will carry (its history file is named after it)."""
    return str(flatten(doc)["device_label"])


__all__ = ["RECORD_FIELDS", "RECORD_KIND", "RECORD_VERSION", "Record", "SOURCES",
           "build_record", "build_records", "device_of", "group_rows"]
