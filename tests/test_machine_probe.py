"""The machine probe: a fixed workload timed between throughput windows, so a stored baseline
can tell the machine's drift between jobs from a slowdown of the code."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from bench.ci import job as ci
from bench.gate import compare
from bench.gate.stats import gate
from bench.measure.probe import PROBE_VERSION, ReferenceProbe
from bench.results import Result, write_result
from bench.spec.runspec import RunConfig


def test_probe_sizes_its_window_and_reports_a_rate() -> None:
    probe = ReferenceProbe(torch.device("cpu"))
    probe.calibrate(0.02)
    assert probe.iterations >= 1
    rates = [probe.window() for _ in range(3)]
    assert all(r > 0 for r in rates)


def test_throughput_run_records_the_probe(tiny_data, tmp_path: Path) -> None:
    from bench.measure.runner import run

    result, _ = run(RunConfig(model="fc", device="cpu", data_dir=str(tiny_data[0]),
                              recipe="fast", measure="throughput", budget_s=0.3,
                              write=False, quiet=True))
    s = result.summary
    assert s["probe_version"] == PROBE_VERSION and s["probe_rate"] > 0
    assert s["images_per_probe"] == pytest.approx(s["images_per_s"] / s["probe_rate"])


def test_slowdown_knob_leaves_the_probe_alone(tiny_data, monkeypatch) -> None:
    """The knob pads training steps only, so images/probe falls with images/s. One thread, as
    ci runs on a CPU: with an OpenMP pool, the busy pad lets the workers fall asleep and the
    probe then pays their wake-up (seen: a 40% slower probe on 2 threads)."""
    from bench.measure.runner import run

    def measure() -> dict:
        result, _ = run(RunConfig(model="fc", device="cpu", data_dir=str(tiny_data[0]),
                                  batch_size=16, measure="throughput", budget_s=0.4,
                                  threads=1, write=False, quiet=True))
        return result.summary

    fast = measure()
    monkeypatch.setenv("BENCH_TEST_SLOWDOWN", "1.0")
    slow = measure()
    assert slow["images_per_probe"] < fast["images_per_probe"] * 0.75


def test_zero_calibrated_noise_does_not_divide_by_zero() -> None:
    g = gate([100.0] * 4, [90.0] * 4, threshold=0.05, alpha=0.05, sigma=0.0)
    assert g.verdict == "regression"


# --------------------------------------------------------------------------- the stored gate


def _result(model: str, ips: float, probe: float | None, repeat: int) -> Result:
    config = dict(model=model, dataset="mnist", loader="torch", device="cpu", precision="fp32",
                  compile=False, channels_last=False, batch_size=64, recipe="fast",
                  epochs=1, max_steps=None, seed=repeat, measure="throughput")
    summary: dict = {"images_per_s": ips}
    if probe is not None:
        summary.update(probe_rate=probe, probe_version=PROBE_VERSION,
                       images_per_probe=ips / probe)
    env = {"host": "h1", "cpu_model": "Test CPU", "torch_threads": 1}
    return Result(config=config, env=env, status="ok", summary=summary, repeat=repeat)


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A stand-in suite on a machine whose speed (`state['speed']`) drifts between jobs and
    whose code may be slower (`state['code']`); runs within a job differ by +-1%."""
    state = {"speed": 1.0, "code": 1.0, "probe": True}

    def run_suite(name, *, data_dir, out_dir, device="auto", repeats=1, overrides=None, **kw):
        out = []
        for r in range(repeats):
            jitter = 1 + 0.01 * ((-1) ** r)
            probe_jitter = 1 - 0.003 * ((-1) ** r)
            for model, ips in (("fc", 5000.0), ("cnn", 1000.0)):
                speed = state["speed"] * jitter
                res = _result(model, ips * speed * state["code"],
                              500.0 * state["speed"] * probe_jitter if state["probe"] else None,
                              r)
                out.append(write_result(res, out_dir))
        return out

    monkeypatch.setitem(sys.modules, "bench.suites.policy",
                        types.SimpleNamespace(run_suite=run_suite))
    monkeypatch.setattr(ci, "ONE_PROCESS", True)  # the stand-in suite runs in-process
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return state


def run_ci(*argv: str) -> int:
    return compare.run_verb(ci.register, ["ci", "--device", "cpu", "--baseline", "b.json",
                                          *argv])


def test_calibration_stores_both_noises(machine) -> None:
    assert run_ci("--calibrate", "--rounds", "6") == 0
    cal = json.loads(Path("b.json").read_text())["calibration"]
    assert cal["metric"] == "images_per_probe"
    row = cal["configs"][0]
    assert set(row["sigmas"]) == {"images_per_probe", "images_per_s"}
    assert row["sigma"] == row["sigmas"]["images_per_probe"]


def test_probe_cancels_the_machines_drift(machine) -> None:
    assert run_ci("--calibrate", "--rounds", "6") == 0
    machine["speed"] = 0.92  # the whole machine 8% slower in this job, same code
    assert run_ci("--json", "g.json") == 0
    doc = json.loads(Path("g.json").read_text())
    assert doc["metric"] == "images_per_probe"
    assert all(0.97 < r["ips_ratio"] < 1.03 for r in doc["rows"])


def test_without_the_probe_the_drift_is_a_false_alarm(machine) -> None:
    machine["probe"] = False
    assert run_ci("--calibrate", "--rounds", "6") == 0
    machine["speed"] = 0.92
    assert run_ci() == 1


def test_probe_keeps_a_slowdown_of_the_code(machine) -> None:
    assert run_ci("--calibrate", "--rounds", "6") == 0
    machine["code"] = 1 / 1.1
    assert run_ci() == 1


def test_mixed_probe_versions_fall_back_to_images_per_s() -> None:
    a = _result("fc", 5000, 500, 0).to_dict()
    b = _result("fc", 5000, 500, 1).to_dict()
    assert ci.gate_metric([a], [b]) == "images_per_probe"
    b["summary"]["probe_version"] = PROBE_VERSION + 1
    assert ci.gate_metric([a], [b]) == "images_per_s"
    c = _result("fc", 5000, None, 2).to_dict()
    assert ci.gate_metric([a], [c]) == "images_per_s"


def test_old_calibration_gates_images_per_s_only() -> None:
    old = {"configs": [{"key": ["fc"], "sigma": 0.02}]}  # before the probe: no metric, sigmas
    assert ci.noise_table(old, "images_per_s") == {("fc",): 0.02}
    assert ci.noise_table(old, "images_per_probe") == {}
