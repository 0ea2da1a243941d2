"""Child processes that die with us: the `--against` rounds and the first-contact stages.

A child runs in its own process group (so a stop reaches its own children too: torchrun,
loader workers) and, on Linux, asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG), so a `kill -9` of the parent leaves nothing running. Stopping one sends a
signal to the whole group, then SIGKILL after a grace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

STOP_GRACE_S = 10.0  # a stopped child gets its signal, then SIGKILL this much later
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, else None. Looked up here, in the parent: a forked child of a
    threaded process must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGTERM from the kernel when `parent` dies (None where
    there is no prctl). A child whose parent died before the request took exits at once."""
    prctl = _prctl()
    if prctl is None:
        return None

    def request() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # orphaned already: the signal will never come
            os._exit(143)
    return request


def _in_child(parent: int, cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """The preexec_fn: die with `parent` and, given `cpus`, run on those CPUs only (its
    threads and children inherit the set)."""
    die = _die_with_parent(parent)
    if not cpus:
        return die

    def prepare() -> None:
        if die is not None:
            die()
        os.sched_setaffinity(0, cpus)
    return prepare


def start_child(cmd: list[str], cwd: Path, env: dict[str, str],
                stdout: int | IO[Any] = subprocess.PIPE, stderr: int | IO[Any] = subprocess.PIPE,
                text: bool = True, pass_fds: tuple[int, ...] = (),
                cpus: frozenset[int] | None = None) -> subprocess.Popen[Any]:
    """Start `cmd` in its own process group, tied to this process's life (`pass_fds`: file
    descriptors it inherits, as subprocess.Popen's; `cpus`: the only CPUs it may run on)."""
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=stderr, text=text, start_new_session=True,
                            preexec_fn=_in_child(os.getpid(), cpus), pass_fds=pass_fds)


def stop_child(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """`sig` to the child's whole group (its own children too), SIGKILL if it stays."""
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:  # the group is gone; the child may still need reaping
            pass
        except PermissionError:
            proc.send_signal(s)
        try:
            proc.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue  # past SIGKILL too: a process stuck in the kernel; not waited on for ever


def forwarded(exc: BaseException) -> int:
    """The signal to pass on for what stopped us: the same one (Ctrl-C is SIGINT)."""
    signum = getattr(exc, "signum", None)
    if isinstance(signum, int):
        return signum
    return signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
