"""One round of a gate's suite in a fresh process: what `bench ci` runs, in every mode.

Why a fresh process per round: a process has a speed of its own on a shared CPU (where its
memory landed, which CPU it settled on, the allocator's state), beside the round-to-round noise
inside it. On the 2-core VM a pilot (docs/ci.md) measured the spread of the gate's figure
between fresh processes at about twice the spread between rounds of one process for fc and
cnn. A calibration taken in one process then under-states the noise every later job sees, and a
job of 4 rounds in one process carries its process's offset whole. With one process per round
the calibration's noise is the noise of a round, and a job's mean over N rounds averages N
process offsets.

Each round's process runs in its own process group, tied to this one's life (`host.children`):
a Ctrl-C, SIGTERM or `kill -9` of `bench ci` does not leave it running. Every round of one job
carries the job's batch id, so its runs read as one job (baselines, the history, the verdicts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.host import children
from bench.measure.turns import CPU_ENV, TURNS_ENV

ROUND_TIMEOUT_S = 30 * 60  # one round of the suite; a hung round fails the gate


@dataclass(frozen=True)
class RoundSpec:
    """What every round of one job runs: `bench suite SUITE --repeats 1` with these flags."""

    suite: str
    device: str
    data_dir: str | None = None
    budget_s: float | None = None
    gate: bool = False  # a suite file: the runs `bench ci --suite FILE` gates
    batch_id: str | None = None  # the job's: every round's runs carry it
    models: tuple[str, ...] = ()  # only these models' runs (the configurations undecided)

    def command(self, out: Path) -> list[str]:
        cmd = [sys.executable, "-m", "bench", "suite", self.suite, "--repeats", "1",
               "--device", self.device, "--out", str(out.resolve()), "--quiet"]
        if self.data_dir:
            cmd += ["--data-dir", str(Path(self.data_dir).resolve())]
        if self.budget_s:
            cmd += ["--budget-s", str(self.budget_s)]
        if self.gate:
            cmd.append("--gate")
        if self.batch_id:
            cmd += ["--batch-id", self.batch_id]
        if self.models:
            cmd += ["--models", ",".join(self.models)]
        return cmd


def start_child(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a round's process in its own process group, tied to this process's life."""
    return children.start_child(cmd, cwd, env)


