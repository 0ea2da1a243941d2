"""Process hygiene around the ffcv writer: signals in the parent, detachment in its children.

Without it a `bench convert` killed by SIGTERM left its writer child behind (blocked for ever
on a queue nobody reads) holding the `.lock` it had inherited by fork, and Ctrl-C or a failed
writer left the parent joining a queue feeder thread at exit. In the parent, SIGINT, SIGTERM and
SIGHUP are exceptions (`bench.host.interrupts`, installed by the CLI), so every `finally` (stop the
children, drop the temporary file, release the lock) runs, shielded from a second signal. The
children leave the parent's process group (a terminal's Ctrl-C reaches the parent alone, which
stops them), die with the parent (Linux PR_SET_PDEATHSIG, so even kill -9 of the parent orphans
nothing) and close the lock's file descriptor, so that only the parent ever holds the lock.
Nothing here imports ffcv.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_PARENT_ONLY: dict[int, tuple[int, int]] = {}  # fd -> (st_dev, st_ino): closed in children


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM/SIGHUP for the block: the cleanup after a first stop signal
    (stop the children, remove the temporary file and the lock) is not cut short by a second
    Ctrl-C. The block is bounded (joins with timeouts), so nothing can hang here."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in HANDLED}
    try:
        yield
    finally:
        for s, h in old.items():
            if h is not None:  # None: a handler set outside Python, which we cannot restore
                signal.signal(s, h)  # type: ignore[arg-type]


def parent_only(fd: int) -> None:
    """Mark an open descriptor (a lock) to be closed by every writer child on start."""
    st = os.fstat(fd)
    _PARENT_ONLY[fd] = (st.st_dev, st.st_ino)


def forget(fd: int) -> None:
    _PARENT_ONLY.pop(fd, None)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when the parent dies, so that it is never orphaned."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def detach_child(parent_pid: int) -> None:
    """First thing in a writer child: own process group, die with the parent, default signal
    dispositions (fork copied the parent's handlers), and close the parent-only descriptors
    (only those still naming the same file: under spawn the numbers mean something else)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent(parent_pid)
    for s in HANDLED:
        signal.signal(s, signal.SIG_DFL)
    for fd, ident in list(_PARENT_ONLY.items()):
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == ident:
                os.close(fd)
    _PARENT_ONLY.clear()


__all__ = ["HANDLED", "detach_child", "forget", "parent_only", "shielded"]
