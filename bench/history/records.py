"""From result docs to history records: one record per job (batch id), device, commit and
configuration, aggregated over its repeats, plus the CI gate's verdict where one was made.

Pure: no file access. The history is a view of the result store: `view.py` builds its records
from the result files each time it is drawn; the old JSON-lines stores held the same records
(`jsonl.py` still reads them). A record is a plain dict; `RECORD_FIELDS` names what readers
may rely on.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.errors import BenchError
from bench.history.gates import Verdicts, verdict_of
from bench.results import CONFIG_KEYS, Key, ResultDoc, config_label, flatten, run_key
from bench.results.aggregate import column, group, spread, spread_of
from bench.results.guarded import date_problem, number_problem, version_problem
from bench.results.schema import json_safe

RECORD_KIND = "bench-history"
RECORD_VERSION = 1

# The fields every record has (values may be null where a run did not measure them).
RECORD_FIELDS = (
    "kind", "version", "source", "suite", "commit", "date", "recorded", "host", "device",
    "config", "key", "run_ids", "runs", "failed",
    "images_per_s", "images_per_s_min", "images_per_s_max", "images_per_s_runs",
    "time_to_accuracy_s", "time_to_accuracy_s_min", "time_to_accuracy_s_max", "reached",
    "accuracy", "target_accuracy", "gate", "benchmark_version",
)

Record = dict[str, Any]
GroupKey = tuple[str, Key, str | None, str | None]  # device, configuration, commit, job


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_record(group: GroupKey, rows: Sequence[Mapping[str, Any]],
                 gate: dict[str, Any] | None = None) -> Record:
    """One record from the flat rows (`results.flatten`) of one job's runs of one
    configuration; `gate`: the `bench ci` gate's verdict on them, if it judged them."""
    device, key, commit, _ = group
    ok = [r for r in rows if r.get("status") == "ok"]
    ips = column(ok, "images_per_s")  # in the runs' order (images_per_s_runs)
    tta, acc = spread_of(ok, "time_to_accuracy_s"), spread_of(ok, "final_test_acc")
    targets = column(ok, "target_accuracy")
    label, now = config_label(key), _now()
    dates = [str(r["created"]) for r in rows if r.get("created")]
    if not dates:  # results are refused without one; a record must never date itself "now"
        raise BenchError(f"runs {', '.join(str(r.get('run_id')) for r in rows)}: no 'created' "
                         "date, which a history record needs")
    ips_spread = spread(ips)
    return json_safe({
        "kind": RECORD_KIND, "version": RECORD_VERSION, "source": _source(rows, gate),
        "suite": next((r.get("suite") for r in rows if r.get("suite")), None),
        "commit": commit, "date": max(dates),
        "recorded": now, "host": rows[0].get("host"), "device": device, "config": label,
        "key": dict(zip(CONFIG_KEYS, key, strict=True)),
        "run_ids": sorted(str(r.get("run_id")) for r in rows),
        "runs": len(ips), "failed": len(rows) - len(ok),
        "images_per_s": ips_spread.median, "images_per_s_min": ips_spread.min,
        "images_per_s_max": ips_spread.max, "images_per_s_runs": ips,
        "time_to_accuracy_s": tta.median, "time_to_accuracy_s_min": tta.min,
        "time_to_accuracy_s_max": tta.max, "reached": tta.n, "accuracy": acc.median,
        "target_accuracy": targets[0] if targets else None,
        "gate": gate,
        # what work the runs measured (results.version); None for runs from before versions
        "benchmark_version": next((v for r in ok if isinstance(v := r.get("benchmark_version"),
                                                                str)), None),
    })


def _source(rows: Sequence[Mapping[str, Any]], gate: dict[str, Any] | None) -> str:
    """What made the runs: a gated `bench ci` job, a suite, or `bench run`."""
    return "ci" if gate is not None else "suite" if any(r.get("suite") for r in rows) else "run"


def group_rows(docs: Iterable[ResultDoc]) -> dict[GroupKey, list[dict[str, Any]]]:
    """Flat rows of the docs grouped by (device label, configuration key, commit, job)."""
    return group((dict(flatten(doc)) for doc in docs),
                 lambda row: (str(row["device_label"]), run_key(row), row.get("git_commit"),
                              row.get("batch_id")))


def build_records(docs: Iterable[ResultDoc], verdicts: Verdicts | None = None) -> list[Record]:
    """Records of runs, one per job and configuration, ordered by device, configuration and
    date; `verdicts`: the gate's, by job (`gates.read_verdicts`)."""
    records = [build_record(g, rows, verdict_of(verdicts or {}, g[3], g[1]))
               for g, rows in group_rows(docs).items()]
    return sorted(records, key=lambda r: (r["device"], r["config"], r["date"] or ""))


# the numbers of a record, and those that are throughputs (0 or below is no measurement)
_NUMBERS = ("runs", "failed", "reached", "time_to_accuracy_s", "time_to_accuracy_s_min",
            "time_to_accuracy_s_max", "accuracy", "target_accuracy")
_THROUGHPUTS = ("images_per_s", "images_per_s_min", "images_per_s_max")


def _numbers_problem(rec: Record) -> str | None:
    runs = rec.get("images_per_s_runs")
    if runs is not None and not isinstance(runs, list):
        return f"images_per_s_runs is a {type(runs).__name__}, expected a list"
    checks = [*((k, rec.get(k), False) for k in _NUMBERS),
              *((k, rec.get(k), True) for k in _THROUGHPUTS),
              *((f"images_per_s_runs[{i}]", v, True) for i, v in enumerate(runs or []))]
    return next((p for k, v, pos in checks if (p := number_problem(k, v, pos))), None)


def record_problem(rec: Any) -> str | None:
    """Why a parsed line is not a record this version reads (None: it is): the kind, an integer
    version it knows, text where text belongs, a date that parses, numbers that are numbers."""
    if not isinstance(rec, dict) or rec.get("kind") != RECORD_KIND:
        return "not a history record"
    problem = version_problem("version", rec.get("version"), RECORD_VERSION, "history record")
    text = next((k for k in ("device", "config") if not isinstance(rec.get(k), str)), None)
    if problem or text:
        return problem or f"{text} is {rec.get(text)!r:.40}, expected a string"
    return date_problem("date", rec.get("date")) or _numbers_problem(rec)


__all__ = ["RECORD_FIELDS", "RECORD_KIND", "RECORD_VERSION", "Record",
           "build_record", "build_records", "group_rows", "record_problem"]
