"""Environment fingerprint stored in every result: numbers are only comparable with it."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

# the labels live in the torch-free results library; re-exported for existing callers
from bench.defaults import PACKAGE_ROOT
from bench.host.nvml import gpu_inventory
from bench.results.labels import device_label, device_slug

__all__ = ["device_label", "device_slug", "fingerprint"]

_PACKAGES = ("torch", "torchvision", "ffcv", "numba", "numpy", "triton", "pandas")


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    root = PACKAGE_ROOT
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# The machine's thread count as torch started (recipes change it per run; the run's own count is
# in its config): part of a CPU's device label, which must not depend on which run came first.
_STARTUP_THREADS = torch.get_num_threads()


def _cpu_affinity() -> list[int] | None:
    """The CPUs this process may run on (`bench ci --against` pins a CPU round's two sides to
    one); None where the platform does not say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def fingerprint() -> dict[str, Any]:
    """Everything that changes a throughput figure and that we can read without side effects."""
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": _cpu_affinity(),
        "torch_threads": _STARTUP_THREADS,
        "packages": {p: _version(p) for p in _PACKAGES},
        "git_commit": git_commit(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        env["gpu_count"] = n
        env["gpus"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                "memory_bytes": torch.cuda.get_device_properties(i).total_memory,
            }
            for i in range(n)
        ]
        env["nvml"] = gpu_inventory()
    else:
        env["gpu_count"] = 0
        env["gpus"] = []
    return env


def _checkout_version() -> str | None:
    """The version in the checkout's pyproject.toml: a checkout run as `PYTHONPATH=. python -m
    bench` has no package metadata and must still say what it is. None when unreadable."""
    try:
        import tomllib
    except ImportError:  # Python 3.10, the project's floor, has no tomllib
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            return None
    try:
        with (PACKAGE_ROOT / "pyproject.toml").open("rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    found = project.get("version") if project.get("name") == "bench" else None
    return str(found) if found else None


def version_line() -> str:
    """`bench --version`: this package (and the commit, when run from a git checkout), torch,
    and the CUDA (or ROCm) torch was built with: what a result's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("bench")
    except PackageNotFoundError:
        ours = _checkout_version() or "(not installed)"
    commit = git_commit()
    if commit:
        sha, dirty, _ = commit.partition("-dirty")
        ours += f" (commit {sha[:10]}{dirty})"
    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    gpu = f"CUDA {cuda}" if cuda else f"ROCm {hip}" if hip else "no CUDA (CPU-only torch)"
    return f"bench {ours}, torch {torch.__version__}, {gpu}"
