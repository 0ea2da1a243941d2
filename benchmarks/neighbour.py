"""A noisy neighbour for the gate campaigns: CPU-bound processes beside the job, in bursts.

    python benchmarks/neighbour.py periodic --period 3     # on 3 s, off 3 s, until killed
    python benchmarks/neighbour.py random --mean 3 --seed 1
    python benchmarks/neighbour.py steady

A CI runner shares its cores with other tenants: a 2-vCPU cloud runner with the hypervisor's
neighbours, a multi-GPU box with the other CI jobs. This stands in for them: `--procs` busy
processes (default: one per CPU but one), each pinned to one of the CPUs after the first where
the OS allows it, switched on and off together by the profile:

- steady: always busy;
- periodic: busy `--period` seconds, idle `--period` seconds;
- random: busy and idle spells of exponentially distributed length, mean `--mean` seconds
  (seeded: the same `--seed` gives the same spells).

Busy means a pure-Python arithmetic loop (one core each, no memory traffic to speak of); idle
means sleeping. Stops on SIGTERM/SIGINT, and by itself after `--max-s` seconds (default 2 h),
so a campaign killed with -9 leaves no neighbour running for long.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import sys
import time
from collections.abc import Iterator

PROFILES = ("steady", "periodic", "random")


def spells(profile: str, period: float, mean: float, seed: int) -> Iterator[tuple[bool, float]]:
    """(busy, seconds) spells of a profile, forever."""
    rng = random.Random(seed)
    while True:
        if profile == "steady":
            yield True, 3600.0
        elif profile == "periodic":
            yield True, period
            yield False, period
        else:
            yield True, rng.expovariate(1 / mean)
            yield False, rng.expovariate(1 / mean)


def _burn(until: float) -> None:
    x = 0
    while time.monotonic() < until:
        for i in range(20_000):
            x = (x + i * i) % 1_000_003


def _worker(cpu: int | None, profile: str, period: float, mean: float, seed: int,
            stop_at: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    start = time.monotonic()
    elapsed = 0.0
    for busy, seconds in spells(profile, period, mean, seed):  # every worker: the same spells
        end = min(start + elapsed + seconds, stop_at)
        if busy:
            _burn(end)
        else:
            time.sleep(max(end - time.monotonic(), 0.0))
        elapsed += seconds
        if time.monotonic() >= stop_at:
            return


def other_cpus(procs: int | None) -> list[int | None]:
    """The CPUs the neighbour's processes go to: every usable CPU but the first."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    others: list[int | None] = list(usable[1:]) or [None]
    n = procs if procs is not None else len(others)
    return [others[i % len(others)] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile", choices=PROFILES)
    p.add_argument("--period", type=float, default=3.0, help="periodic: seconds on, then off")
    p.add_argument("--mean", type=float, default=3.0, help="random: mean spell in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--procs", type=int, default=None,
                   help="busy processes (default: one per CPU but one)")
    p.add_argument("--max-s", type=float, default=7200.0, help="stop by itself after this")
    args = p.parse_args(argv)
    stop_at = time.monotonic() + args.max_s
    workers = [mp.Process(target=_worker, daemon=True,
                          args=(cpu, args.profile, args.period, args.mean, args.seed, stop_at))
               for cpu in other_cpus(args.procs)]
    for w in workers:
        w.start()

    def stop(signum: int, frame: object) -> None:
        for w in workers:
            w.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for w in workers:
        w.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
