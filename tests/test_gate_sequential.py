"""The sequential gate: one look's decision (pure), its error rates by simulation, and the
`bench ci` loop that measures only the undecided configurations again."""

from __future__ import annotations

import json
import math
import random
import sys
import types
from pathlib import Path

import pytest

from bench import cli
from bench.ci import job as ci
from bench.gate import compare
from bench.gate.sequential import DECIDED, Looks, decide
from bench.measure.probe import PROBE_VERSION
from bench.results import Result, write_result

KNOWN = Looks(most=1)  # one look, the sigma taken as known: the plain z-test's bounds


def test_identical_sides_with_little_noise_are_ok() -> None:
    g = decide([100.0, 101.0, 99.0], [100.5, 99.5], 0.05, 0.05, 0.01, KNOWN)
    assert g.verdict == "ok" and g.noise_source == "calibrated"


def test_a_clear_slowdown_is_a_regression_and_a_clear_speedup_faster() -> None:
    assert decide([100.0] * 4, [80.0] * 4, 0.05, 0.05, 0.02, KNOWN).verdict == "regression"
    assert decide([100.0] * 4, [125.0] * 4, 0.05, 0.05, 0.02, KNOWN).verdict == "faster"


def test_a_ratio_near_the_threshold_stays_undecided_and_says_what_it_needs() -> None:
    g = decide([100.0] * 8, [95.5] * 4, 0.05, 0.05, 0.04, KNOWN)
    assert g.verdict == "not gated" and g.needed_repeats and g.needed_repeats > 4


def test_more_looks_need_stronger_evidence() -> None:
    base, cand = [100.0] * 8, [94.0] * 4
    assert decide(base, cand, 0.05, 0.05, 0.04, Looks(most=1)).verdict == "regression"
    assert decide(base, cand, 0.05, 0.05, 0.04, Looks(most=9)).verdict == "not gated"


def test_a_noisier_job_than_its_calibration_widens_its_own_bounds() -> None:
    """The calibration said 1%; this job's rounds spread by ~10%: pooled, the ok goes."""
    base, cand = [100.0] * 16, [100.0, 80.0, 118.0, 92.0]
    calm = decide(base, cand, 0.05, 0.05, 0.01, Looks(most=1))
    pooled = decide(base, cand, 0.05, 0.05, 0.01, Looks(most=1, sigma_df=15))
    assert calm.verdict == "ok"
    assert pooled.noise_source == "calibrated+job" and pooled.noise > 0.03
    assert pooled.verdict == "not gated"


def test_without_calibration_one_run_a_side_says_nothing() -> None:
    g = decide([100.0], [90.0], 0.05, 0.05, None, KNOWN)
    assert g.verdict == "not gated" and g.noise is None


def test_non_positive_figures_are_refused() -> None:
    with pytest.raises(ValueError):
        decide([100.0], [0.0], 0.05, 0.05, 0.01, KNOWN)


def _job(rng: random.Random, sigma: float, slowdown: float, first: int = 4, most: int = 12
         ) -> str:
    """One simulated sequential job of one configuration (calibration of 16 A/A runs)."""
    base = [math.exp(rng.gauss(0, sigma)) for _ in range(16)]
    cal = math.sqrt(sum((math.log(b) - sum(map(math.log, base)) / 16) ** 2 for b in base) / 15)
    looks = Looks(most - first + 1, sigma_df=15)
    cand = [math.exp(rng.gauss(math.log1p(-slowdown), sigma)) for _ in range(first)]
    while True:
        verdict = decide(base, cand, 0.05, 0.05, cal, looks).verdict
        if verdict in DECIDED or len(cand) >= most:
            return verdict
        cand.append(math.exp(rng.gauss(math.log1p(-slowdown), sigma)))


@pytest.mark.parametrize("sigma", [0.02, 0.05])
def test_simulated_error_rates_hold(sigma: float) -> None:
    """A/A: false alarms under the stated 5% however many looks a job takes; a 15% slowdown
    caught; at 2% noise (this VM's on a calm day) nearly every A/A job decides."""
    rng = random.Random(26)
    aa = [_job(rng, sigma, 0.0) for _ in range(300)]
    slow = [_job(rng, sigma, 0.15) for _ in range(100)]
    assert aa.count("regression") / len(aa) < 0.05
    assert slow.count("regression") / len(slow) > 0.95
    if sigma <= 0.02:
        assert aa.count("not gated") / len(aa) < 0.02


# --------------------------------------------------------------------------- the job loop


