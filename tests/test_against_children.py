"""`bench ci --against`: its round processes die with it, and what a killed run left is cleaned.

A `kill -9` of `bench ci --against REF` used to leave its `bench suite ci` child running, and the
worktree and its `bench-against-*` temporary folder behind. The rounds start through
`rounds.start_child`, tested here with a sleeping stand-in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.ci import against, rounds
from bench.errors import BenchError
from bench.host import children
from bench.measure import turns

ROOT = Path(__file__).resolve().parent.parent
# SIGINT as Python starts it, even under a shell that runs us in the background with it ignored
SLEEPER = [sys.executable, "-c", "import signal, time; "
           "signal.signal(signal.SIGINT, signal.default_int_handler); time.sleep(60)"]
DEADLINE_S = 8.0


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _dies(pid: int) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# A parent that starts the sleeper through the helper, says its pid, then waits for its kill.
_PARENT = r"""
import sys, time
from pathlib import Path
from bench.ci.rounds import start_child

proc = start_child(sys.argv[1:], Path.cwd(), {"PATH": "/usr/bin:/bin"})
print(proc.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG is Linux's; elsewhere only the process group "
                           "and the next start's cleanup apply")
def test_a_round_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, *SLEEPER], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()  # SIGKILL: no handler, no cleanup runs in the parent
        parent.wait(timeout=10)
        assert _dies(child), f"child {child} still runs after its parent's SIGKILL"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_round_past_its_time_is_stopped_with_its_own_children(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The timeout (and likewise Ctrl-C) stops the child's whole process group."""
    monkeypatch.setattr(children, "STOP_GRACE_S", 2.0)
    note = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time, pathlib; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"pathlib.Path({str(note)!r}).write_text(str(p.pid)); time.sleep(60)")
    with pytest.raises(subprocess.TimeoutExpired):
        rounds.run_child([sys.executable, "-c", code], ROOT, dict(os.environ), 3.0)
    grandchild = int(note.read_text())
    assert _dies(grandchild), f"grandchild {grandchild} outlived its round"


def test_ctrl_c_is_forwarded_and_the_child_stopped(monkeypatch) -> None:
    started: list[subprocess.Popen[str]] = []
    real_start = rounds.start_child

    def start(*args, **kw):
        started.append(real_start(*args, **kw))
        return started[-1]

    def interrupted(self, timeout=None):
        # a signal that lands between fork and exec is lost with the forked image (the child
        # then takes the SIGKILL after the grace): interrupt once the child runs its own code
        deadline = time.monotonic() + DEADLINE_S
        cmdline = Path(f"/proc/{self.pid}/cmdline")
        while time.monotonic() < deadline:
            try:
                if SLEEPER[2].encode() in cmdline.read_bytes():
                    break
            except OSError:  # no /proc here: give the exec a moment instead
                time.sleep(0.5)
                break
            time.sleep(0.01)
        raise KeyboardInterrupt

    monkeypatch.setattr(rounds, "start_child", start)
    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rounds.run_child(SLEEPER, ROOT, dict(os.environ), 60)
    assert started[0].returncode == -signal.SIGINT  # the same signal, passed on


# --------------------------------------------------------------------------- pairs in turns
_SAY_PID = "import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); "


def _side(tmp_path: Path, name: str, body: str) -> rounds.Side:
    note = tmp_path / f"{name}.pid"
    return rounds.Side(ROOT, [sys.executable, "-c", _SAY_PID + body, str(note)],
                       dict(os.environ), f"the {name} round", tmp_path / f"{name}.log")


def _pid(tmp_path: Path, name: str) -> int:
    note = tmp_path / f"{name}.pid"
    deadline = time.monotonic() + DEADLINE_S
    while not note.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(note.read_text())


def test_a_pair_whose_side_fails_is_one_line_and_the_other_stopped(tmp_path: Path) -> None:
    other = tmp_path / "baseline.pid"  # fails once the other side is up
    failing = _side(tmp_path, "candidate", f"[time.sleep(0.05) for _ in range(200) if not "
                    f"pathlib.Path({str(other)!r}).exists()]; "
                    "print('no CUDA here', file=sys.stderr); sys.exit(2)")
    sleeping = _side(tmp_path, "baseline", "time.sleep(60)")
    with pytest.raises(BenchError, match=r"the candidate round failed \(exit 2\): no CUDA here"):
        rounds.run_pair(failing, sleeping, timeout=30)
    assert _dies(_pid(tmp_path, "baseline"))


