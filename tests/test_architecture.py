"""The shape of the code: a model is one file, options are declared once, readers start without
torch, no function is too complex to read."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from bench.cli import main
from bench.measure.runner import total_steps
from bench.spec.models import ModelSpec, register_model, unregister_model
from bench.spec.recipes import Recipe
from bench.spec.runspec import RunConfig, add_run_flags, recipe_overrides, recorded_options
from bench.suites import policy as suites

ROOT = Path(__file__).resolve().parent.parent


class Toy(nn.Module):
    """A model the harness has never heard of, defined here, in a test module."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(x, 1))


@pytest.fixture
def toy_model():
    spec = register_model(ModelSpec(
        name="toy", build=Toy, family="mnist", params=7_850, description="one linear layer",
        recipes={"seed": Recipe("seed", batch_size=16, lr=0.05),
                 "fast": Recipe("fast", batch_size=32, optimizer="adam", lr=0.01,
                                loader="device", eval_every=4)},
        targets={"mnist": 0.5}, datasets=("mnist",), suites=frozenset({"toy-suite"})))
    yield spec
    unregister_model("toy")


def test_a_new_model_is_one_file(toy_model, tiny_data, tmp_path: Path, monkeypatch, capsys):
    """Registered from this module alone, the model runs through `bench run` and `bench suite`
    (its suite, flags, FLOP count and default dataset all come from its spec)."""
    out = tmp_path / "run"
    assert main(["run", "--model", "toy", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--max-steps", "6", "--out", str(out), "--quiet"]) == 0
    (doc,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert doc["status"] == "ok" and doc["config"]["dataset"] == "mnist"
    assert doc["model"]["params"] == 7_850 and doc["summary"]["flops_per_image"] > 0
    assert doc["recipe"]["batch_size"] == 16

    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)  # no peak probe in tests
    assert "toy-suite" in suites.suite_names()
    suite_out = tmp_path / "suite"
    assert main(["suite", "toy-suite", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--out", str(suite_out), "--quiet"]) == 0
    assert "| toy | mnist | fast |" in capsys.readouterr().out
    (doc,) = [json.loads(p.read_text()) for p in suite_out.glob("*.json")]
    assert doc["suite"] == "toy-suite" and doc["config"]["max_steps"] == 20


def test_model_help_lists_registered_models(toy_model) -> None:
    p = argparse.ArgumentParser()
    add_run_flags(p, include=("model",))
    assert "toy" in p.format_help()


def test_run_flags_come_from_the_spec() -> None:
    """One declaration gives the flag, its default, the config field and the recorded value."""
    p = argparse.ArgumentParser()
    add_run_flags(p)
    args = p.parse_args(["--model", "fc", "--no-eval", "--warmup-steps", "3", "--lr", "0.5",
                         "--no-channels-last"])
    cfg = RunConfig.from_args(args)
    assert (cfg.evaluate, cfg.warmup_steps, cfg.lr, cfg.channels_last) == (False, 3, 0.5, False)
    assert cfg.window_steps == 50 and cfg.out == "results"
    over = recipe_overrides(cfg)
    assert over["lr"] == 0.5 and over["channels_last"] is False and over["precision"] is None
    recipe = Recipe("seed", batch_size=64, lr=0.5)
    rec = recorded_options(cfg, recipe)
    assert rec["batch_size"] == 64 and rec["warmup_steps"] == 3 and "quiet" not in rec


@pytest.mark.parametrize("argv,match", [
    (["--warmup-steps", "0"], "--warmup-steps must be >= 1"),
    (["--window-steps", "-2"], "--window-steps must be >= 1"),
    (["--max-steps", "0"], "--max-steps must be positive"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--recipe", "slow"], "unknown recipe 'slow'"),
])
def test_option_bounds_one_line(argv, match, capsys) -> None:
    assert main(["run", "--model", "fc", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_total_steps_is_epochs_capped_by_max_steps() -> None:
    recipe = Recipe("fast", batch_size=256, epochs=0.6)
    assert total_steps(recipe, 234, None) == 141
    assert total_steps(recipe, 234, 50) == 50


def test_warmup_and_window_options_shape_the_windows(tiny_data, tmp_path: Path) -> None:
    from bench.measure.runner import run

    result, _ = run(RunConfig(model="fc", device="cpu", data_dir=str(tiny_data[0]),
                              batch_size=16, max_steps=13, evaluate=False, warmup_steps=2,
                              window_steps=4, out=str(tmp_path), quiet=True))
    # the untimed warm-up pass (2 steps), then 13 training steps in windows of 4
    assert [(w["steps"], w["warmup"]) for w in result.windows] == [
        (2, True), (4, False), (4, False), (4, False), (1, False)]
    assert result.config["warmup_steps"] == 2 and result.config["window_steps"] == 4


@pytest.mark.parametrize("verb", ["compare", "report", "export"])
def test_reader_verbs_start_without_torch(verb: str) -> None:
    """`python -X importtime -m bench compare --help` shows no torch import."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bench", verb, "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "bench.cli" in imported and "torch" not in imported


def test_top_level_help_lists_every_verb(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("run", "suite", "compare", "report", "export", "ci", "peak", "sweep"):
        assert verb in out


def test_no_function_is_too_complex() -> None:
    """ruff's C901 (mccabe complexity <= 12, set in pyproject.toml) over the whole package."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([ruff, "check", "--select", "C901", "bench", "kernels",
                           "bench.data.ffcv"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
