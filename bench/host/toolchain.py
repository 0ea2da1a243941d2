"""What Triton needs on the machine: a C compiler and Python's headers.

Triton builds a small C launcher for each kernel the first time it runs, with the compiler and
headers of the machine. Without them every run on CUDA that uses Triton (the `gpu` loader's
fused kernel, any `--compile` mode) fails at its first step with a compiler traceback; we check
before the run instead and say in one line what to install. The lookup mirrors
`triton.runtime.build`: `$CC` if set, else gcc, else clang; headers in the include folder of
sysconfig's install scheme (Debian's `posix_local` read as `posix_prefix`).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from bench.errors import BenchError


def c_compiler() -> str | None:
    """The C compiler Triton would call, resolved on PATH; None when there is none."""
    cc = os.environ.get("CC")
    if cc:  # Triton runs $CC as the command itself, so it must resolve as one
        return shutil.which(cc)
    return shutil.which("gcc") or shutil.which("clang")


def python_include_dir() -> Path:
    """Where Triton looks for Python.h."""
    scheme = sysconfig.get_default_scheme()
    if scheme == "posix_local":
        scheme = "posix_prefix"
    return Path(sysconfig.get_paths(scheme=scheme)["include"])


def fix_line() -> str:
    """The install command for what is missing (Debian/Ubuntu first, then Fedora/RHEL)."""
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (f"apt-get install -y build-essential python{v}-dev (Fedora/RHEL: dnf install -y gcc "
            f"python{v}-devel)")


def missing() -> list[str]:
    """What Triton's launcher build lacks here, each as a clause; empty when nothing is."""
    out = []
    if c_compiler() is None:
        cc = os.environ.get("CC")
        out.append(f"$CC={cc!r} is not a command here" if cc
                   else "there is no C compiler (gcc or clang)")
    header = python_include_dir() / "Python.h"
    if not header.is_file():
        out.append(f"Python's headers are missing (no {header})")
    return out


def uses_triton(device_type: str, compile_mode: str, loader: str) -> bool:
    """On CUDA, torch.compile generates Triton kernels and the `device` loader runs one."""
    return device_type == "cuda" and (compile_mode != "none" or loader == "device")


def require(what: str) -> None:
    """Stop with one line when Triton cannot build its launcher here; `what` names the run."""
    lacking = missing()
    if lacking:
        raise BenchError(f"{what}: Triton builds a C launcher on first use, but "
                         f"{' and '.join(lacking)}; install them: {fix_line()}")