def test_a_pair_past_its_time_stops_both(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(children, "STOP_GRACE_S", 2.0)
    sides = [_side(tmp_path, name, "time.sleep(60)") for name in ("baseline", "candidate")]
    with pytest.raises(BenchError, match="did not finish in 2s"):
        rounds.run_pair(*sides, timeout=2)
    assert all(_dies(_pid(tmp_path, name)) for name in ("baseline", "candidate"))


def test_a_pair_hands_each_side_its_pipes(tmp_path: Path) -> None:
    body = ("from bench.measure.turns import for_process; t = for_process(); t.meet('k'); "
            "print(type(t).__name__, t.first, t.take(), flush=True); t.give(); t.finish()")
    sides = [_side(tmp_path, name, body) for name in ("baseline", "candidate")]
    rounds.run_pair(*sides, timeout=60)
    assert (tmp_path / "baseline.log").read_text().split() == ["Turns", "True", "1"]
    assert (tmp_path / "candidate.log").read_text().split() == ["Turns", "False", "1"]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_a_pair_on_a_cpu_runs_both_sides_on_one_cpu(tmp_path: Path) -> None:
    cpus = rounds.pair_cpus("cpu")
    assert cpus is not None and len(cpus) == 1 and cpus <= os.sched_getaffinity(0)
    body = "import os; print(sorted(os.sched_getaffinity(0)), flush=True)"
    sides = [_side(tmp_path, name, body) for name in ("baseline", "candidate")]
    rounds.run_pair(*sides, timeout=60, cpus=cpus)
    for name in ("baseline", "candidate"):
        assert (tmp_path / f"{name}.log").read_text().strip() == str(sorted(cpus))
    assert os.sched_getaffinity(0) != cpus or len(os.sched_getaffinity(0)) == 1  # ours kept


# each side: its CPUs before the meeting, in the timed phase (its main thread, and a thread
# started before the meeting), after finish(); and its torch-visible thread setting
TIMED_PHASE = (
    "import os, threading; from bench.measure.turns import for_process; t = for_process(); "
    "cpus = lambda tid=0: sorted(os.sched_getaffinity(tid)); seen = {}; go = threading.Event(); "
    "th = threading.Thread(target=lambda: (go.wait(), seen.update(thread=cpus()))); th.start(); "
    "before = cpus(); t.meet('k'); t.take(); go.set(); th.join(); timed = cpus(); t.give(); "
    "t.finish(); print(before, timed, seen['thread'], cpus(), os.environ.get('OMP_NUM_THREADS'),"
    " sep='|', flush=True)")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two CPUs")
def test_a_pair_pinned_in_its_timed_phase_only(tmp_path: Path) -> None:
    """Both trees pin their own timed phase (`rounds.pins_own_turns`): each side starts on
    every CPU with one torch thread, is pinned (every thread of it) from the meeting to
    finish(), and gets its CPUs back for the next configuration's warm-up."""
    cpus = rounds.pair_cpus("cpu")
    assert rounds.pins_own_turns(ROOT)
    sides = [_side(tmp_path, name, TIMED_PHASE) for name in ("baseline", "candidate")]
    rounds.run_pair(*sides, timeout=60, cpus=cpus, timed_only=True)
    every, one = str(sorted(os.sched_getaffinity(0))), str(sorted(cpus))
    for name in ("baseline", "candidate"):
        got = (tmp_path / f"{name}.log").read_text().strip().split("|")
        assert got == [every, one, one, every, "1"], name


def test_an_older_tree_is_pinned_whole(tmp_path: Path) -> None:
    """A REF whose turns do not pin themselves (`CPU_ENV` unknown to it) is not given the
    timed-only pin: this process pins its sides from start to end instead."""
    old = tmp_path / "old" / "bench" / "measure"
    old.mkdir(parents=True)
    (old / "turns.py").write_text('TURNS_ENV = "BENCH_TURNS"\n')
    assert not rounds.pins_own_turns(tmp_path / "old")
    assert not rounds.pins_own_turns(tmp_path / "missing")
    assert rounds.pin_env(frozenset({1})) == {turns.CPU_ENV: "1", "OMP_NUM_THREADS": "1"}


def test_a_pair_on_a_gpu_is_not_pinned(monkeypatch) -> None:
    import torch

    from bench.host import device

    monkeypatch.setattr(device, "resolve_device", lambda name: torch.device("cuda", 0))
    assert rounds.pair_cpus("cuda") is None


# --------------------------------------------------------------------------- next start
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_start_removes_what_a_killed_run_left(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty",
         "-m", "base")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    stale = tmp / f"{against.TMP_PREFIX}dead"
    stale.mkdir()
    (stale / against.PID_FILE).write_text(f"{_dead_pid()}\n")
    _git(repo, "worktree", "add", "--detach", "--quiet", str(stale / "baseline"), "HEAD")
    live = tmp / f"{against.TMP_PREFIX}live"
    live.mkdir()
    (live / against.PID_FILE).write_text(f"{os.getpid()}\n")
    _git(repo, "worktree", "add", "--detach", "--quiet", str(live / "baseline"), "HEAD")
    unknown = tmp / f"{against.TMP_PREFIX}nopid"  # being made right now: no pid file yet
    unknown.mkdir()

    removed = against.clean_stale(repo)

    assert removed == [stale] and not stale.exists()
    assert live.exists() and unknown.exists()
    listed = _git(repo, "worktree", "list")
    assert str(live / "baseline") in listed and str(stale / "baseline") not in listed
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and str(stale) in err[0] and "pruned" in err[1]
    assert against.clean_stale(repo) == []  # nothing more to do
    assert capsys.readouterr().err == ""
