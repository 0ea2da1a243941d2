"""Device specifics in one place, each with a CPU implementation so tests run the same paths.

Clocks are read only after `synchronize`, so a timed window contains the device work queued
inside it, not merely the Python time to enqueue it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator

import torch

from .errors import BenchError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: no CUDA device is available here (use --device cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise BenchError(f"unknown device {name!r}; choices: auto, cpu, cuda, cuda:N")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work; a no-op on CPU where ops run synchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """Seconds on a monotonic clock, read after the device has drained its queue."""
    synchronize(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA allocator peak, or this process's peak RSS on CPU; returns (bytes, what it is)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss_kib) * 1024, "process_peak_rss"


def is_oom(exc: BaseException) -> bool:
    """True for device out-of-memory errors (CUDA OOM, or a CPU allocation failure)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in msg.lower() or isinstance(exc, MemoryError)
        or "DefaultCPUAllocator: can't allocate memory" in msg
    )


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def cpu_threads() -> int:
    return torch.get_num_threads()


def default_workers() -> int:
    """Cores this process may run on (the default worker count of the loaders)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def timed(device: torch.device) -> Iterator[list[float]]:
    """`with timed(dev) as t:` leaves the elapsed seconds in t[0], synchronised at both ends."""
    out: list[float] = []
    start = now(device)
    yield out
    out.append(now(device) - start)
