"""The benchmark version of a run: a digest of what defines the measured work (the model's
architecture, the recipe's training settings with its augmentation and normalisation, the
dataset, the measurement mode), so that `compare`, `ci` and `history` never compare a changed
benchmark with its old self.

Left out on purpose: speed settings (compiling, threads, workers, channels-last, the fused
optimiser, the loader and the precision change how fast the same work runs, which is what a
comparison is for; the loader and the precision are in the configuration's key instead); how
long a run lasts (--max-steps, the time budget, evaluation, which is off the clock); the world
size (a scaling comparison is one); the probe, whose version `ci.metric.gate_metric` already
checks (images/s is compared where the probes differ). A result written before versions has
none, and is compared as before."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

# recipe fields that change the speed of the work, not the work
SPEED_SETTINGS = frozenset({"name", "compile", "threads", "workers", "channels_last",
                            "fused_optimizer", "loader", "precision"})
_DATA_FIELDS = ("name", "family", "real", "n_train", "n_test", "shape", "permuted")
_MODEL_FIELDS = ("name", "params", "version", "architecture")
PARTS = ("model", "recipe", "data", "measure")
DIGEST_CHARS = 12


def digest(value: Any) -> str:
    """A short, stable digest of a JSON-able value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def architecture_digest(model: Any) -> str:
    """The digest of a model's module tree as printed (layers, shapes, settings); an object
    address a custom module may print (`<... at 0x7f...>`) is left out, so that the same
    network gives the same digest in every process."""
    return digest(re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model)))


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, Mapping) else {}


def benchmark_parts(doc: Mapping[str, Any]) -> dict[str, str]:
    """The digest of each part of the work a result measured (see PARTS)."""
    recipe = {k: v for k, v in _section(doc, "recipe").items() if k not in SPEED_SETTINGS}
    measure = {"mode": _section(doc, "config").get("measure")}
    values = {"model": {k: _section(doc, "model").get(k) for k in _MODEL_FIELDS},
              "recipe": recipe,
              "data": {k: _section(doc, "data").get(k) for k in _DATA_FIELDS},
              "measure": measure}
    return {part: digest(values[part]) for part in PARTS}


def benchmark_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The `benchmark` section a result stores: its version and the digest of each part."""
    parts = benchmark_parts(doc)
    return {"version": digest(parts), "parts": parts}


def benchmark_columns(section: Any) -> dict[str, str | None]:
    """A result's `benchmark` section as flat-row columns: `benchmark_version` and one
    `benchmark_<part>` per part (None where absent, or not text: a damaged file)."""
    section = section if isinstance(section, Mapping) else {}
    parts = section.get("parts") if isinstance(section.get("parts"), Mapping) else {}

    def text(v: Any) -> str | None:
        return v[:DIGEST_CHARS] if isinstance(v, str) else None

    return {"benchmark_version": text(section.get("version")),
            **{f"benchmark_{p}": text(parts.get(p)) for p in PARTS}}


def row_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The parts in which two flat rows' benchmarks differ (empty when either row has no
    version: a result from before versions is compared as before)."""
    va, vb = a.get("benchmark_version"), b.get("benchmark_version")
    if not isinstance(va, str) or not isinstance(vb, str) or va == vb:  # NaN: a frame's gap
        return []
    return [p for p in PARTS if a.get(f"benchmark_{p}") != b.get(f"benchmark_{p}")] or ["version"]


__all__ = ["PARTS", "SPEED_SETTINGS", "architecture_digest", "benchmark_columns", "benchmark_of",
           "benchmark_parts", "digest", "row_changes"]
