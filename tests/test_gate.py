"""The regression gate: statistics with known answers, the throughput measurement, interleaving,
and the `--against` worktree flow on a tiny repository."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.ci import against
from bench.errors import BenchError
from bench.gate.stats import gate, log_sigma, per_config_alpha, repeats_needed
from bench.measure import throughput
from bench.measure.throughput import window_estimates
from bench.results import run_key
from bench.spec.runspec import RunConfig
from bench.suites import policy as suites

# --------------------------------------------------------------------------- statistics


def _draws(rng: random.Random, n: int, level: float, sigma: float) -> list[float]:
    return [level * (1 + rng.gauss(0, sigma)) for _ in range(n)]


def test_identical_distributions_false_alarm_rate_is_bounded() -> None:
    """2,000 A/A comparisons (3 runs a side, 3% noise): regressions at most at alpha."""
    rng = random.Random(1)
    alpha = 0.05
    alarms = sum(gate(_draws(rng, 3, 1000, 0.03), _draws(rng, 3, 1000, 0.03), 0.05,
                      alpha).verdict == "regression" for _ in range(2000))
    assert alarms / 2000 <= alpha


def test_calibrated_identical_distributions_false_alarm_rate() -> None:
    rng = random.Random(2)
    alarms = sum(gate(_draws(rng, 3, 1000, 0.02), _draws(rng, 3, 1000, 0.02), 0.05, 0.0125,
                      sigma=0.02).verdict == "regression" for _ in range(4000))
    assert alarms / 4000 <= 0.0125 * 1.5


def test_known_shift_is_caught() -> None:
    """A 10% slowdown under 1% noise is caught every time; its ratio is estimated."""
    rng = random.Random(3)
    results = [gate(_draws(rng, 3, 1000, 0.01), _draws(rng, 3, 900, 0.01), 0.05, 0.0125)
               for _ in range(200)]
    assert all(r.verdict == "regression" for r in results)
    assert all(r.low < 0.9 * 1.03 and r.high > 0.9 * 0.97 for r in results)


def test_small_shift_within_threshold_is_ok_not_regression() -> None:
    r = gate([1000, 1001, 999], [980, 981, 979], 0.05, 0.0125, sigma=0.002)
    assert r.verdict == "ok" and r.detectable < 0.05 and r.ratio == pytest.approx(0.98, 1e-3)


def test_too_noisy_is_not_gated_with_the_repeats_it_needs() -> None:
    r = gate([1000, 1100, 900], [1000, 1100, 900], 0.05, 0.0125)
    assert r.verdict == "not gated" and r.needed_repeats > 3
    assert repeats_needed(r.noise, 0.05, 0.0125) == r.needed_repeats
    # with that many runs per side, the same noise is gateable
    assert gate([1000] * r.needed_repeats, [1000] * r.needed_repeats, 0.05, 0.0125,
                sigma=r.noise).detectable <= 0.05


def test_one_run_a_side_without_calibration_is_not_gated() -> None:
    r = gate([1000], [500], 0.05, 0.05)
    assert r.verdict == "not gated" and r.noise_source == "none"
    assert r.ratio == pytest.approx(0.5)


def test_bonferroni_and_log_sigma() -> None:
    assert per_config_alpha(0.05, 4) == pytest.approx(0.0125)
    assert log_sigma([100.0]) is None
    assert log_sigma([100.0, 100.0]) == 0.0


def test_heavy_one_sided_noise_upper_quantile_is_robust() -> None:
    """Interference only slows windows down: with 40% of windows slowed 2-5x, the median
    moves by tens of percent while the q90 estimate stays within 2% of the clean rate."""
    rng = random.Random(4)
    moved_median, moved_q90 = [], []
    for _ in range(50):
        clean = [1000 * (1 + rng.gauss(0, 0.01)) for _ in range(20)]
        hit = [r / rng.uniform(2, 5) if rng.random() < 0.4 else r for r in clean]
        est = window_estimates(hit)
        moved_median.append(abs(est["median"] / 1000 - 1))
        moved_q90.append(abs(est["q90"] / 1000 - 1))
    assert max(moved_q90) < 0.03 < max(moved_median)


# --------------------------------------------------------------------------- measurement


def test_throughput_mode_windows_and_estimate(tiny_data, tmp_path: Path) -> None:
    from bench.measure.runner import run

    result, path = run(RunConfig(model="fc", device="cpu", data_dir=str(tiny_data[0]),
                                 recipe="fast", measure="throughput", budget_s=0.3,
                                 out=str(tmp_path), quiet=True))
    s = result.summary
    assert result.status == "ok" and path is not None
    assert result.windows[0]["warmup"] and not any(w["warmup"] for w in result.windows[1:])
    timed = result.windows[1:]
    # the budget is timed in several windows; how many depends on this machine's speed meanwhile
    # (a busy machine fits 4 of the planned 7), so only "more than one" is asserted
    assert sum(w["seconds"] for w in timed) >= 0.3 and len(timed) >= 2
    assert s["estimator"] == throughput.ESTIMATOR
    assert s["images_per_s"] == pytest.approx(s["window_estimates"][throughput.ESTIMATOR])
    assert s["final_test_acc"] is None and result.evals == []
    assert result.config["measure"] == "throughput" and result.config["budget_s"] == 0.3


def test_slowdown_knob_pads_each_step_by_its_fraction(monkeypatch) -> None:
    """pad(start) spins for `fraction` of the time since `start` (a fake clock: no timing)."""
    clock = iter(x / 1000 for x in range(1000, 10_000))  # 1.000 s, 1.001 s, ...
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    pad = throughput._busy_pad(0.5, torch.device("cpu"))
    assert pad(0.0) == pytest.approx(1.501)  # 1 s since start: spun until 1.5 s


def test_slowdown_knob_pads_every_timed_step(tiny_data, monkeypatch) -> None:
    """BENCH_TEST_SLOWDOWN pads every timed iteration with busy work, and only those."""
    from bench.measure.runner import run

    padded = []

    def counting_pad(fraction: float, device: torch.device):
        padded.append(fraction)
        return lambda start: (padded.append("step"), start)[1]

    monkeypatch.setattr(throughput, "_busy_pad", counting_pad)
    monkeypatch.setenv(throughput.SLOWDOWN_ENV, "1.0")
    result, _ = run(RunConfig(model="fc", device="cpu", data_dir=str(tiny_data[0]),
                              batch_size=16, measure="throughput", budget_s=0.2,
                              write=False, quiet=True))
    timed_steps = sum(w["steps"] for w in result.windows if not w["warmup"])
    assert padded[0] == 1.0 and padded.count("step") == timed_steps > 0
    monkeypatch.setenv(throughput.SLOWDOWN_ENV, "fast")
    with pytest.raises(BenchError, match="BENCH_TEST_SLOWDOWN"):
        throughput.slowdown_from_env()


def test_suite_repeats_are_interleaved(monkeypatch, tmp_path: Path) -> None:
    order = []
    cfgs = [RunConfig(model=m) for m in ("fc", "cnn", "lenet")]
    monkeypatch.setattr(suites, "suite_configs", lambda name, on_gpu: (cfgs, "test"))
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)
    monkeypatch.setattr(suites, "_real_data_available", lambda fams, d: dict.fromkeys(fams,
                                                                                     False))
    monkeypatch.setattr(suites, "run", lambda c: (order.append((c.repeat, c.model)), (None,
                                                                                    None))[1])
    suites.run_suite("x", data_dir=None, out_dir=str(tmp_path), device="cpu", repeats=2)
    assert order == [(0, "fc"), (0, "cnn"), (0, "lenet"), (1, "fc"), (1, "cnn"), (1, "lenet")]


def test_ci_suite_measures_throughput() -> None:
    cfgs, _ = suites.suite_configs("ci", on_gpu=False)
    assert {c.measure for c in cfgs} == {"throughput"} and not any(c.evaluate for c in cfgs)
    heavy = [c for c in cfgs if c.model == "vgg16"]
    assert heavy and heavy[0].batch_size == suites.CPU_HEAVY_BATCH


# --------------------------------------------------------------------------- --against


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    (repo / "version.txt").write_text("1000\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    (repo / "version.txt").write_text("900\n")  # the candidate commit is 10% slower
    _git(repo, "commit", "-qam", "slower")
    return repo


# A side's round: writes one result per configuration with the tree's version.txt as images/s
# (the order of rounds is appended to a log, so the test sees the alternation).
_FAKE_ROUND = r"""
import json, os, sys, pathlib
from bench.results import Result, write_result

