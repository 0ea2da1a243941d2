"""The figure the CI gate compares (images/s, or images/s over the machine's probe rate) and the
calibrated noise of that figure per configuration: shared by the stored-baseline job (`job`)
and the --against job (`against`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError
from bench.results import Key, ResultDoc

PROBED = "images_per_probe"  # images/s over the machine's speed (bench/measure/probe.py)
RAW = "images_per_s"


def gate_metric(*sides: Sequence[ResultDoc]) -> str:
    """The gate's figure (stored and --against): `images_per_probe` when every ok run on every
    side has one from the same probe version (it cancels the machine's drift), else images/s."""
    versions = {(d.get("summary") or {}).get("probe_version") if
                (d.get("summary") or {}).get(PROBED) else None
                for side in sides for d in side if d.get("status") == "ok"}
    return PROBED if len(versions) == 1 and None not in versions else RAW


def noise_table(calibration: dict[str, Any] | None, metric: str = RAW) -> dict[Key, float]:
    """The calibrated sigma of `metric` per configuration key (empty without a calibration of
    that figure; calibrations from before the probe hold images/s only)."""
    if not calibration:
        return {}
    try:
        table = {}
        for c in calibration.get("configs", []):
            sigma = (c.get("sigmas") or {}).get(metric)
            if sigma is None and calibration.get("metric", RAW) == metric:
                sigma = c["sigma"]
            if sigma is not None:
                table[tuple(c["key"])] = float(sigma)
        return table
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BenchError("the baseline's calibration is malformed; re-run bench ci "
                         "--calibrate") from None


def calibration_df(calibration: dict[str, Any] | None) -> int | None:
    """Degrees of freedom of the calibrated noise: its fewest A/A runs of a configuration, - 1
    (None without a calibration, or one that does not say)."""
    runs = [c.get("runs") for c in (calibration or {}).get("configs", [])]
    if not runs or not all(isinstance(n, int) and n >= 2 for n in runs):
        return None
    return min(runs) - 1


METRIC_NAMES = {RAW: "images/s", PROBED: "images/s ÷ probe"}
