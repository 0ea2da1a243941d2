"""From result docs to rows: the configuration key that makes runs comparable, its label, and
one flat row per run (or per epoch), alone or as a pandas DataFrame.

Pure functions without file access, so the readers (compare, report, export, ci, the suite
tables) key, label and flatten runs the same way. pandas is imported only where a frame is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.results.format import checked_mfus
from bench.results.labels import device_label
from bench.results.schema import ResultDoc, RunRow
from bench.results.version import benchmark_columns

# The configuration fields that make two runs comparable (used by compare and the suite tables).
# A run's budget is part of it: a 300-step run and a full run are not the same configuration,
# nor is a throughput measurement the same as a training run (results without these fields,
# written before they existed, read them as None).
CONFIG_KEYS = (
    "model", "dataset", "loader", "precision", "compile", "channels_last", "batch_size", "recipe",
    "world_size", "measure", "max_steps",
)

Key = tuple[Any, ...]
# what an absent key field means (results written before the field existed)
_KEY_DEFAULTS = {"measure": "train"}
# former values read as today's (results written before a rename): the `gpu` loader is `device`
# identity columns docs_epochs puts before each epoch's own columns
_EPOCH_IDENTITY = ("run_id", "device_label", "status", "repeat", *CONFIG_KEYS)


def norm(v: Any) -> Any:
    """Plain Python value for keys: NaN->None, numpy scalars->Python, 128.0->128."""
    if v is not None and hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    return v


def num(v: Any) -> float | None:
    """A number as float; None for missing, NaN, booleans and anything else."""
    v = norm(v)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _model_id(row: Mapping[str, Any]) -> Any:
    """The model as keyed: a model from outside the package with its version
    (`name@version`: a changed model is never compared with its old self); a built-in one by
    its name alone, so that every result written before versions matches as it did."""
    model, version = norm(row.get("model")), norm(row.get("model_version"))
    return f"{model}@{version}" if model is not None and version is not None else model


def run_key(row: Mapping[str, Any]) -> Key:
    """The CONFIG_KEYS values of a flat row (or a doc's config), normalised: equal keys match."""
    return tuple(_model_id(row) if k == "model"
                 else _KEY_DEFAULTS.get(k) if norm(row.get(k)) is None
                 else norm(row.get(k))
                 for k in CONFIG_KEYS)


def config_label(key: Key) -> str:
    """Short human name of a configuration, e.g. 'vgg11/cifar10 torch bf16 bs256 compile'."""
    d = dict(zip(CONFIG_KEYS, key, strict=True))
    parts = [f"{d['model']}/{d['dataset']}", d["loader"], d["precision"]]
    if d["batch_size"] is not None:
        parts.append(f"bs{d['batch_size']}")
    if d["compile"] not in (None, False, "", "none", "off"):
        parts.append("compile" if d["compile"] is True else f"compile={d['compile']}")
    if d["channels_last"]:
        parts.append("channels_last")
    if d["recipe"] not in (None, ""):
        parts.append(f"recipe={d['recipe']}")
    if d.get("measure") not in (None, "", "train"):
        parts.append(str(d["measure"]))
    if d.get("max_steps"):
        parts.append(f"steps<={d['max_steps']}")
    return " ".join(str(p) for p in parts if p is not None)


def flatten(doc: ResultDoc) -> RunRow:
    """One flat row per run: config, summary and a few environment columns."""
    row: dict[str, Any] = {
        "run_id": doc.get("run_id"),
        "created": doc.get("created"),
        "status": doc.get("status"),
        "message": doc.get("message"),
        "suite": doc.get("suite"),
        "batch_id": doc.get("batch_id"),
        "repeat": doc.get("repeat", 0),
        "path": doc.get("_path"),
    }
    cfg = doc.get("config", {})
    for k, v in cfg.items():
        row[k] = v
    for k, v in (doc.get("summary") or {}).items():
        row[k] = v
    row.update(checked_mfus(row))  # an older file's MFU above 1 is no figure (format.fmt_mfu)
    env = doc.get("env", {})
    # a --label name (results.labels) overrides the device: runs group by system
    row["device_label"] = doc.get("_label") or device_label(
        env, str(cfg.get("device", "cpu")).split(":")[0])
    row["host"] = env.get("host")
    row["git_commit"] = env.get("git_commit")
    row["real_data"] = (doc.get("data") or {}).get("real")
    row.update(benchmark_columns(doc.get("benchmark")))
    return row


def docs_rows(docs: Sequence[ResultDoc]) -> list[RunRow]:
    """One flat row per run (`flatten`), as plain Python values: what the gate reads."""
    return [flatten(d) for d in docs]


def docs_frame(docs: Sequence[ResultDoc]):  # -> pandas.DataFrame
    """One flat row per run (`flatten`)."""
    import pandas as pd

    return pd.DataFrame([flatten(d) for d in docs])


def docs_epochs(docs: Sequence[ResultDoc]):  # -> pandas.DataFrame
    """Per-epoch rows (`EpochRow`), each led by its run's identity and configuration columns."""
    import pandas as pd

    rows = []
    for d in docs:
        base = flatten(d)
        ident = {k: base.get(k) for k in _EPOCH_IDENTITY}
        rows.extend({**ident, **e} for e in d.get("epochs") or [])
    return pd.DataFrame(rows)
