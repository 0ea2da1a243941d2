"""Turns: two processes that time their windows one after the other, so both see one machine.

`bench ci --against` measures the baseline's and the candidate's code in two processes. Run one
after the other, each sees the machine of its own seconds, and on a shared 2-core VM that speed
moved 10-50% between processes seconds apart while two processes taking turns window by window
read within 1-6% of each other (`benchmarks/lockstep_pilot.py`, docs/ci.md). So the two sides
of a round run at once, and their throughput loops hand a token back and forth through two
pipes: a side times a window (and its probe) only while it holds the token, the other waits.

The protocol is lines on the pipes: `ready K` once a side has warmed up configuration K (both
wait for both, so neither side's warm-up lands in the other's windows), `turn K` after each of
a side's windows, `done K` when a side has timed its budget of K (the other then goes on
alone). The side started with `first` opens each configuration.

It never hangs: every wait has a deadline (`MEET_S` for the other's warm-up, `TURN_S` for one
window), and a closed pipe (the other side died) or a deadline passed leaves this side timing
alone for the rest of the configuration; each window records whether it was taken in turn.

`BENCH_TURNS=IN,OUT,FIRST` (file descriptors and 1 or 0) is how `bench ci` hands the pipes to
a round's process; without it `from_env` gives `Alone`, which never waits.

`BENCH_TURNS_CPU=N` (a CPU round) pins the side to CPU N from the meeting to `finish`, every
thread of it: both sides time their windows on one CPU, while the start-up, the build and the
warm-ups, which run at once on both sides, keep every CPU. Pinned for the whole process, a
round on the 2-core VM took 62 s instead of 26 s (docs/ci.md): both sides' start-up and
warm-ups shared one CPU.
"""

from __future__ import annotations

import os
import select
import time

TURNS_ENV = "BENCH_TURNS"
CPU_ENV = "BENCH_TURNS_CPU"
MEET_S = 180.0  # the other side's build and warm-up of one configuration, at most
TURN_S = 60.0  # one window of the other side (and its probe), at most


class Alone:
    """No other side: every window is this process's own."""

    paired = False

    def meet(self, key: str) -> None:
        """Both sides are warmed up on `key`: the windows may start."""

    def take(self) -> int | None:
        """Wait for this side's turn; its number in this configuration, None when alone."""
        return None

    def give(self) -> None:
        """This side's window is timed: the other's turn."""

    def finish(self, wait: bool = True) -> None:
        """This side has timed its budget of the configuration (or stopped: `wait` False)."""


class Turns(Alone):
    """One side of a pair of processes taking turns (the module's docstring says how)."""

    def __init__(self, fd_in: int, fd_out: int, first: bool, cpu: int | None = None) -> None:
        self.fd_in, self.fd_out, self.first = fd_in, fd_out, first
        self.cpu = cpu  # the one CPU of the timed phase (None: not pinned)
        self.unpinned: set[int] | None = None  # the CPUs before the pin, while pinned
        self.buffer, self.key, self.turn = b"", "", 0
        self.seen: set[str] = set()  # messages read, not yet waited for
        self.paired = False  # taking turns in the current configuration
        self.mine = False  # holding the token
        self.other_done = False  # the other side has timed its budget of this configuration

    def _send(self, word: str) -> None:
        try:
            os.write(self.fd_out, f"{word} {self.key}\n".encode())
        except OSError:  # the other side is gone: alone from here
            self.paired = False

    def _wait(self, words: tuple[str, ...], seconds: float) -> str | None:
        """The first of `words` (for this key) the other side sends within `seconds`; None on
        a deadline or a closed pipe."""
        wanted = [f"{w} {self.key}" for w in words]
        deadline = time.monotonic() + seconds
        while True:
            for line in wanted:
                if line in self.seen:
                    self.seen.discard(line)
                    return line.split(" ", 1)[0]
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return None

    def _read(self, seconds: float) -> bool:
        """Read what has arrived into `seen`; False on a deadline or a closed pipe."""
        try:
            ready, _, _ = select.select([self.fd_in], [], [], seconds)
            chunk = os.read(self.fd_in, 4096) if ready else b""
        except (OSError, ValueError):
            return False
        if not chunk:
            return False
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        self.seen.update(line.decode(errors="replace").strip() for line in lines)
        return True

    def meet(self, key: str) -> None:
        self.key, self.turn, self.other_done = key, 0, False
        self._send("ready")
        self.paired = self._wait(("ready",), MEET_S) == "ready"
        self.mine = self.first
        if self.paired and self.cpu is not None:
            self.unpinned = _pin({self.cpu})

    def take(self) -> int | None:
        if not self.paired:
            return None
        if not self.mine:
            got = self._wait(("turn", "done"), TURN_S)
            if got != "turn":
                self.paired, self.other_done = False, got == "done"
                return None
        self.mine, self.turn = True, self.turn + 1
        return self.turn

    def give(self) -> None:
        if self.paired and self.mine:
            self.mine = False
            self._send("turn")

    def finish(self, wait: bool = True) -> None:
        """Say so, and while the other side still times windows of this configuration, wait
        for it (MEET_S at most): this side's next warm-up must not land in its windows. A run
        that stopped (`wait` False) does not wait: a Ctrl-C must not hang on the other side."""
        was_paired, self.paired = self.paired, False
        if self.unpinned is not None:
            _pin(self.unpinned)
            self.unpinned = None
        self._send("done")
        if wait and was_paired and not self.other_done:
            self._wait(("done",), MEET_S)


def _pin(cpus: set[int]) -> set[int] | None:
    """Every thread of this process on `cpus` (threads started later inherit it from the one
    that starts them); returns the CPUs the process had, None where affinity is not settable
    (the side then runs unpinned: a pin is a noise remedy, not a condition of the run)."""
    try:
        before = os.sched_getaffinity(0)
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except (AttributeError, OSError, ValueError):
        return None
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # a thread that ended meanwhile, or a CPU this process may not use
            pass
    return before


def _cpu_from_env() -> int | None:
    """`BENCH_TURNS_CPU`'s CPU; None when unset or not a CPU number (a stray value must not
    stop a run)."""
    raw = os.environ.get(CPU_ENV, "")
    return int(raw) if raw.isdigit() else None


def from_env() -> Alone:
    """This process's side of a pair, from `BENCH_TURNS` (and `BENCH_TURNS_CPU`); `Alone`
    without it (or a value that is not `IN,OUT,FIRST`: a stray variable must not stop a run)."""
    raw = os.environ.get(TURNS_ENV, "")
    try:
        fd_in, fd_out, first = (int(x) for x in raw.split(","))
        os.fstat(fd_in)
        os.fstat(fd_out)
    except (ValueError, OSError):
        return Alone()
    return Turns(fd_in, fd_out, bool(first), _cpu_from_env())


_PROCESS: list[Alone] = []


def for_process() -> Alone:
    """This process's one side (`from_env`, read once: its buffer spans configurations)."""
    if not _PROCESS:
        _PROCESS.append(from_env())
    return _PROCESS[0]


__all__ = ["CPU_ENV", "MEET_S", "TURNS_ENV", "TURN_S", "Alone", "Turns", "for_process",
           "from_env"]
