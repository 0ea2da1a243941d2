"""Time to accuracy three ways (warm training clock, plus start-up, wall clock with evaluation),
images to target, the untimed warm-up pass that resets the run, the measured epoch time, and
the final line a run prints."""

import copy
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from bench.data.loaders import LoaderConfig, make_loader
from bench.measure import summary
from bench.measure.engine import (
    TIMED_WINDOW,
    EngineConfig,
    TrainState,
    Window,
    build_optimizer,
    build_scheduler,
    make_scaler,
    make_train_step,
    snapshot,
    train,
)
from bench.measure.progress import quiet_progress
from bench.results import read_result
from bench.results.schema import SCHEMA_VERSION, upgrade
from bench.spec.datasets import DatasetArrays
from bench.spec.recipes import BatchSize, Recipe

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent


def _loader(n: int = 64, batch: int = 8):
    rng = np.random.default_rng(0)
    data = DatasetArrays("ids", "mnist", rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                         rng.integers(0, 10, n), np.zeros((8, 28, 28, 1), np.uint8),
                         np.arange(8) % 10, [str(i) for i in range(10)], real=False,
                         source="test")
    return make_loader("device", data, LoaderConfig(split="train", batch_size=batch, device=CPU,
                                                    shuffle=True, drop_last=True, seed=1))


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(32, 10))
    recipe = Recipe("t", batch_size=8, lr=0.05, momentum=0.9, schedule="onecycle")
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe, 16)
    scaler = make_scaler(CPU, "fp32")
    step = make_train_step(model, opt, sched, CPU, "fp32", 0.0, scaler=scaler)
    return model, opt, sched, scaler, step


def _cfg(**kw) -> EngineConfig:
    base = dict(total_steps=16, eval_every=0, target_accuracy=None, stop_at_target=False,
                evaluate=False, warmup_steps=3, window_steps=4, batch=BatchSize(8))
    base.update(kw)
    return EngineConfig(**base)


def test_the_warm_up_pass_is_untimed_and_resets_the_run() -> None:
    """Training after the warm-up pass ends exactly where training without one ends: weights,
    momentum, schedule and dropout's RNG were all put back."""
    model, opt, sched, scaler, step = _setup()
    cold = train(step, model, _loader(), None, CPU, "fp32", _cfg(), TrainState(),
                 quiet_progress())
    expected = copy.deepcopy(model.state_dict())

    model, opt, sched, scaler, step = _setup()
    state = train(step, model, _loader(), None, CPU, "fp32", _cfg(), TrainState(),
                  quiet_progress(), reset=snapshot(model, opt, sched, scaler))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0)
    assert state.steps == cold.steps == 16 and sched.last_epoch == 16
    warm = state.windows[0]
    assert (warm.epoch, warm.steps, warm.warmup) == (-1, 3, True) and state.warmup_time_s > 0
    assert not any(w.warmup for w in state.windows[1:])
    assert state.train_time_s == pytest.approx(sum(w.seconds for w in state.windows[1:]))


def test_time_to_accuracy_three_ways_and_images_to_target() -> None:
    model, opt, sched, scaler, step = _setup()
    accs = iter([0.2, 0.7, 0.9])

    def evaluate() -> tuple[float, float]:
        time.sleep(0.05)  # evaluation: off the training clock, on the wall clock
        return 1.0, next(accs)

    cfg = _cfg(eval_every=2, target_accuracy=0.6, stop_at_target=True, evaluate=True)
    state = train(step, model, _loader(), None, CPU, "fp32", cfg, TrainState(),
                  quiet_progress(), evaluate_fn=evaluate, reset=snapshot(model, opt, sched,
                                                                         scaler))
    assert state.steps == state.steps_to_accuracy == 4  # stopped at the target
    assert state.time_to_accuracy_s == state.evals[1]["train_time_s"] == state.train_time_s
    assert state.time_to_accuracy_wall_s >= state.time_to_accuracy_s + 0.1  # two evaluations
    s = summary.summarise(state, 64, None, 1, 0.6, CPU, "fp32", images_per_step=16,
                          wall_time_s=9.0)
    assert s["time_to_accuracy_cold_s"] == pytest.approx(state.time_to_accuracy_s
                                                         + state.warmup_time_s)
    assert s["images_to_accuracy"] == 4 * 16 and s["wall_time_s"] == 9.0
    for key in ("time_to_accuracy", "time_to_accuracy_cold", "time_to_accuracy_wall",
                "images_to_accuracy"):
        assert f"{key}_s" in TIMED_WINDOW[key] or key in TIMED_WINDOW[key]