tree = pathlib.Path.cwd(); out = sys.argv[1]; log = sys.argv[2]
ips = float((tree / "version.txt").read_text())
with open(log, "a") as f:
    f.write(f"{tree.name} {os.environ.get('BENCH_TEST_SLOWDOWN', '-')}\n")
n = sum(1 for _ in open(log))
for model in ("fc", "cnn"):
    cfg = dict(model=model, dataset="mnist", loader="device", precision="fp32", compile="none",
               channels_last=False, batch_size=256, recipe="fast", world_size=1,
               measure="throughput", max_steps=None)
    env = {"host": "h", "cpu_model": "Test CPU", "gpus": []}
    summary = {"images_per_s": ips * (1 + n / 1000)}
    if os.environ.get("FAKE_DRIFT"):  # the machine 30% faster in round 2; the probe sees it
        speed = 1.3 if n == 2 else 1.0
        summary = {"images_per_s": ips * speed, "probe_rate": 500.0 * speed,
                   "probe_version": 1, "images_per_probe": ips / 500.0}
    write_result(Result(config=cfg, env=env, summary=summary), out)
"""


def test_against_alternates_in_a_worktree(tiny_repo: Path, tmp_path: Path, monkeypatch):
    import argparse

    log = tmp_path / "rounds.log"
    script = tmp_path / "fake_round.py"
    script.write_text(_FAKE_ROUND)
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setattr(against, "checkout_root", lambda: tiny_repo)
    monkeypatch.setattr(against, "_side_command", lambda args, out, *_: [
        sys.executable, str(script), str(out), str(log)])
    monkeypatch.setenv("PYTHONPATH", str(root))
    monkeypatch.setenv(throughput.SLOWDOWN_ENV, "0.10")
    args = argparse.Namespace(against="HEAD~1", repeats=3, out=str(tmp_path / "out"),
                              device="cpu", data_dir=None, budget_s=None)
    cmp = against.gate_against(args, 0.05, 0.05)
    lines = log.read_text().split("\n")[:-1]
    sides = ["repo" if line.startswith("repo ") else "baseline" for line in lines]
    assert sides == ["baseline", "repo", "repo", "baseline", "baseline", "repo"]  # ABBA
    assert {line.split()[1] for line in lines if line.startswith("repo")} == {"0.10"}
    assert {line.split()[1] for line in lines if line.startswith("baseline")} == {"-"}
    assert len(cmp.rows) == 2 and all(r.verdict == "regression" for r in cmp.rows)
    assert all(r.ips_ratio == pytest.approx(0.9, abs=0.01) for r in cmp.rows)
    assert _git(tiny_repo, "worktree", "list").count("\n") == 0  # temporary worktree removed


def test_against_gates_on_the_probe_when_both_sides_have_it(tiny_repo: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    """A burst in one round moves images/s (ratio 1.03 for a true 0.9) but not images/s ÷
    probe, which the gate then uses, with the calibration's noise of that figure."""
    import argparse

    script = tmp_path / "fake_round.py"
    script.write_text(_FAKE_ROUND)
    monkeypatch.setattr(against, "checkout_root", lambda: tiny_repo)
    monkeypatch.setattr(against, "_side_command", lambda args, out, *_: [
        sys.executable, str(script), str(out), str(tmp_path / "rounds.log")])
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    monkeypatch.setenv("FAKE_DRIFT", "1")
    args = argparse.Namespace(against="HEAD~1", repeats=2, out=str(tmp_path / "out"),
                              device="cpu", data_dir=None, budget_s=None)
    cal_rows = [{"key": list(run_key(dict(model=m, dataset="mnist", loader="device",
                                          precision="fp32", compile="none",
                                          channels_last=False, batch_size=256, recipe="fast",
                                          world_size=1, measure="throughput"))),
                 "sigma": 0.01, "sigmas": {"images_per_probe": 0.01, "images_per_s": 0.2}}
                for m in ("fc", "cnn")]
    calibration = {"metric": "images_per_probe", "configs": cal_rows}
    cmp = against.gate_against(args, 0.05, 0.05, calibration)
    assert cmp.metric == "images_per_probe"
    assert all(r.ips_ratio == pytest.approx(0.9, abs=1e-6) for r in cmp.rows)
    assert all(r.verdict == "regression" for r in cmp.rows)