def run_child(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
              ) -> subprocess.CompletedProcess[str]:
    """Run to the end like subprocess.run(capture_output=True); on a timeout, Ctrl-C or a
    stop signal the child's group is stopped before the exception goes on."""
    proc = start_child(cmd, cwd, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        children.stop_child(proc)
        raise
    except BaseException as exc:
        children.stop_child(proc, children.forwarded(exc))
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_round(tree: Path, cmd: list[str], env: dict[str, str], what: str,
              cwd: Path | None = None) -> None:
    """One round with the code of `tree` (first on PYTHONPATH), in `cwd` (default: `tree`); a
    round that hangs or cannot run is one line. Exit 1 (some runs failed: they are recorded as
    such) is a finished round."""
    try:
        proc = run_child(cmd, cwd or tree, _tree_env(tree, env), ROUND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish in {ROUND_TIMEOUT_S}s") from None
    if proc.returncode not in (0, 1):
        raise BenchError(f"{what} failed (exit {proc.returncode}): {_last_line(proc.stderr)}")
    print(f"ci: {what} done", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Side:
    """One side of a round run in turns: its code's tree, its command, environment, name,
    and the file its output goes to."""

    tree: Path
    cmd: list[str]
    env: dict[str, str]
    what: str
    log: Path


def pair_cpus(device: str) -> frozenset[int] | None:
    """The one CPU both sides of a CPU round run on; None on a GPU (or where affinity is not
    settable): the sides take turns, so one CPU holds both.

    Why: on the 2-core VM, unpinned, each side's rate jumped between two levels (about 5,300
    and 8,000 images/s for cnn) as the scheduler placed it on one vCPU or the other, and the
    two sides were often on different ones; pinned to one CPU the spread of a pair's median
    over turns fell from 5.5-15% to 0.5-1.6% (`benchmarks/pin_pilot.py`, docs/ci.md). On a GPU
    a side's loader workers need CPUs of their own, and that case was never measured."""
    from bench.host.device import resolve_device

    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        if resolve_device(device).type != "cpu":
            return None
        allowed = os.sched_getaffinity(0)
    except (BenchError, OSError, RuntimeError):  # the rounds themselves say what is wrong
        return None
    return frozenset({max(allowed)}) if allowed else None


def pin_env(cpus: frozenset[int]) -> dict[str, str]:
    """What a side that pins its own timed phase (`measure.turns`, `CPU_ENV`) is given: the
    CPU, and one torch thread from the start, so its warm-up's step time (which sizes the
    windows) is a one-thread step's, as its windows are."""
    return {CPU_ENV: str(min(cpus)), "OMP_NUM_THREADS": "1"}


def pins_own_turns(tree: Path) -> bool:
    """Whether the tree's sides pin their timed phase themselves (`CPU_ENV`, this change on):
    an older side is pinned whole by this process."""
    try:
        return CPU_ENV in (tree / "bench" / "measure" / "turns.py").read_text(encoding="utf-8")
    except OSError:
        return False


def run_pair(first: Side, second: Side, timeout: float = ROUND_TIMEOUT_S,
             cpus: frozenset[int] | None = None, timed_only: bool = False) -> None:
    """Both sides' rounds at once, taking turns window by window (`bench.measure.turns`):
    `first` opens each configuration; `cpus` (`pair_cpus`): the CPUs both run on, from start
    to end or, `timed_only` (both `pins_own_turns`), in their timed phase only. Each side's
    output goes to its `log` (two pipes read one after the other could fill and stall the
    side not read). A side that fails or hangs is one line, the other stopped."""
    a_to_b, b_to_a = os.pipe(), os.pipe()
    ends = ((b_to_a[0], a_to_b[1], 1), (a_to_b[0], b_to_a[1], 0))  # (in, out, opens)
    procs: list[tuple[Side, subprocess.Popen[str], Path]] = []
    pin = pin_env(cpus) if cpus and timed_only else {}
    whole = None if pin else cpus
    try:
        for side, (fd_in, fd_out, opens) in zip((first, second), ends, strict=True):
            env = {**_tree_env(side.tree, side.env), TURNS_ENV: f"{fd_in},{fd_out},{opens}",
                   **pin}
            side.log.parent.mkdir(parents=True, exist_ok=True)
            with side.log.open("w") as sink:
                procs.append((side, children.start_child(side.cmd, side.tree, env, sink, sink,
                                                         pass_fds=(fd_in, fd_out), cpus=whole),
                              side.log))
    except BaseException:
        for _, proc, _ in procs:
            children.stop_child(proc)
        raise
    finally:
        for fd in (*a_to_b, *b_to_a):  # the children hold their ends: a dead one reads as EOF
            os.close(fd)
    _wait_pair(procs, timeout)


def _wait_pair(procs: list[tuple[Side, subprocess.Popen[str], Path]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    try:
        for side, proc, log in procs:
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(f"{side.what} did not finish in {timeout:g}s") from None
            if code not in (0, 1):
                try:
                    output = log.read_text(errors="replace")
                except OSError:
                    output = ""
                raise BenchError(f"{side.what} failed (exit {code}): {_last_line(output)}")
            print(f"ci: {side.what} done", file=sys.stderr, flush=True)
    except BaseException as exc:  # a failed side, Ctrl-C or a stop signal: stop the other too
        for _, proc, _ in procs:
            if proc.poll() is None:
                children.stop_child(proc, children.forwarded(exc))
        raise


def _tree_env(tree: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with the code of `tree` first on PYTHONPATH."""
    return {**env, "PYTHONPATH": os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])}


def _last_line(output: str) -> str:
    """A failed round's last line of output, for its one-line error."""
    return (output.strip().splitlines() or ["(no output)"])[-1]


__all__ = ["ROUND_TIMEOUT_S", "RoundSpec", "Side", "pair_cpus", "pin_env", "pins_own_turns",
           "run_child", "run_pair", "run_round", "start_child"]
