"""`--measure throughput`: images/s built for comparison (what `bench ci` gates on).

A training run's figures mix in what a regression gate must not see: evaluations every few
steps cut its steady state into short windows, and a recipe's step budget gives a tiny model on a
fast GPU milliseconds of signal. This loop trains the same step function with no evaluation:

1. an untimed warm-up: `warmup_steps` steps, then doubling probes until a quarter of the
   budget has passed AND two probes in a row agree on the step time within 15% (compilation,
   cuDNN autotuning, oneDNN primitive creation, loader JIT, clocks ramping up), capped at
   `WARMUP_CAP` budgets;
2. windows sized from the warm-up's step time so that a run holds about `WINDOWS` of them,
   none shorter than the engine's rule for a window long enough to time (`engine.MIN_WINDOW_S`
   and `MIN_WINDOW_STEPS`, or `LONG_WINDOW_S`: a small budget gets fewer windows, not shorter
   ones);
3. timed windows until `budget_s` seconds of training have been timed (or `max_steps`), each
   followed by a window of the fixed reference workload (`measure.probe`, a quarter of a
   window's time): the machine's speed meanwhile, which a stored baseline needs. Under
   `bench ci --against` two such loops, one per side, take turns (`measure.turns`): a side
   times a window and its probe only while it holds the turn, and each window records its
   turn number.

On a shared machine interference only ever slows a window down, so the gate's estimator is an
upper quantile of the window rates (see `ESTIMATOR` and docs/ci.md for the A/A data that chose
it); the median and the spread are kept beside it.

Test-only knob: `BENCH_TEST_SLOWDOWN=0.10` makes every timed iteration (batch + step) 10% longer
with busy work, so the gate's power can be measured against a known slowdown.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import BenchError
from bench.host.device import now, synchronize
from bench.host.nvml import open_telemetry
from bench.measure.engine import (
    LONG_WINDOW_S,
    MIN_WINDOW_S,
    MIN_WINDOW_STEPS,
    StepFn,
    TrainState,
    WindowClock,
    endless,
    record_warmup,
)
from bench.measure.probe import SHARE, ReferenceProbe
from bench.measure.progress import RunProgress, quiet_progress
from bench.measure.turns import Alone
from bench.spec.recipes import BatchSize

WINDOWS = 20  # timed windows per run
WARMUP_FRACTION = 0.25  # of the budget, spent untimed after the warm-up steps
WARMUP_STABLE = 0.15  # two probes' step times this close: warmed up
WARMUP_CAP = 4.0  # budgets of warm-up at most, stable or not
SLOWDOWN_ENV = "BENCH_TEST_SLOWDOWN"
# windows last at least this many times engine.MIN_WINDOW_S at the warm-up's step time: that is
# an estimate, and steps that then run faster must not make a window too short to count
WINDOW_HEADROOM = 2.0
# The statistic of the window rates a run reports as its images/s in throughput mode.
ESTIMATOR = "q90"


@dataclass
class ThroughputConfig:
    budget_s: float  # seconds of timed training per run
    warmup_steps: int
    batch: BatchSize  # the run's: a step trains on batch.per_rank images on each rank
    max_steps: int | None = None  # cap on timed steps
    turns: Alone | None = None  # the other side's process, taking turns (measure.turns)
    turn_key: str = ""  # the configuration's name both sides give it


def slowdown_from_env() -> float:
    """The test-only slowdown fraction (0 when unset)."""
    raw = os.environ.get(SLOWDOWN_ENV, "")
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise BenchError(f"{SLOWDOWN_ENV} must be a fraction like 0.10, not {raw!r}") from None
    if not 0 <= value < 10:
        raise BenchError(f"{SLOWDOWN_ENV} must lie in [0, 10), got {raw}")
    return value


def _busy_pad(fraction: float, device: torch.device) -> Callable[[float], float]:
    """pad(start) spins for `fraction` of the time since `start`; returns the new start."""

    def pad(start: float) -> float:
        synchronize(device)
        t = time.perf_counter()
        until = t + fraction * (t - start)
        while time.perf_counter() < until:
            pass
        return time.perf_counter()

    return pad


def _warm_up(step: StepFn, batches: Iterator, device: torch.device, cfg: ThroughputConfig
             ) -> tuple[int, float, float]:
    """Untimed warm-up; returns (steps, wall seconds, seconds per step at its end)."""
    start = now(device)
    for _ in range(cfg.warmup_steps):
        step(*next(batches))
    steps, n, previous = cfg.warmup_steps, 1, math.inf
    while True:  # doubling probes until long enough and stable (or the cap)
        t = now(device)
        for _ in range(n):
            step(*next(batches))
        per_step = (now(device) - t) / n
        steps += n
        elapsed = now(device) - start
        stable = abs(per_step - previous) <= WARMUP_STABLE * per_step
        if (elapsed >= WARMUP_FRACTION * cfg.budget_s and stable) or \
                elapsed >= WARMUP_CAP * cfg.budget_s:
            return steps, elapsed, per_step
        previous = per_step
        n = min(2 * n, max(1, round(WARMUP_FRACTION * cfg.budget_s / max(per_step, 1e-9))))


def _window_steps(budget_s: float, per_step: float) -> int:
    """Steps per timed window: a `WINDOWS`-th of the budget, but never a window too short to
    time (the engine's rule, so that every window counts towards the estimator)."""
    per_step = max(per_step, 1e-9)
    fewest = min(MIN_WINDOW_STEPS, math.ceil(WINDOW_HEADROOM * LONG_WINDOW_S / per_step))
    return max(fewest, math.ceil(WINDOW_HEADROOM * MIN_WINDOW_S / per_step),
               round(budget_s / WINDOWS / per_step))


def measure_throughput(step: StepFn, loader: Any, device: torch.device,
                       cfg: ThroughputConfig, state: TrainState,
                       progress: RunProgress | None = None) -> TrainState:
    """Warm up untimed, then time windows until the budget is spent; fills `state`. The
    progress bar counts seconds of the timed budget, advanced at window edges only."""
    progress = progress or quiet_progress()
    if len(loader) == 0:
        raise BenchError("the loader yields no batches")
    batches = endless(loader)
    if state.telemetry is None:
        state.telemetry = open_telemetry(device)
    warm_steps, warm_s, per_step = _warm_up(step, batches, device, cfg)
    record_warmup(state, warm_steps, warm_steps * cfg.batch.per_rank, warm_s)
    window_steps = _window_steps(cfg.budget_s, per_step)
    probe = ReferenceProbe(device)
    probe.calibrate(SHARE * window_steps * per_step)
    slowdown = slowdown_from_env()
    pad = _busy_pad(slowdown, device) if slowdown else None
    cap = cfg.max_steps or math.inf
    timed_steps, clock = 0, WindowClock(device, cfg.batch.per_rank)
    turns = cfg.turns or Alone()
    turns.meet(cfg.turn_key)
    try:
        while state.train_time_s < cfg.budget_s and timed_steps < cap:
            n = int(min(window_steps, cap - timed_steps))
            turn = turns.take()
            clock.open()
            mark = time.perf_counter()
            for _ in range(n):
                step(*next(batches))
                if pad is not None:
                    mark = pad(mark)
            seconds, images = clock.close(state, 0, n)
            timed_steps += n
            progress.window(min(state.train_time_s, cfg.budget_s), images, seconds)
            state.windows[-1].probe = probe.window()
            state.windows[-1].turn = turn
            turns.give()
    except BaseException:  # NaN, OOM, Ctrl-C: the other side goes on alone now, no wait here
        turns.finish(wait=False)
        raise
    turns.finish()
    state.steps = warm_steps + timed_steps
    synchronize(device)
    return state


def window_estimates(rates: list[float]) -> dict[str, float]:
    """Candidate estimators of a run's images/s from its window rates (all kept in results,
    so the choice of `ESTIMATOR` can be revisited on stored data)."""
    xs = sorted(rates)
    n = len(xs)

    def quantile(q: float) -> float:
        return xs[0] if n == 1 else statistics.quantiles(xs, n=100, method="inclusive")[
            round(q * 100) - 1]

    trim = n // 10
    trimmed = xs[trim:n - trim] or xs
    return {"median": statistics.median(xs), "q75": quantile(0.75), "q90": quantile(0.90),
            "max": xs[-1], "trimmed_mean": statistics.fmean(trimmed)}