def _result(model: str, ips: float, repeat: int) -> Result:
    config = dict(model=model, dataset="mnist", loader="torch", device="cpu", precision="fp32",
                  compile=False, channels_last=False, batch_size=64, recipe="fast",
                  epochs=1, max_steps=None, seed=repeat, measure="throughput")
    summary = {"images_per_s": ips, "probe_rate": 500.0, "probe_version": PROBE_VERSION,
               "images_per_probe": ips / 500.0}
    env = {"host": "h1", "cpu_model": "Test CPU", "torch_threads": 1}
    return Result(config=config, env=env, status="ok", summary=summary, repeat=repeat)


@pytest.fixture
def suite(monkeypatch, tmp_path):
    """A stand-in suite: fc steady, cnn's rounds spread by `state['cnn_spread']` around
    `state['cnn']`; records the models each call ran."""
    state = {"cnn": 1000.0, "cnn_spread": 0.01, "calls": [], "n": 0}

    def run_suite(name, *, data_dir, out_dir, device="auto", repeats=1, overrides=None,
                  batch=None, gate=False, models=None):
        state["calls"].append((repeats, models))
        out = []
        for r in range(repeats):
            state["n"] += 1
            sign = (-1) ** state["n"]
            for model, ips in (("fc", 5000.0 * (1 + 0.002 * sign)),
                               ("cnn", state["cnn"] * (1 + state["cnn_spread"] * sign))):
                if models is None or model in models:
                    res = _result(model, ips, r)
                    res.batch_id = batch
                    out.append(write_result(res, out_dir))
        return out

    monkeypatch.setitem(sys.modules, "bench.suites.policy",
                        types.SimpleNamespace(run_suite=run_suite))
    monkeypatch.setattr(ci, "ONE_PROCESS", True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return state


def run_ci(*argv: str) -> int:
    return compare.run_verb(ci.register, ["ci", "--device", "cpu", "--baseline", "b.json",
                                          *argv])


def test_a_calm_job_decides_at_its_first_look(suite, capsys) -> None:
    assert run_ci("--calibrate", "--rounds", "8") == 0
    suite["calls"].clear()
    assert run_ci("--json", "g.json") == 0
    assert suite["calls"] == [(ci.DEFAULT_REPEATS, None)]
    assert "4 round(s)" in capsys.readouterr().out


def test_an_undecided_configuration_alone_is_measured_again(suite, capsys) -> None:
    assert run_ci("--calibrate", "--rounds", "8") == 0
    suite["calls"].clear()
    suite["cnn"], suite["cnn_spread"] = 955.0, 0.06  # 4.5% slower, and noisy: undecided
    code = run_ci("--max-repeats", "7", "--json", "g.json")
    assert suite["calls"][0] == (ci.DEFAULT_REPEATS, None)
    assert suite["calls"][1:] == [(1, ("cnn",))] * 3  # up to --max-repeats, cnn only
    rows = {r["label"].split("/")[0]: r for r in json.loads(Path("g.json").read_text())["rows"]}
    assert rows["fc"]["verdict"] == "ok" and rows["fc"]["gate"]["n_cand"] == 4
    assert rows["cnn"]["gate"]["n_cand"] == 7
    assert code == (3 if rows["cnn"]["verdict"] == "not gated" else code)
    assert "7 round(s)" in capsys.readouterr().out


def test_the_time_cap_stops_further_rounds(suite, capsys) -> None:
    assert run_ci("--calibrate", "--rounds", "8") == 0
    suite["calls"].clear()
    suite["cnn"], suite["cnn_spread"] = 955.0, 0.06
    assert run_ci("--time-cap-s", "0.001") == 3
    assert suite["calls"] == [(ci.DEFAULT_REPEATS, None)]  # the first rounds always run


@pytest.mark.parametrize("flag", ["--time-cap-s=0", "--time-cap-s=inf", "--time-cap-s=x",
                                  "--max-repeats=0"])
def test_bad_caps_are_one_line(flag: str, capsys) -> None:
    assert cli.main(["ci", flag]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) <= 2


def test_suite_models_flag_is_checked(capsys) -> None:
    assert cli.main(["suite", "ci", "--models", ",,"]) == 2
    assert "model names" in capsys.readouterr().err


def test_a_suite_of_none_of_the_models_is_one_error(tmp_path: Path) -> None:
    from bench.errors import BenchError
    from bench.suites import policy

    with pytest.raises(BenchError, match="none of its configurations"):
        policy.run_suite("ci", data_dir=None, out_dir=str(tmp_path), device="cpu",
                         models=("no-such-model",))
