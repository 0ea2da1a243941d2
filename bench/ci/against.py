"""`bench ci --against REF`: baseline and candidate code measured alternately in one job.

As PyTorch's own compiler benchmarks do, the baseline is not a stored file but REF's code, run
on the same machine in the same job: REF is checked out in a temporary git worktree, and rounds
of the ci suite alternate between the two trees (B C, then C B, ...: ABBA order, so a linear
drift of the machine lands on both sides equally). Each round is a fresh `python -m bench suite
ci --repeats 1` process in that tree (`ci.rounds`), with a time limit, so neither side's code
can hang the job.

The candidate is this checkout, which must be clean (its results must name a commit). REF must
know the ci suite's throughput measurement (this feature's own commits and later). The test-only
`BENCH_TEST_SLOWDOWN` reaches the candidate side only.

A round's process dies with this one: it runs in its own process group (a Ctrl-C or SIGTERM
here is forwarded to the whole group, then SIGKILL after a grace) and, on Linux, asks the kernel
for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a `kill -9` of `bench ci` does not leave
it running. The temporary folder holds the owner's pid; the next `--against` removes the folders
(and worktrees) of owners that no longer run.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.ci.looks import Caps, run_looks
from bench.ci.rounds import RoundSpec, Side, pair_cpus, pins_own_turns, run_pair, run_round
from bench.defaults import PACKAGE_ROOT
from bench.errors import BenchError
from bench.gate.compare import Comparison, compare_runs
from bench.gate.paired import paired_rounds
from bench.measure.throughput import SLOWDOWN_ENV
from bench.results import docs_rows, load_docs, provenance

GIT_TIMEOUT_S = 120
TMP_PREFIX = "bench-against-"  # the temporary folders, under tempfile.gettempdir()
PID_FILE = "owner.pid"  # in each: the pid of the `bench ci` that made it


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise BenchError("--against needs git on PATH") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"git {' '.join(args)} did not finish in {GIT_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip().splitlines()[-1:] or ''}")
    return proc.stdout.strip()


def checkout_root() -> Path:
    """The git checkout this package runs from (the candidate's code)."""
    here = PACKAGE_ROOT
    try:
        return Path(_git(here, "rev-parse", "--show-toplevel"))
    except BenchError:
        raise BenchError(f"--against needs a git checkout; {here} is not one") from None


def resolve_ref(repo: Path, ref: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except BenchError:
        raise BenchError(f"--against {ref}: no such commit, branch or tag in {repo}") from None


def require_clean(repo: Path) -> None:
    """The candidate is this checkout: uncommitted changes would make its results nameless."""
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    if dirty:
        n = len(dirty.splitlines())
        raise BenchError(f"the working tree has {n} uncommitted change(s): commit or stash "
                         "them first (the candidate must be a commit)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _stale_owner(folder: Path) -> int | None:
    """The dead owner's pid of one of our temporary folders, or None (alive, unknown, not
    ours: kept)."""
    try:
        if folder.is_symlink() or folder.stat().st_uid != os.getuid():
            return None
        pid = int((folder / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None  # no pid file yet (being made) or not ours to judge
    return None if pid <= 0 or _pid_alive(pid) else pid


def clean_stale(repo: Path) -> list[Path]:
    """Remove what a killed earlier `--against` left: its temporary folder (owner dead) and its
    git worktree registration. One line on stderr per thing removed; returns the folders."""
    removed = []
    for folder in sorted(Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*")):
        pid = _stale_owner(folder)
        if pid is None:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
            print(f"ci --against: removed {folder}, left by bench ci pid {pid} (no longer "
                  "running)", file=sys.stderr, flush=True)
    before = _worktrees(repo)
    if not any(_dangling_ours(Path(w)) for w in before):
        return removed  # none of ours dangles: the user's own worktrees are not pruned
    _git(repo, "worktree", "prune")
    for gone in sorted(before - _worktrees(repo)):
        print(f"ci --against: pruned the stale git worktree {gone}", file=sys.stderr, flush=True)
    return removed


def _dangling_ours(tree: Path) -> bool:
    """A worktree of a `--against` run (<tmp>/bench-against-*/baseline) whose folder is gone."""
    parent = tree.resolve().parent
    return (parent.name.startswith(TMP_PREFIX) and not tree.exists()
            and parent.parent == Path(tempfile.gettempdir()).resolve())


def _worktrees(repo: Path) -> set[str]:
    """The paths of the repository's registered worktrees."""
    listing = _git(repo, "worktree", "list", "--porcelain")
    return {line[len("worktree "):] for line in listing.splitlines()
            if line.startswith("worktree ")}


def _make_tmp() -> Path:
    """This run's temporary folder, with this process's pid in it (for `clean_stale`)."""
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
    try:
        (tmp / PID_FILE).write_text(f"{os.getpid()}\n")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _side_command(args: argparse.Namespace, out: Path, models: Sequence[str] = ()
                  ) -> list[str]:
    """A round of the ci suite (only `models`' runs, when given), the same in both trees."""
    spec = RoundSpec("ci", args.device, args.data_dir, args.budget_s, models=tuple(models))
    return spec.command(out)


def knows_models(tree: Path) -> bool:
    """Whether the tree's `bench suite` takes `--models` (this change on): an older REF's
    extra rounds run the whole suite on both sides instead."""
    try:
        return '"--models"' in (tree / "bench" / "cli.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def round_order(rounds: int, start: int = 0) -> list[tuple[int, str]]:
    """(round, side) in ABBA order: B C C B B C ... (from round `start` on)."""
    order = []
    for r in range(start, start + rounds):
        sides = ("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline")
        order += [(r, s) for s in sides]
    return order


def knows_turns(tree: Path) -> bool:
    """Whether the tree's throughput loop takes turns (`bench.measure.turns`, this change on):
    with an older REF the sides' rounds run one after the other."""
    return (tree / "bench" / "measure" / "turns.py").is_file()


def _envs() -> dict[str, dict[str, str]]:
    """Each side's environment: the test-only slowdown reaches the candidate only."""
    base_env = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
    return {"baseline": base_env, "candidate": dict(os.environ)}


def measure_alternately(trees: dict[str, Path], args: argparse.Namespace, out: Path,
                        rounds: int | None = None, start: int = 0,
                        models: Sequence[str] = ()) -> dict[str, list]:
    """Run `rounds` rounds (default --repeats) from round `start` on, of `models` only when
    given; returns each side's result docs so far (all rounds under `out`). When both trees
    take turns, a round runs both sides at once, window by window (`rounds.run_pair`; the
    side that opens alternates; on a CPU both time their windows on one CPU, `rounds.pair_cpus`,
    pinned in their timed phase only when both trees can, `rounds.pins_own_turns`); else one
    after the other in ABBA order."""
    envs = _envs()
    models = models if all(knows_models(t) for t in trees.values()) else ()
    rounds = args.repeats if rounds is None else rounds
    if all(knows_turns(t) for t in trees.values()):
        cpus = pair_cpus(args.device)
        timed_only = all(pins_own_turns(t) for t in trees.values())
        for r in range(start, start + rounds):
            sides = [Side(trees[s], _side_command(args, out / s / f"round{r}", models), envs[s],
                          f"--against: the {s} round {r + 1}", out / s / f"round{r}.log")
                     for s in ("baseline", "candidate")]
            run_pair(*(sides if r % 2 == 0 else sides[::-1]), cpus=cpus,
                     timed_only=timed_only)
    else:
        for r, side in round_order(rounds, start):
            run_round(trees[side], _side_command(args, out / side / f"round{r}", models),
                      envs[side], f"--against: the {side} round {r + 1}")
    docs = {side: load_docs([out / side]) if (out / side).exists() else [] for side in trees}
    for side, found in docs.items():
        if not found:
            raise BenchError(f"--against: the {side} side wrote no results")
    return docs


def rounds_docs(out: Path, rounds: int) -> list[dict[str, list]]:
    """Per round so far, each side's result docs (what `gate.paired` pairs)."""
    return [{side: load_docs([out / side / f"round{r}"]) if (out / side / f"round{r}").exists()
             else [] for side in ("baseline", "candidate")} for r in range(rounds)]


def gate_against(args: argparse.Namespace, threshold: float, alpha: float,
                 calibration: dict | None = None, caps: Caps | None = None) -> Comparison:
    """Check REF out, measure both trees alternately, compare (one device, same job).

    The figure is the stored gate's (`metric.gate_metric`): images/s ÷ probe when both sides ran
    the same probe version, since the machine's speed also wanders between rounds of one job;
    the noise is `calibration`'s for that figure, else estimated from the rounds. With `caps`
    the job is sequential (`ci.looks`): a round is a pair, one round of each side."""
    repo = checkout_root()
    sha = resolve_ref(repo, args.against)
    require_clean(repo)
    clean_stale(repo)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = Path(args.out).resolve() / "against" / f"{stamp}-{sha[:12]}"
    try:
        tmp = _make_tmp()
    except OSError as exc:
        raise BenchError(f"--against: cannot make a temporary folder in "
                         f"{tempfile.gettempdir()} ({exc.strerror or exc})") from None
    try:
        tree = tmp / "baseline"
        _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), sha)
        try:
            cmp = _measure_and_gate({"baseline": tree, "candidate": repo}, args, out,
                                    (threshold, alpha, calibration),
                                    caps or Caps(args.repeats, args.repeats, math.inf))
        finally:
            _remove_worktree(repo, tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cmp


def _measure_and_gate(trees: dict[str, Path], args: argparse.Namespace, out: Path,
                      gate: tuple[float, float, dict | None], caps: Caps) -> Comparison:
    from bench.ci.metric import calibration_df, gate_metric, noise_table

    threshold, alpha, calibration = gate
    looks = caps.looks(calibration_df(calibration), base_in_job=True)
    in_turns = all(knows_turns(t) for t in trees.values())
    docs: dict[str, list] = {}
    done = 0  # rounds so far (the ABBA order goes on from there)

    def measure(rounds: int, models: Sequence[str]) -> None:
        nonlocal done
        docs.update(measure_alternately(trees, args, out, rounds, done, models))
        done += rounds

    def look() -> Comparison:
        metric = gate_metric(docs["baseline"], docs["candidate"])
        paired = paired_rounds(rounds_docs(out, done)) if in_turns else None
        return compare_runs(docs_rows(docs["baseline"]), docs_rows(docs["candidate"]),
                            threshold, alpha, noise_table(calibration, metric), metric, looks,
                            paired)

    print("ci --against: " + ("each round runs both sides at once, taking turns window by "
                              "window" if in_turns else "the sides' rounds run one after the "
                              "other (REF's code predates turns)"), file=sys.stderr, flush=True)
    outcome = run_looks(measure, look, caps)
    if looks:
        print(outcome.line())
    cmp = outcome.comparison
    cmp.provenance = {side: provenance(docs[side]) for side in ("baseline", "candidate")}
    return cmp


def _remove_worktree(repo: Path, tree: Path) -> None:
    try:
        _git(repo, "worktree", "remove", "--force", str(tree))
    except BenchError:
        _git(repo, "worktree", "prune")


__all__: Sequence[str] = ["clean_stale", "gate_against", "require_clean", "resolve_ref",
                          "round_order"]