def _state(epoch_steps: list[int], complete: int) -> TrainState:
    st = TrainState(steps=sum(epoch_steps), train_time_s=float(len(epoch_steps)))
    st.windows = [Window(-1, 2, 16, 0.5, True)] + [Window(i, n, n * 8, 1.0, False)
                                                    for i, n in enumerate(epoch_steps)]
    st.epochs = [dict(epoch=i, steps=n, images=n * 8, train_time_s=1.0 + i,
                      timed=n == complete) for i, n in enumerate(epoch_steps)]
    return st


def test_epoch_time_is_measured_or_named_an_extrapolation() -> None:
    s = summary.summarise(_state([8, 8, 8], 8), 64, None, 1, None, CPU, "fp32")
    assert s["epoch_time_s"] == 2.0 and s["epoch_time_extrapolated_s"] is None
    assert s["epoch_time_source"].startswith("measured")
    short = summary.summarise(_state([3], 8), 64, None, 1, None, CPU, "fp32")
    assert short["epoch_time_s"] is None
    assert short["epoch_time_extrapolated_s"] == pytest.approx(64 / 24.0)
    assert short["epoch_time_source"].startswith("extrapolated")


def _result(**summ) -> SimpleNamespace:
    config = {"model": "cnn", "dataset": "mnist", "loader": "device", "precision": "bf16",
              "batch_size": 64}
    base = dict(images_per_s=12345.0, final_test_acc=0.981, best_test_acc=0.981,
                target_accuracy=0.98, wall_time_s=20.0, total_train_time_s=12.3,
                total_eval_time_s=1.2, warmup_time_s=0.8, mfu=0.3, achieved_tflops=1.0)
    return SimpleNamespace(status="ok", config=config, summary={**base, **summ})


def test_the_final_line_names_the_target_the_clocks_and_the_rate() -> None:
    line = summary.run_line(_result(time_to_accuracy_s=12.3, time_to_accuracy_cold_s=13.1,
                                    time_to_accuracy_wall_s=14.0, images_to_accuracy=61440),
                            "results/x.json")
    assert line.startswith("ok: cnn/mnist/device/bf16 bs=64: 12,345 img/s (median of timed "
                           "windows; epoch lines show epoch means)")
    assert "target 98.0% reached in 12.3 s training clock after warm-up (13.1 s with " \
           "start-up, 14.0 s wall incl. eval, 61,440 images)" in line
    assert "wall 20.0 s, train 12.3 s, eval 1.20 s, warm-up 0.80 s -> results/x.json" in line
    assert "\n" not in line
    missed = summary.run_line(_result(time_to_accuracy_s=None, best_test_acc=0.971))
    assert "target 98.0% not reached, best 97.1%" in missed
    assert summary.hints(_result()) == []


def test_hints_point_to_bench_peak_when_mfu_is_unknown() -> None:
    (hint,) = summary.hints(_result(mfu=None))
    assert "bench peak" in hint
    extrapolated = summary.hints(_result(epoch_time_s=None, epoch_time_extrapolated_s=3.0))
    assert any("extrapolated" in h for h in extrapolated)


def test_old_results_read_their_time_to_target_as_the_cold_figure(tmp_path: Path) -> None:
    """Schema 1 counted the warm-up window in the training clock: its figure is the cold one."""
    assert SCHEMA_VERSION == 2
    old = {"schema_version": 1, "config": {"batch_size": 64, "loader": "gpu"},
           "summary": {"time_to_accuracy_s": 11.4, "steps_to_accuracy": 300}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**old, "created": "2026-01-01"}))  # every result has a date
    s = read_result(path)["summary"]
    assert s["time_to_accuracy_cold_s"] == 11.4 and s["time_to_accuracy_s"] is None
    assert s["images_to_accuracy"] == 300 * 64
    new = {"schema_version": 2, "summary": {"time_to_accuracy_s": 1.0}}
    assert upgrade(new) is new
    for ref in (ROOT / "results" / "reference").rglob("*.json"):  # the repo's own old files
        doc = read_result(ref)
        assert "time_to_accuracy_cold_s" in doc["summary"]
        assert summary.run_line(SimpleNamespace(status=doc["status"], config=doc["config"],
                                                summary=doc["summary"])).startswith("ok: ")
