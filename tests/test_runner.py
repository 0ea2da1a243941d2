"""End-to-end runs on tiny official-format data, and every error path a user can hit."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import runner
from bench.cli import main
from bench.results import read_result
from bench.results.suite_tables import suite_table
from bench.runner import RunConfig, run

ROOT = Path(__file__).resolve().parent.parent


def _cfg(tiny_data, tmp_path: Path, **kw) -> RunConfig:
    base = dict(model="fc", dataset="mnist", recipe="seed", device="cpu",
                data_dir=str(tiny_data[0]), out=str(tmp_path / "out"), quiet=True)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("loader", ["torch", "device"])
def test_run_writes_a_complete_result(tiny_data, tmp_path: Path, loader: str) -> None:
    result, path = run(_cfg(tiny_data, tmp_path, loader=loader, epochs=2, batch_size=32))
    assert result.status == "ok" and path is not None
    doc = read_result(path)
    s = doc["summary"]
    assert len(doc["epochs"]) == 2 and doc["epochs"][0]["steps"] == 8
    assert s["images_per_s"] > 0 and s["warmup_time_s"] > 0 and s["steps"] == 16
    assert 0 <= s["final_test_acc"] <= 1 and s["total_eval_time_s"] > 0
    assert doc["config"]["batch_size"] == 32 and doc["data"]["real"] is True
    assert doc["timed_window"]["inside"] and doc["env"]["torch_threads"] >= 1
    assert doc["windows"][0]["warmup"] and not any(w["warmup"] for w in doc["windows"][1:])
    assert s["flops_per_image"] > 0


def test_max_steps_and_eval_every(tiny_data, tmp_path: Path) -> None:
    result, _ = run(_cfg(tiny_data, tmp_path, model="lenet", dataset="cifar10", max_steps=5,
                         batch_size=16, eval_every=2, precision="bf16", channels_last=True,
                         loader="device"))
    assert result.status == "ok" and result.summary["steps"] == 5
    assert [e["step"] for e in result.evals] == [2, 4, 5]


def test_permuted_run(tiny_data, tmp_path: Path) -> None:
    result, _ = run(_cfg(tiny_data, tmp_path, model="cnn", dataset="mnist-perm", max_steps=3))
    assert result.status == "ok" and result.data["permuted"]


def test_nan_loss_is_recorded(tiny_data, tmp_path: Path) -> None:
    result, path = run(_cfg(tiny_data, tmp_path, lr=1e30, max_steps=8, batch_size=16))
    assert result.status == "nan" and "non-finite" in result.message
    assert read_result(path)["status"] == "nan"


def _raise_in_step(monkeypatch, exc: BaseException, at: int = 3) -> None:
    real = runner.make_train_step

    def patched(*a, **k):
        step = real(*a, **k)
        calls = {"n": 0}

        def wrapped(x, y):
            calls["n"] += 1
            if calls["n"] == at:
                raise exc
            return step(x, y)

        return wrapped

    monkeypatch.setattr(runner, "make_train_step", patched)


def test_out_of_memory_is_recorded(tiny_data, tmp_path, monkeypatch) -> None:
    _raise_in_step(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried..."))
    result, path = run(_cfg(tiny_data, tmp_path, batch_size=16))
    assert result.status == "oom" and read_result(path)["status"] == "oom"


def test_ctrl_c_records_completed_epochs(tiny_data, tmp_path, monkeypatch) -> None:
    # 8 steps/epoch at batch 32, after the 5 steps of the untimed warm-up pass
    _raise_in_step(monkeypatch, KeyboardInterrupt(), at=5 + 12)
    result, path = run(_cfg(tiny_data, tmp_path, batch_size=32, epochs=3))
    assert result.status == "interrupted" and len(result.epochs) == 1
    files = list((tmp_path / "out").iterdir())
    assert files == [path]  # no half-written file beside it


def test_other_errors_are_recorded(tiny_data, tmp_path, monkeypatch) -> None:
    _raise_in_step(monkeypatch, ValueError("bad shapes"))
    result, _ = run(_cfg(tiny_data, tmp_path, batch_size=16))
    assert result.status == "error" and "bad shapes" in result.message


def test_suite_goes_on_after_oom(tiny_data, tmp_path, monkeypatch) -> None:
    from bench import suites

    cfgs = [RunConfig(model="fc", dataset="mnist", max_steps=2),
            RunConfig(model="cnn", dataset="mnist", max_steps=2)]
    monkeypatch.setattr(suites, "suite_configs", lambda name, on_gpu: (cfgs, "test"))
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)
    real = runner.make_train_step
    state = {"first": True}

    def patched(*a, **k):
        step = real(*a, **k)
        if state.pop("first", False):
            def oom(x, y):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return oom
        return step

    monkeypatch.setattr(runner, "make_train_step", patched)
    paths = suites.run_suite("x", data_dir=str(tiny_data[0]), out_dir=str(tmp_path), device="cpu",
                             quiet=True)
    assert [read_result(p)["status"] for p in paths] == ["oom", "ok"]
    assert "oom" in suite_table(paths)


def test_batch_size_auto_backs_off(tiny_data, tmp_path, monkeypatch) -> None:
    from bench import autobatch

    real = autobatch.probe_step

    def probe(*a, **k):
        inner = real(*a, **k)

        def run_b(b):
            if b > 64:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            inner(b)
        return run_b

    monkeypatch.setattr(runner, "probe_step", probe)
    result, _ = run(_cfg(tiny_data, tmp_path, batch_size="auto", max_steps=2))
    assert result.config["batch_size"] == 64
    log = result.config["batch_size_search"]
    assert log[-1] == {"batch_size": 64, "ok": True} and not log[0]["ok"]


@pytest.mark.parametrize("argv,match", [
    (["--model", "resnet"], "unknown model 'resnet'; choices: fc, cnn, lenet, vgg11, vgg16"),
    (["--model", "fc", "--dataset", "imagenet"], "unknown dataset 'imagenet'; choices"),
    (["--model", "fc", "--loader", "dali"], "unknown loader 'dali'; choices: torch, device, ffcv"),
    (["--model", "fc", "--dataset", "cifar10"], "takes mnist-shaped input"),
    (["--model", "fc", "--batch-size", "0"], "--batch-size must be positive"),
    (["--model", "fc", "--epochs", "0"], "--epochs must be positive"),
    (["--model", "fc", "--epochs", "-1"], "--epochs must be positive"),
    (["--model", "fc", "--precision", "fp8"], "unknown precision"),
    (["--model", "fc", "--compile", "fast"], "unknown compile mode"),
])
def test_bad_flags_one_line(argv, match, capsys) -> None:
    assert main(["run", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_missing_data_one_line(tmp_path, capsys) -> None:
    code = main(["run", "--model", "fc", "--device", "cpu", "--data-dir",
                 str(tmp_path / "empty"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "MNIST/raw" in err and str(tmp_path / "empty") in err
    assert len(err.splitlines()) == 1


def test_cli_subprocess_no_traceback(tiny_data, tmp_path) -> None:
    """The console entry point itself: exit codes and no traceback for a NaN run."""
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--model", "fc", "--device", "cpu",
         "--data-dir", str(tiny_data[0]), "--lr", "1e30", "--max-steps", "6", "--batch-size",
         "16", "--out", str(out), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "bench: nan:" in proc.stderr
    (doc,) = [json.loads(p.read_text()) for p in out.iterdir()]
    assert doc["status"] == "nan"


def test_env_prints_fingerprint(capsys) -> None:
    assert main(["env"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["packages"]["torch"] and "cpu_model" in env


def test_suite_table_summarises_repeats(tmp_path) -> None:
    from bench.results import Result, write_result

    cfg = {"model": "fc", "dataset": "mnist", "loader": "device", "precision": "fp32",
           "compile": "none", "channels_last": False, "batch_size": 64, "recipe": "fast",
           "world_size": 1}
    paths = [write_result(Result(config=cfg, env={}, repeat=r, summary={
        "images_per_s": ips, "epoch_time_s": 60000 / ips, "final_test_acc": acc}), tmp_path)
        for r, (ips, acc) in enumerate([(100.0, 0.90), (120.0, 0.92), (110.0, 0.94)])]
    table = suite_table(paths)
    assert "| fc/mnist/device/fp32 bs64 fast | 3 | 110 (100-120) |" in table
    assert "92.00 +- 2.00" in table


def test_frequent_evaluation_keeps_warmup_out_of_steady_state(tiny_data, tmp_path) -> None:
    """The warm-up is its own untimed pass (epoch -1) before step 0; every training window,
    however short the evaluations make it, is steady state."""
    result, _ = run(_cfg(tiny_data, tmp_path, batch_size=16, max_steps=9, eval_every=2,
                         loader="device"))
    assert [(w["epoch"], w["steps"], w["warmup"]) for w in result.windows] == [
        (-1, 5, True), (0, 2, False), (0, 2, False), (0, 2, False), (0, 2, False),
        (0, 1, False)]
    assert result.summary["steady_windows"] == 5 and result.summary["steps"] == 9
    assert [e["step"] for e in result.evals] == [2, 4, 6, 8, 9]
