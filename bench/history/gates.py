"""The `bench ci` gate's verdicts, kept in the results store beside the runs they judged: one
file per gated job, `RESULTS/gates/<batch-id>.json`. The history (a view of the store) marks a
point with the verdict of its job; nothing else reads them.

Written atomically by `bench ci`; read through the guarded reader, and a file that is not a
verdict file this version reads is skipped with one line (never fatal: the page is drawn
without that job's verdicts).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from bench.defaults import GATES_SUBDIR
from bench.errors import BenchError
from bench.fsutil import warn
from bench.results import CONFIG_KEYS, Key, config_label
from bench.results.guarded import load_json, number_problem, version_problem
from bench.results.store import atomic_write_json

GATE_KIND = "bench-gate"
GATE_VERSION = 1
VERDICTS = ("regression", "faster", "ok", "not gated", "failed")
_NUMBERS = ("ratio", "low", "high", "detectable", "threshold", "alpha")
Verdicts = dict[tuple[str, Key], dict[str, Any]]  # (batch id, configuration) -> the gate


def _config_gates(comparison: Any) -> list[dict[str, Any]]:
    """Per configuration, the gate's figures of a `bench.gate.compare.Comparison` (duck-typed:
    this layer stays below the gate's)."""
    common = {"threshold": comparison.threshold, "alpha": comparison.alpha}
    out = [{"key": list(r.key), "gate": {
        "verdict": r.gate.verdict, "ratio": r.gate.ratio, "low": r.gate.low,
        "high": r.gate.high, "detectable": r.gate.detectable,
        "noise_source": r.gate.noise_source, **common}} for r in comparison.rows]
    failed = {"verdict": "failed", "ratio": None, "low": None, "high": None,
              "detectable": None, **common}
    return out + [{"label": label, "gate": failed} for label in comparison.failed]


def write_verdicts(store: str | Path, batch_id: str, comparison: Any) -> Path:
    """The verdicts of the job `batch_id`, as `store/gates/<batch_id>.json`."""
    path = Path(store) / GATES_SUBDIR / f"{batch_id}.json"
    doc = {"kind": GATE_KIND, "version": GATE_VERSION, "batch_id": batch_id,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "configs": _config_gates(comparison)}
    atomic_write_json(path, doc)
    return path


def _gate_problem(gate: Any) -> str | None:
    if not isinstance(gate, dict) or gate.get("verdict") not in VERDICTS:
        return "a configuration without a known verdict"
    return next((p for k in _NUMBERS if (p := number_problem(k, gate.get(k)))), None)


def _entries(doc: Any) -> tuple[str, list[dict[str, Any]]]:
    """The batch id and configuration entries of a parsed verdict file (BenchError: not one)."""
    if not isinstance(doc, dict) or doc.get("kind") != GATE_KIND:
        raise BenchError("not a gate verdict file")
    problem = version_problem("version", doc.get("version"), GATE_VERSION, "gate verdict")
    batch, configs = doc.get("batch_id"), doc.get("configs")
    if problem or not isinstance(batch, str) or not isinstance(configs, list):
        raise BenchError(problem or "no batch id or configurations")
    for c in configs:
        problem = "an entry is not an object" if not isinstance(c, dict) else _gate_problem(
            c.get("gate"))
        if problem:
            raise BenchError(problem)
    return batch, configs


def _key(entry: dict[str, Any]) -> Key | str | None:
    """A configuration's key (a row of scalars), or a failed one's label; None: neither."""
    key = entry.get("key")
    if isinstance(key, list) and len(key) == len(CONFIG_KEYS) and all(
            v is None or isinstance(v, (str, int, float)) for v in key):
        return tuple(key)
    return entry["label"] if isinstance(entry.get("label"), str) else None


def read_verdicts(store: str | Path) -> Verdicts:
    """Every readable verdict under `store/gates/`, by (batch id, configuration key or, for a
    configuration that failed, its label)."""
    folder = Path(store) / GATES_SUBDIR
    out: Verdicts = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            batch, configs = _entries(load_json(path, "gate verdict file", within=folder))
        except (BenchError, OSError) as exc:
            warn(f"warning: skipped {path}: {str(exc).removeprefix(f'{path}: ')}")
            continue
        for c in configs:
            key = _key(c)
            if key is not None:
                out[(batch, key)] = c["gate"]
    return out


def verdict_of(verdicts: Verdicts, batch_id: Any, key: Key) -> dict[str, Any] | None:
    """The gate's verdict on configuration `key` in job `batch_id` (None: not gated)."""
    if not isinstance(batch_id, str):
        return None
    return verdicts.get((batch_id, key)) or verdicts.get((batch_id, config_label(key)))


__all__ = ["GATE_KIND", "read_verdicts", "verdict_of", "write_verdicts"]
