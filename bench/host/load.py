"""What else ran on the host while a window was timed: other processes' CPU time, the
hypervisor's steal, and this process's involuntary context switches.

Why: on a shared runner a neighbour slows some windows and not others, and the probe after a
window does not always see the same neighbour (issue 26). The gate can only discount what it
can see, so every window records what the host's CPU accounting says about it: `/proc/stat`
(all CPUs' busy and steal time), minus this process's own CPU time (`time.process_time`, every
thread), and `getrusage`'s involuntary context switches (the scheduler took a CPU away from us).
Off Linux (no `/proc/stat`) the CPU shares are None: unknown, never zero.

A reading costs one small file read and two system calls, taken at a window edge, off the clock.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any

PROC_STAT = "/proc/stat"
# A window is "beside foreign work" when other processes used at least this share of the host's
# CPU time during it (0.10 of 2 CPUs: a neighbour busy a fifth of the window on the other core).
FOREIGN_SHARE_LIMIT = 0.10


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds of all CPUs since boot, from the `cpu` line of /proc/stat."""

    busy: float  # user + nice + system + irq + softirq (steal and guest kept apart)
    steal: float
    total: float  # busy + idle + iowait + steal


def parse_proc_stat(text: str, ticks_per_s: float) -> CpuTimes | None:
    """The aggregate `cpu` line of /proc/stat in seconds; None when it is not there or garbled.
    Fields: user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    already inside user and nice, so it is not added again."""
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] != "cpu":
            continue
        try:
            values = [int(v) for v in parts[1:9]]
        except ValueError:
            return None
        if len(values) < 4 or any(v < 0 for v in values):
            return None
        values += [0] * (8 - len(values))
        user, nice, system, idle, iowait, irq, softirq, steal = values
        busy = user + nice + system + irq + softirq
        return CpuTimes(busy / ticks_per_s, steal / ticks_per_s,
                        (busy + idle + iowait + steal) / ticks_per_s)
    return None


@dataclass(frozen=True)
class HostSample:
    wall: float  # time.monotonic()
    cpu: CpuTimes | None
    own_cpu_s: float  # this process, every thread
    invol_switches: int


def _ticks_per_s() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


def read_cpu_times(path: str = PROC_STAT) -> CpuTimes | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return parse_proc_stat(f.read(4096), _ticks_per_s())
    except OSError:
        return None


def sample(path: str = PROC_STAT) -> HostSample:
    return HostSample(time.monotonic(), read_cpu_times(path), time.process_time(),
                      resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)


def _share(seconds: float, capacity: float) -> float:
    return round(min(max(seconds / capacity, 0.0), 1.0), 4)


def between(start: HostSample, end: HostSample) -> dict[str, float | int | None]:
    """What the host did between two samples: `foreign_share` (other processes' CPU time as a
    share of all CPUs' time), `steal_share` (time the hypervisor gave to other guests) and
    `invol_switches`. The shares come from the counters' own total, so they need no CPU count
    (a container's cgroup quota does not change them); None where /proc/stat was not read."""
    reading: dict[str, float | int | None] = {
        "foreign_share": None, "steal_share": None,
        "invol_switches": max(end.invol_switches - start.invol_switches, 0)}
    if start.cpu is None or end.cpu is None:
        return reading
    capacity = end.cpu.total - start.cpu.total
    if capacity <= 0:  # the counters tick at 100 Hz: a window shorter than a tick saw nothing
        return reading
    own = end.own_cpu_s - start.own_cpu_s
    reading["foreign_share"] = _share(end.cpu.busy - start.cpu.busy - own, capacity)
    reading["steal_share"] = _share(end.cpu.steal - start.cpu.steal, capacity)
    return reading


def beside_foreign_work(reading: dict[str, float | int | None]) -> bool:
    """Whether a window's reading shows a neighbour (or steal) above `FOREIGN_SHARE_LIMIT`."""
    seen = (reading.get("foreign_share") or 0.0) + (reading.get("steal_share") or 0.0)
    return seen >= FOREIGN_SHARE_LIMIT


def summarise(readings: list[dict[str, float | int | None]]) -> dict[str, float | int | None]:
    """A run's host load: how many windows ran beside foreign work, and the median shares."""
    known = [r for r in readings if r.get("foreign_share") is not None]

    def median(key: str) -> float | None:
        values = [float(r[key] or 0.0) for r in known if r.get(key) is not None]
        return round(statistics.median(values), 4) if values else None

    return {"windows": len(readings), "windows_read": len(known),
            "windows_beside_foreign_work": sum(beside_foreign_work(r) for r in known),
            "foreign_share_median": median("foreign_share"),
            "steal_share_median": median("steal_share"),
            "invol_switches": sum(int(r.get("invol_switches") or 0) for r in readings)}


# A run is "noisy" when at least this share of its read windows ran beside foreign work.
NOISY_RUN_SHARE = 0.25


def noisy_run(load: Any) -> bool:
    """Whether a run's `host_load` summary marks it noisy (False when it has none: an older
    file, a run off Linux, a training run)."""
    if not isinstance(load, dict):
        return False
    read, beside = load.get("windows_read"), load.get("windows_beside_foreign_work")
    if not isinstance(read, int) or not isinstance(beside, int) or read <= 0:
        return False
    return beside / read >= NOISY_RUN_SHARE
