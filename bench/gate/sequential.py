"""The CI gate's sequential decision: after each round, is each configuration decided, or does
the job measure it again?

`bench ci` runs a few rounds, then looks: a configuration is **decided** once its data say
"regression", "faster" or "ok"; the undecided ones get another round, until every one is
decided or the job's round or time cap is reached (then they are "not gated"). Looking after
every round would raise the false-alarm rate if each look used the fixed test's bound, so:

- **regression** (and, mirrored, **faster**): the slowdown is beyond the threshold and the
  upper confidence bound of the ratio is below 1 at `alpha / looks` (Bonferroni over the most
  looks the job may take: the stated false-alarm rate holds however many it takes, and the
  threshold condition makes it lower still);
- **ok**: the data exclude a slowdown of the threshold: the ratio's lower bound at `POWER`
  (one-sided 80%) is above 1 - threshold. A slowdown of exactly the threshold passes one look
  with probability 20%; over several looks more (docs/ci.md gives the simulated figure). The
  fixed comparison (`stats.gate`) instead asks whether its design could have caught the
  threshold, which needs ~3x less noise on a shared runner for the same job length;
- the noise: the runner's calibrated sigma **pooled with the job's own spread** of the
  candidate rounds, with Student t quantiles on their degrees of freedom, so a job on a
  noisier day than its calibration widens its own bounds (issue 26: a calibration under-stating
  a job's noise raised a false alarm).

Pure: no I/O, no clock; `bench.ci.job` runs the rounds and freezes each decision at the look
that made it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.gate.stats import (
    POWER,
    SIGMA_FLOOR,
    GateResult,
    pooled_sigma,
    quantile,
    repeats_needed,
    t_cdf,
)

DECIDED = ("regression", "faster", "ok")


@dataclass(frozen=True)
class Looks:
    """How a sequential job looks at its data: `most` looks at most (alpha is split over them),
    the calibrated sigma's degrees of freedom (its A/A runs - 1; None: take it as known), and
    whether the baseline's runs are this job's too (`--against`: their spread joins the pooled
    noise; a stored baseline's runs are the calibration itself, counted once)."""

    most: int
    sigma_df: int | None = None
    base_in_job: bool = False


def _noise(bl: list[float], cl: list[float], sigma: float | None, looks: Looks
           ) -> tuple[float, int | None, str] | None:
    """(sigma, degrees of freedom or None for known, source) or None when nothing is known."""
    if sigma is None:
        s, df = pooled_sigma(bl, cl)
        return (s, df, "repeats") if df >= 1 and s > 0 else None
    sides = [cl, bl] if looks.base_in_job else [cl]
    if looks.sigma_df is None or all(len(side) < 2 for side in sides):
        return sigma, looks.sigma_df, "calibrated"
    ss = sum((x - statistics.fmean(side)) ** 2 for side in sides for x in side)
    df = looks.sigma_df + sum(len(side) - 1 for side in sides)
    return math.sqrt((looks.sigma_df * sigma ** 2 + ss) / df), df, "calibrated+job"


def decide(base: Sequence[float], cand: Sequence[float], threshold: float, alpha: float,
           sigma: float | None, looks: Looks) -> GateResult:
    """One look at one configuration's per-run throughputs (higher is better): a verdict in
    DECIDED, or "not gated" (undecided: measure again, or, at the job's last look, no claim)."""
    if not base or not cand or min(*base, *cand) <= 0:
        raise ValueError("gate needs positive throughputs on both sides")
    bl, cl = [math.log(v) for v in base], [math.log(v) for v in cand]
    d = statistics.fmean(cl) - statistics.fmean(bl)
    nb, nc = len(bl), len(cl)
    noise = _noise(bl, cl, sigma, looks)
    if noise is None:
        return GateResult(math.exp(d), None, None, None, None, None, "none", "not gated",
                          None, nb, nc)
    s, df, source = noise
    return _verdict(d, s, df, source, (nb, nc), threshold, alpha, looks)


def decide_paired(diffs: Sequence[float], threshold: float, alpha: float, looks: Looks
                  ) -> GateResult:
    """One look at one configuration's rounds run in turns (`--against`): `diffs` are the
    rounds' log(candidate / baseline) (`gate.paired.turn_ratio`). Both sides of a round saw
    the same machine, so the noise is the spread of the differences themselves (Student t on
    rounds - 1 degrees of freedom; a calibration of unpaired runs does not apply)."""
    n = len(diffs)
    d = statistics.fmean(diffs) if diffs else 0.0
    if n < 2:
        return GateResult(math.exp(d), None, None, None, None, None, "none", "not gated",
                          None, n, n)
    # the se below is s / sqrt(n); _verdict takes (s, sides) with se = s * sqrt(1/nb + 1/nc)
    s = statistics.stdev(diffs) / math.sqrt(2)
    return _verdict(d, s, n - 1, "turns", (n, n), threshold, alpha, looks)


def _verdict(d: float, s: float, df: int | None, source: str, sides: tuple[int, int],
             threshold: float, alpha: float, looks: Looks) -> GateResult:
    """The look's verdict on a mean log ratio `d` with noise `s` per run (the module's rules)."""
    nb, nc = sides
    s = max(s, SIGMA_FLOOR)
    se = s * math.sqrt(1 / nb + 1 / nc)
    alpha_look = alpha / max(1, looks.most)
    q_a = quantile(1 - alpha_look, df)
    q_b = quantile(POWER, df)
    shift = -math.log1p(-threshold)
    verdict = "not gated"
    if d < -shift and d + q_a * se < 0:
        verdict = "regression"
    elif d > math.log1p(threshold) and d - q_a * se > 0:
        verdict = "faster"
    elif d - q_b * se > -shift:
        verdict = "ok"
    needed = repeats_needed(s, threshold, alpha_look) if verdict == "not gated" else None
    return GateResult(math.exp(d), math.exp(d - q_a * se), math.exp(d + q_a * se),
                      t_cdf(d / se, df), -math.expm1(-(q_a + q_b) * se), s, source, verdict,
                      needed, nb, nc)


__all__ = ["DECIDED", "Looks", "decide", "decide_paired"]