def test_against_bad_input(tiny_repo: Path, monkeypatch) -> None:
    with pytest.raises(BenchError, match="no such commit"):
        against.resolve_ref(tiny_repo, "no-such-branch")
    (tiny_repo / "version.txt").write_text("1\n")
    with pytest.raises(BenchError, match="uncommitted change"):
        against.require_clean(tiny_repo)
    assert against.round_order(2) == [(0, "baseline"), (0, "candidate"), (1, "candidate"),
                                      (1, "baseline")]
    assert against.round_order(1, start=3) == [(3, "candidate"), (3, "baseline")]


def _fake_against(tiny_repo: Path, tmp_path: Path, monkeypatch, source: str, log: Path,
                  repeats: int = 2):
    """--against on `tiny_repo` whose rounds run `source` (a fake round) logging to `log`;
    returns the job's args."""
    import argparse

    script = tmp_path / "fake_round.py"
    script.write_text(source)
    monkeypatch.setattr(against, "checkout_root", lambda: tiny_repo)
    monkeypatch.setattr(against, "_side_command", lambda args, out, *_: [
        sys.executable, str(script), str(out), str(log)])
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    return argparse.Namespace(against="HEAD~1", repeats=repeats, out=str(tmp_path / "out"),
                              device="cpu", data_dir=None, budget_s=None)


