"""Device specifics in one place, each with a CPU implementation so tests run the same paths.

Clocks are read only after `synchronize`, so a timed window contains the device work queued
inside it, not merely the Python time to enqueue it.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.errors import BenchError

# Where a machine shows an NVIDIA driver (module attributes, so tests can point them elsewhere).
NVIDIA_SMI = "nvidia-smi"
NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")
NVIDIA_DEV_DIR = Path("/dev")  # /dev/nvidia0...: a GPU this machine (or container) can open
SMI_TIMEOUT_S = 10.0  # a wedged driver can hang nvidia-smi; never wait longer than this
# A torch wheel index for an older CUDA: CUDA 12 wheels run on drivers from R525 on (CUDA's
# minor-version compatibility), CUDA 13 ones need R580.
OLDER_CUDA_INDEX = "https://download.pytorch.org/whl/cu126"
_VERSION = re.compile(r"\b(\d{2,4}\.\d+(?:\.\d+)?)\b")


def _driver_from_smi() -> str | None:
    """The driver version nvidia-smi reports for the first GPU; None without a working one."""
    exe = shutil.which(NVIDIA_SMI)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (out.stdout.strip().splitlines() or [""])[0].strip()
    return first if out.returncode == 0 and _VERSION.fullmatch(first) else None


def _driver_from_proc() -> str | None:
    """The loaded kernel module's version ("NVRM version: ... Kernel Module  580.65.06 ..."),
    when a GPU device node exists too: a container without GPUs still sees the host's /proc."""
    if not any(NVIDIA_DEV_DIR.glob("nvidia[0-9]*")):
        return None
    try:
        first = NVIDIA_PROC_VERSION.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    found = _VERSION.search(first)
    return found.group(1) if found else "unknown version"


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version when this machine shows one (nvidia-smi, else /proc)."""
    return _driver_from_smi() or _driver_from_proc()


def _gpus_hidden() -> bool:
    """CUDA_VISIBLE_DEVICES set empty (or -1): the user hid the GPUs on purpose."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1")


def unusable_gpu(name: str) -> str | None:
    """One line when the machine has an NVIDIA GPU that this torch cannot use, else None.

    The usual cause: the wheel's CUDA is newer than the driver supports, and torch then
    reports no CUDA at all; a run would silently measure the CPU instead."""
    if _gpus_hidden():
        return None
    driver = nvidia_driver_version()
    if driver is None:
        return None
    build = (f"torch {torch.__version__} is built for CUDA {torch.version.cuda}"
             if torch.version.cuda else f"torch {torch.__version__} is a CPU-only build")
    return (f"--device {name}: this machine has an NVIDIA GPU (driver {driver}) but torch cannot "
            f"use it: {build}; install a torch wheel built for a CUDA this driver supports "
            f"(make clean && make bench TORCH_INDEX_URL={OLDER_CUDA_INDEX}) or use an "
            "environment whose torch already works here (pip install -e . there, or "
            "PYTHONPATH=. python -m bench); --device cpu runs on the CPU")


def _cuda_device(name: str) -> torch.device:
    """`cuda` or `cuda:N` when torch can use it; N must name a visible device."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; choices: auto, cpu, cuda, cuda:N") from None
    count = torch.cuda.device_count()
    if dev.type != "cuda" or (dev.index is not None and dev.index >= count):
        raise BenchError(f"--device {name}: this machine has {count} CUDA device(s) "
                         f"(cuda:0 to cuda:{count - 1})")
    return dev


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when torch can use it, else the CPU, but never when an NVIDIA GPU is
    present that torch cannot use (that is a broken install, not a CPU machine). `cpu` never
    probes anything."""
    if name == "cpu":
        return torch.device("cpu")
    if name != "auto" and not name.startswith("cuda"):
        raise BenchError(f"unknown device {name!r}; choices: auto, cpu, cuda, cuda:N")
    if torch.cuda.is_available():
        return torch.device("cuda") if name == "auto" else _cuda_device(name)
    problem = unusable_gpu(name)
    if problem is not None:
        raise BenchError(problem)
    if name == "auto":
        return torch.device("cpu")
    raise BenchError(f"--device {name}: no CUDA device is available here (use --device cpu)")


def select(device: torch.device) -> None:
    """Make `device` the current CUDA device: Triton kernels, CUDA graphs and ffcv's streams
    launch on the current device, not on the one their tensors live on (GPU 0 by default)."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def gpu_name(device: torch.device) -> str | None:
    """The GPU's marketing name (e.g. 'NVIDIA H100 80GB HBM3'); None on a CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_name(device)


def isolate(device: torch.device) -> None:
    """Start the next run of a suite clean: drop dynamo's compiled graphs and guards (and the
    CUDA-graph pools they hold), collect garbage, and return cached CUDA memory. cuDNN's
    autotune cache and the on-disk Inductor/Triton caches have no reset and stay."""
    if "torch._dynamo" in sys.modules:  # nothing was compiled otherwise; don't import it
        torch.compiler.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


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


def default_workers() -> int:
    """Cores this process may run on (the default worker count of the loaders)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
