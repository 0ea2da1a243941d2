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
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.host import children

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
    env = {**env, "PYTHONPATH": os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])}
    try:
        proc = run_child(cmd, cwd or tree, env, ROUND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish in {ROUND_TIMEOUT_S}s") from None
    if proc.returncode not in (0, 1):
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"{what} failed (exit {proc.returncode}): {last}")
    print(f"ci: {what} done", file=sys.stderr, flush=True)


__all__ = ["ROUND_TIMEOUT_S", "RoundSpec", "run_child", "run_round", "start_child"]
