"""The per-file conversion lock: flock(2) on `.<name>.beton.lock`, never held by the dead.

The lock serialises check-and-convert of one .beton between processes (parallel runs, DDP
ranks). The holder writes "PID HOST" into the lock file, and removes the file when it is done
(so a finished conversion leaves none). A waiter polls rather than blocks, so a signal can
always reach it, says once in a line that it waits and for whom, and takes the lock over when
the recorded owner is dead although the lock is still held: that is a child process that
outlived its parent (an orphaned ffcv writer of an older version, which inherited the lock by
fork). Taking over means unlinking the file and locking a fresh one: the orphan keeps the old,
nameless inode. Every acquisition checks that the locked descriptor is still the file at the
path (the classic lock-file protocol), and take-overs are serialised by a flock on the folder,
so two waiters can never both hold the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.data.ffcv._proc import forget, parent_only, shielded
from bench.errors import BenchError
from bench.fsutil import os_reason

POLL_S = 0.2
SAY_WAITING_AFTER_S = 5.0

Owner = tuple[int, str]  # (pid, host)


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def beton_lock(path: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock of `path` for the block; the lock file is gone afterwards."""
    lock = lock_path(path)
    fd = _acquire(lock, log)
    parent_only(fd)  # writer children close it: only this process holds the lock
    try:
        yield
    finally:
        with shielded():
            forget(fd)
            with contextlib.suppress(OSError):
                if _same_file(fd, lock):
                    lock.unlink()  # while held: a waiter on this inode re-checks and retries
            os.close(fd)


def _open(lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise BenchError(f"cannot create the lock file {lock} ({os_reason(exc)})") from None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # ENOLCK and the like: a file system without locks
        raise BenchError(f"cannot take a conversion lock here ({os_reason(exc)}): this file "
                         "system has no flock; use another --out folder") from None
    return True


def _same_file(fd: int, lock: Path) -> bool:
    try:
        st = os.stat(lock)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _write_owner(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)


def _locks_table_pid(fd: int) -> int | None:
    """The PID that took a flock on fd's file, from /proc/locks (Linux): the owner of a lock
    file written without a PID (older versions)."""
    ino = os.fstat(fd).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5].rsplit(":", 1)[-1] == str(ino) and parts[4].isdigit():
            return int(parts[4])
    return None


def _owner(fd: int) -> Owner | None:
    words = os.pread(fd, 256, 0).decode(errors="replace").split()
    if len(words) == 2 and words[0].isdigit():
        return int(words[0]), words[1]
    pid = _locks_table_pid(fd)
    return (pid, socket.gethostname()) if pid else None


def _dead(owner: Owner | None) -> bool:
    """True only when certain: the owner ran on this host and no such process exists."""
    if owner is None or owner[1] != socket.gethostname():
        return False
    try:
        os.kill(owner[0], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _take_over(lock: Path, fd: int, owner: Owner, log: Callable[[str], None]) -> None:
    """Unlink a lock file whose owner is dead, if it still is that file, still held, by the
    same dead owner: re-checked under a flock on the folder, so one waiter does it."""
    dfd = os.open(lock.parent, os.O_RDONLY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)
        if _same_file(fd, lock) and not _try_lock(fd) and _owner(fd) == owner:
            lock.unlink()
            log(f"ffcv: {lock} was held by PID {owner[0]}, which is dead (an orphaned writer "
                "kept it); taking it over")
    finally:
        os.close(dfd)


_RETRY = (-1, "")  # _attempt's "the file changed under us: try again at once"


def _attempt(lock: Path, fd: int, log: Callable[[str], None]) -> tuple[bool, Owner | None]:
    """One try on an open lock file: (True, None) when locked, else (False, the owner seen,
    None when unknown, or _RETRY)."""
    if _try_lock(fd):
        if _same_file(fd, lock):
            _write_owner(fd)
            return True, None
        return False, _RETRY  # the holder removed it as we locked: lock the new file
    owner = _owner(fd)
    if owner is not None and _dead(owner):
        _take_over(lock, fd, owner, log)
        return False, _RETRY
    return False, owner


def _acquire(lock: Path, log: Callable[[str], None]) -> int:
    """Poll for the lock (a signal can interrupt the wait); return the locked descriptor."""
    t0 = time.monotonic()
    said = False
    while True:
        fd = _open(lock)
        try:
            locked, owner = _attempt(lock, fd, log)
        except BaseException:
            os.close(fd)
            raise
        if locked:
            return fd
        os.close(fd)
        if owner == _RETRY:
            continue
        if not said and time.monotonic() - t0 > SAY_WAITING_AFTER_S:
            who = f"PID {owner[0]} on {owner[1]}" if owner else "another process"
            log(f"ffcv: waiting for {lock} (held by {who}: another conversion or run)")
            said = True
        time.sleep(POLL_S)


__all__ = ["beton_lock", "lock_path"]
