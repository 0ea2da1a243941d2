"""The regression gate's statistics: is the candidate slower, by more than the threshold, beyond
what noise explains at a stated false-alarm rate?

Each side of a configuration is a set of runs, each run one throughput estimate. On the log
scale a slowdown is a shift, and run-to-run noise is roughly symmetric once each run reports an
upper quantile of its windows (interference on a shared machine only slows windows down; the
quantile keeps the clean ones). So the test is on the difference of mean log throughputs:

- with a calibrated noise level (`bench ci --calibrate`: A/A repeats measured on this runner),
  a z-test with that sigma;
- otherwise, with 2+ runs on a side, a t-test with the pooled sample sigma (scipy's t quantiles);
- with one run per side and no calibration, nothing can be said: "not gated".

A configuration regresses only when the estimated slowdown is beyond the threshold AND the
one-sided upper confidence bound of the ratio stays below 1 (p < alpha). Beside the verdict the
gate reports what it could have seen: the minimum detectable slowdown at alpha and `POWER`; a
configuration whose detectable slowdown exceeds the threshold is "not gated" (with the repeats
it would need), never a pass.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

POWER = 0.8  # chance of catching a slowdown of exactly the minimum detectable size
VERDICTS = ("regression", "faster", "ok", "not gated")
SIGMA_FLOOR = 1e-4  # a calibration that saw identical runs still leaves some noise


@dataclass(frozen=True)
class GateResult:
    ratio: float  # candidate / baseline throughput (geometric means of the runs)
    low: float | None  # one-sided (1 - alpha) bounds of the ratio, each side
    high: float | None
    p_slower: float | None  # one-sided p-value of "the candidate is slower"
    detectable: float | None  # minimum detectable slowdown (fraction) at alpha and POWER
    noise: float | None  # run-to-run sigma used, on the log scale (~ relative sd)
    noise_source: str  # "calibrated", "repeats" or "none"
    verdict: str  # one of VERDICTS
    needed_repeats: int | None  # runs per side that would gate at the threshold
    n_base: int
    n_cand: int


def quantile(p: float, df: int | None) -> float:
    """The p-quantile of the normal (df None) or Student t distribution."""
    if df is None:
        return statistics.NormalDist().inv_cdf(p)
    from scipy.stats import t

    return float(t.ppf(p, df))


def _quantiles(alpha: float, df: int | None) -> tuple[float, float]:
    """(q_{1-alpha}, q_{POWER}) of the normal (df None) or Student t distribution."""
    return quantile(1 - alpha, df), quantile(POWER, df)


def t_cdf(x: float, df: int | None) -> float:
    """The normal (df None) or Student t distribution function."""
    if df is None:
        return statistics.NormalDist().cdf(x)
    from scipy.stats import t

    return float(t.cdf(x, df))


def pooled_sigma(base_logs: Sequence[float], cand_logs: Sequence[float]) -> tuple[float, int]:
    """Pooled within-side standard deviation of log throughputs and its degrees of freedom."""
    ss = sum((x - statistics.fmean(s)) ** 2 for s in (base_logs, cand_logs) if len(s) > 1
             for x in s)
    df = sum(len(s) - 1 for s in (base_logs, cand_logs))
    return (math.sqrt(ss / df) if df > 0 else math.nan), df


def repeats_needed(sigma: float, threshold: float, alpha: float) -> int:
    """Runs per side for a detectable slowdown at most `threshold` (normal approximation)."""
    q_a, q_b = _quantiles(alpha, None)
    shift = -math.log1p(-threshold)
    return max(2, math.ceil(2 * ((q_a + q_b) * sigma / shift) ** 2))


def detectable_slowdown(sigma: float, n_base: int, n_cand: int, alpha: float) -> float:
    """The slowdown (fraction) a z-test with this noise catches with probability POWER."""
    q_a, q_b = _quantiles(alpha, None)
    return -math.expm1(-(q_a + q_b) * sigma * math.sqrt(1 / n_base + 1 / n_cand))


def gate(base: Sequence[float], cand: Sequence[float], threshold: float, alpha: float,
         sigma: float | None = None) -> GateResult:
    """Compare two sets of per-run throughputs (images/s, higher is better)."""
    if not base or not cand or min(*base, *cand) <= 0:
        raise ValueError("gate needs positive throughputs on both sides")
    bl, cl = [math.log(v) for v in base], [math.log(v) for v in cand]
    d = statistics.fmean(cl) - statistics.fmean(bl)
    nb, nc = len(bl), len(cl)
    df: int | None = None
    source = "calibrated"
    if sigma is None:
        sigma, df = pooled_sigma(bl, cl)
        source = "repeats"
        if df < 1 or not sigma > 0:
            return GateResult(math.exp(d), None, None, None, None, None, "none", "not gated",
                              None, nb, nc)
    sigma = max(sigma, SIGMA_FLOOR)
    se = sigma * math.sqrt(1 / nb + 1 / nc)
    q_a, q_b = _quantiles(alpha, df)
    detectable = -math.expm1(-(q_a + q_b) * se)
    result = dict(ratio=math.exp(d), low=math.exp(d - q_a * se), high=math.exp(d + q_a * se),
                  p_slower=t_cdf(d / se, df), detectable=detectable, noise=sigma,
                  noise_source=source, n_base=nb, n_cand=nc, needed_repeats=None)
    verdict = _verdict(result, threshold, sigma, alpha)  # sets needed_repeats when not gated
    return GateResult(**result, verdict=verdict)


def _verdict(r: dict, threshold: float, sigma: float, alpha: float) -> str:
    if r["ratio"] < 1 - threshold and r["high"] < 1:
        return "regression"
    if r["ratio"] > 1 + threshold and r["low"] > 1:
        return "faster"
    if r["detectable"] > threshold:
        r["needed_repeats"] = repeats_needed(sigma, threshold, alpha)
        return "not gated"
    return "ok"


def per_config_alpha(family_alpha: float, n_configs: int) -> float:
    """Bonferroni: the false-alarm rate of one gate run over all its configurations is at most
    `family_alpha`."""
    return family_alpha / max(1, n_configs)


def log_sigma(values: Sequence[float]) -> float | None:
    """Run-to-run noise of one configuration: the sample sd of log throughputs (2+ runs)."""
    if len(values) < 2 or min(values) <= 0:
        return None
    return statistics.stdev(math.log(v) for v in values)