def test_against_is_sequential_with_caps(tiny_repo: Path, tmp_path: Path, monkeypatch,
                                         capsys) -> None:
    """With caps, a decided job stops at its first look; an older REF (no `bench suite
    --models`) gets the whole suite in any extra round."""
    from bench.ci.looks import Caps

    log = tmp_path / "rounds.log"
    args = _fake_against(tiny_repo, tmp_path, monkeypatch, _FAKE_ROUND, log)
    cmp = against.gate_against(args, 0.05, 0.05, None, Caps(2, 6, math.inf))
    assert len(log.read_text().splitlines()) == 4  # 2 pairs: decided at the first look
    assert all(r.verdict == "regression" for r in cmp.rows)
    assert "ci: 2 round(s)" in capsys.readouterr().out
    assert not against.knows_models(tiny_repo)
    assert not against.knows_turns(tiny_repo)  # so its rounds ran one after the other
    assert against.knows_models(Path(__file__).resolve().parent.parent)


# A side's round that takes turns (bench.measure.turns): 6 windows per configuration, each
# logged while its side holds the turn; the machine is 30% faster in round 2, for both sides.
_FAKE_TURNS_ROUND = r"""
import os, sys, pathlib
from bench.measure.turns import for_process
from bench.results import Result, write_result

tree = pathlib.Path.cwd(); out = pathlib.Path(sys.argv[1]); log = sys.argv[2]
ips = float((tree / "version.txt").read_text()) * (1.3 if out.name == "round1" else 1.0)
side = for_process()
for model in ("fc", "cnn"):
    cfg = dict(model=model, dataset="mnist", loader="device", precision="fp32", compile="none",
               channels_last=False, batch_size=256, recipe="fast", world_size=1,
               measure="throughput", max_steps=None)
    side.meet(model)
    windows = []
    for _ in range(6):
        k = side.take()
        with open(log, "a") as f:
            f.write(f"{out.name} {tree.name} {model} {k} {len(os.sched_getaffinity(0))}\n")
        windows.append(dict(epoch=0, steps=1, images=int(ips), seconds=1.0, warmup=False,
                            turn=k))
        side.give()
    side.finish()
    write_result(Result(config=cfg, env={"host": "h", "cpu_model": "Test CPU", "gpus": []},
                        summary={"images_per_s": ips}, windows=windows), str(out))
"""


def test_against_rounds_take_turns_when_both_trees_can(tiny_repo: Path, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    """Both sides of a round run at once, window by window, the opening side alternating, on
    one CPU; the verdict is on the pairs: two rounds 30% apart still read 0.9 exactly."""

    from bench.ci.looks import Caps

    for message in ("turns", "turns, slower"):
        (tiny_repo / "bench" / "measure").mkdir(parents=True, exist_ok=True)
        (tiny_repo / "bench" / "measure" / "turns.py").write_text(f"# {message}\n")
        (tiny_repo / "version.txt").write_text("900\n" if "slower" in message else "1000\n")
        _git(tiny_repo, "add", ".")
        _git(tiny_repo, "commit", "-qm", message)
    log = tmp_path / "turns.log"
    args = _fake_against(tiny_repo, tmp_path, monkeypatch, _FAKE_TURNS_ROUND, log)
    cmp = against.gate_against(args, 0.05, 0.05, None, Caps(2, 2, math.inf))
    assert "taking turns window by window" in capsys.readouterr().err
    lines = [line.split() for line in log.read_text().splitlines()]
    for rnd, opener in (("round0", "baseline"), ("round1", "repo")):
        for model in ("fc", "cnn"):
            seen = [(tree, k) for r, tree, m, k, _ in lines if r == rnd and m == model]
            other = "repo" if opener == "baseline" else "baseline"
            assert seen == [(side, str(k)) for k in range(1, 7) for side in (opener, other)]
    assert {cpus for *_, cpus in lines} == {"1"}  # a CPU round's two sides share one CPU
    assert [r.verdict for r in cmp.rows] == ["regression", "regression"]
    assert all(r.ips_ratio == pytest.approx(0.9, abs=1e-3) for r in cmp.rows)
    assert all(r.gate.noise_source == "turns" for r in cmp.rows)
    assert against.knows_turns(Path(__file__).resolve().parent.parent)


def test_baseline_of_a_newer_format_is_bad_input(tmp_path: Path) -> None:
    from bench.results import read_docs

    path = tmp_path / "b.json"
    path.write_text(json.dumps({"kind": "bench-baseline", "version": 99, "runs": []}))
    with pytest.raises(BenchError, match="newer than this tool"):
        read_docs(path)
