"""Issue 21.14: a timed window stalled far beyond the others (a SIGSTOP, a preemption, a
throttle) is a measurement fault the result names: `summary.stalled_windows`, `stall_ratio`,
`stall_note`, and a WARNING at the end of the run line. The windows are built directly, and
the end-to-end run reads a scripted clock: no sleeping, no timing in these tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.cli import main
from bench.measure import engine, summary
from bench.measure.distributed import _merge
from bench.measure.engine import (
    MIN_WINDOW_S,
    STALL_FACTOR,
    STALL_MIN_WINDOWS,
    TrainState,
    Window,
    stalled_windows,
    steady_state,
)
from bench.results import Result

CPU = torch.device("cpu")
WARM = Window(-1, 5, 5 * 64, 30.0, True)  # a slow warm-up pass: never judged, never the median


def _windows(seconds: list[float], steps: int = 10, probe: float | None = None
             ) -> list[Window]:
    return [WARM] + [Window(0, steps, steps * 64, s, False, None, probe) for s in seconds]


def _result(s: dict) -> SimpleNamespace:
    config = {"model": "cnn", "dataset": "mnist", "loader": "device", "precision": "fp32",
              "batch_size": 64}
    return SimpleNamespace(status="ok", config=config, summary=s)


def test_the_factor_is_3x_over_at_least_3_windows() -> None:
    assert (STALL_FACTOR, STALL_MIN_WINDOWS) == (3.0, 3)


def test_one_window_ten_times_slower_is_named() -> None:
    windows = _windows([1.0] * 4 + [10.0] + [1.0] * 8)  # 13 timed windows, windows[5] stalled
    s = steady_state(windows)
    assert s["stalled_windows"] == 1
    assert s["stall_ratio"] == pytest.approx(10.0)
    note = s["stall_note"]
    assert note.startswith("1 of 13 timed windows took over 3x the median time per image")
    assert "windows[5], 10 s against 1 s, 10.0x" in note and "stopped" in note
    # every window is kept: the median is the clean windows' rate, the minimum is the stall's
    assert s["images_per_s"] == pytest.approx(640.0)
    assert s["images_per_s_min"] == pytest.approx(64.0)


def test_two_stalls_are_counted_and_the_worst_is_quoted() -> None:
    s = stalled_windows(_windows([1.0] * 10 + [4.0, 7.5]))
    assert s["stalled_windows"] == 2 and s["stall_ratio"] == pytest.approx(7.5)
    assert "windows[12]" in s["stall_note"]


def test_evenly_noisy_windows_are_not_flagged() -> None:
    seconds = [0.8, 1.3, 0.9, 1.2, 1.0, 1.1, 0.85, 1.25, 0.95, 1.15, 1.05, 1.3]
    s = steady_state(_windows(seconds))
    assert (s["stalled_windows"], s["stall_ratio"], s["stall_note"]) == (0, None, None)


def test_just_under_the_factor_is_not_a_stall() -> None:
    s = stalled_windows(_windows([1.0] * 6 + [STALL_FACTOR * 0.99]))
    assert s["stalled_windows"] == 0


@pytest.mark.parametrize("seconds", [[1.0, 10.0], [1.0], []])
def test_too_few_windows_say_nothing(seconds: list[float]) -> None:
    s = stalled_windows(_windows(seconds))
    assert (s["stalled_windows"], s["stall_ratio"], s["stall_note"]) == (None, None, None)


def test_windows_too_short_to_time_are_not_a_median_to_judge_by() -> None:
    """Three 1 ms windows do not count (engine.MIN_WINDOW_S), so an 80 ms one (of 3 steps: it
    does not count either) is not judged against them (the training clock's total is the
    figure then, and says so)."""
    s = steady_state(_windows([0.001, 0.001, 0.001, 0.08], steps=3))
    assert s["images_per_s_source"].startswith("training clock total")
    assert s["stalled_windows"] is None


def test_a_short_window_is_judged_by_its_excess_time() -> None:
    """A window too short to count is still judged against the median: a stop that lands in a
    1-step window is named; the fixed costs of a short window (under MIN_WINDOW_S) are not."""
    base = [Window(0, 10, 640, 0.05, False)] * 6  # 5 ms per step
    fixed = Window(0, 1, 64, 0.005 + 0.9 * MIN_WINDOW_S, False)  # 4.6x, but 18 ms more
    stopped = Window(0, 1, 64, 8.0, False)
    assert stalled_windows([WARM, *base, fixed])["stalled_windows"] == 0
    s = stalled_windows([WARM, *base, fixed, stopped])
    assert s["stalled_windows"] == 1 and "windows[8]" in s["stall_note"]


def test_the_run_line_ends_with_the_warning() -> None:
    state = TrainState(steps=130, train_time_s=21.0, windows=_windows([1.0] * 12 + [10.0]))
    s = summary.summarise(state, 6400, None, 1, None, CPU, "fp32")
    assert s["stalled_windows"] == 1
    line = summary.run_line(_result(s), "out/r.json")
    assert line.endswith(f"-> out/r.json; WARNING: {s['stall_note']}")
    clean = summary.summarise(TrainState(steps=120, train_time_s=12.0,
                                         windows=_windows([1.0] * 12)), 6400, None, 1, None,
                              CPU, "fp32")
    assert clean["stalled_windows"] == 0 and "WARNING" not in summary.run_line(_result(clean))


def test_throughput_mode_keeps_the_flag_beside_its_estimator() -> None:
    state = TrainState(windows=_windows([1.0] * 19 + [10.0], probe=10.0))
    s = summary.summarise(state, 6400, None, 1, None, CPU, "fp32", measure="throughput")
    assert s["estimator"] and s["stalled_windows"] == 1
    assert s["images_per_s"] == pytest.approx(640.0)  # q90 of the window rates: the clean one


def _report(rank: int, seconds: list[float]) -> dict:
    windows = [[640, 1.0, True, 10]] + [[640, x, False, 10] for x in seconds]
    return {"rank": rank, "status": "ok", "message": None, "host": "h", "steps": 10 * len(seconds),
            "images_per_s": 640.0, "total_train_time_s": sum(seconds), "params_checksum": "c",
            "windows": windows}


def test_the_distributed_merge_judges_the_jobs_windows() -> None:
    """The job's window is its slowest rank's: one rank stopped stalls the job."""
    res = Result(config={"device": "cpu"}, env={}, summary=dict(steady_state(_windows([1.0] * 8))))
    assert res.summary["stalled_windows"] == 0  # rank 0's own windows
    _merge(res, {0: _report(0, [1.0] * 8), 1: _report(1, [1.0] * 3 + [9.0] + [1.0] * 4)}, [],
           2, "/nonexistent", 5.0)
    assert res.summary["stalled_windows"] == 1 and "windows[4]" in res.summary["stall_note"]


def test_bench_run_records_a_stall(tiny_data, tmp_path: Path, monkeypatch, capsys) -> None:
    """`bench run` on the CPU with the engine's clock scripted: every window lasts 0.1 s but
    the third, which a 'stop' makes 1.0 s longer. 48 steps of 16 in windows of 8: 6 windows."""
    ticks = itertools.count()
    # clock reads: the warm-up 0-1; epoch 0: windows 2-3 and 4-5, then a start (6) its loop
    # ends without using; epoch 1: the third window 7-8. The 'stop' is before read 8.
    stop_at = 8

    def scripted(device: torch.device) -> float:
        i = next(ticks)
        return 0.1 * i + (1.0 if i >= stop_at else 0.0)

    monkeypatch.setattr(engine, "now", scripted)
    out = tmp_path / "out"
    code = main(["run", "--model", "fc", "--dataset", "mnist", "--device", "cpu",
                 "--data-dir", str(tiny_data[0]), "--out", str(out), "--batch-size", "16",
                 "--epochs", "3", "--max-steps", "48", "--window-steps", "8", "--eval-every", "0",
                 "--quiet"])
    assert code == 0
    (path,) = out.glob("*.json")
    doc = json.loads(path.read_text())
    timed = [w["seconds"] for w in doc["windows"] if not w["warmup"]]
    assert timed == pytest.approx([0.1, 0.1, 1.1, 0.1, 0.1, 0.1])
    s = doc["summary"]
    assert s["stalled_windows"] == 1 and s["stall_ratio"] == pytest.approx(11.0)
    assert "windows[3]" in s["stall_note"] and doc["status"] == "ok"
    assert capsys.readouterr().out.strip().endswith(f"; WARNING: {s['stall_note']}")
