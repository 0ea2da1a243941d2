"""End-to-end runs on tiny official-format data, and every error path a user can hit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.measure import runner
from bench.measure.runner import RunConfig, run
from bench.results import read_result
from bench.results.suite_tables import suite_table

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
    # what work it measured: the model's module tree among the parts (results.version)
    assert len(doc["model"]["architecture"]) == 12 and doc["config"]["measure"] == "train"
    assert set(doc["benchmark"]["parts"]) == {"model", "recipe", "data", "measure"}
    # one window clock for both modes: a training run's windows carry the host's readings too
    if Path("/proc/stat").exists():
        assert all(w["host"] is not None for w in doc["windows"][1:]) and "host_load" in s


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
    from bench.suites import policy as suites

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
    from bench.measure import autobatch

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
    if hasattr(os, "sched_getaffinity"):  # the CPUs the run may use (a pinned --against pair)
        assert env["cpu_affinity"] == sorted(os.sched_getaffinity(0))


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


# ----------------------------------------------------------------------------- issue 25
def test_seed_recipes_use_the_course_loader_workers() -> None:
    """The course's CIFAR-10 loaders use num_workers=2, its MNIST ones 0; --workers wins."""
    from bench.spec.models import get_model_spec
    from bench.spec.recipes import COURSE_CIFAR10_WORKERS

    workers = {m: get_model_spec(m).recipe("seed", dev).workers
               for m in ("fc", "cnn", "lenet", "vgg11", "vgg16") for dev in ("cpu", "cuda")}
    assert COURSE_CIFAR10_WORKERS == 2
    assert workers == {"fc": 0, "cnn": 0, "lenet": 2, "vgg11": 2, "vgg16": 2}
    assert runner.recipe_for(RunConfig(model="lenet", workers=0), "cpu").workers == 0
    assert runner.recipe_for(RunConfig(model="fc", workers=3), "cuda").workers == 3


def test_cifar_seed_run_loads_with_two_workers(tiny_data, tmp_path, monkeypatch) -> None:
    """The torch loader hands the recipe's workers to its DataLoaders, and the result's
    config records them."""
    from bench.data.loaders import torch_loader

    seen: list[int] = []
    real = torch_loader.DataLoader

    def spy(*a, **k):
        seen.append(k["num_workers"])
        return real(*a, **k)

    monkeypatch.setattr(torch_loader, "DataLoader", spy)
    result, path = run(_cfg(tiny_data, tmp_path, model="lenet", dataset="cifar10",
                            max_steps=2))
    assert result.status == "ok", result.message
    doc = read_result(path)
    assert doc["config"]["workers"] == 2 and doc["loader"]["workers"] == 2
    assert seen == [2, 2]  # train and test loaders


def _suite_pairs(cfgs) -> list[tuple[str, str, str]]:
    return [(c.model, c.dataset, c.recipe) for c in cfgs]


def test_default_suite_runs_every_course_experiment() -> None:
    """Experiment 3 (vgg11, the course's "VGG16") beside the real vgg16: 7 experiments, seed
    then fast each; on a CPU both VGGs are throughput only."""
    from bench.suites import policy as suites

    gpu, _ = suites.suite_configs("default", on_gpu=True)
    cpu, _ = suites.suite_configs("default", on_gpu=False)
    experiments = [("fc", "mnist"), ("cnn", "mnist"), ("fc", "mnist-perm"),
                   ("cnn", "mnist-perm"), ("lenet", "cifar10"), ("vgg11", "cifar10"),
                   ("vgg16", "cifar10")]
    expected = [(m, d, r) for m, d in experiments for r in ("seed", "fast")]
    assert _suite_pairs(gpu) == _suite_pairs(cpu) == expected and len(gpu) == 14
    assert all(c.max_steps is None and c.evaluate for c in gpu)
    capped = {(c.model, c.recipe): (c.max_steps, c.evaluate) for c in cpu if c.max_steps}
    assert capped == {("vgg11", "seed"): (20, False), ("vgg11", "fast"): (40, False),
                      ("vgg16", "seed"): (20, False), ("vgg16", "fast"): (40, False)}


def _mnist_only(tmp_path: Path) -> Path:
    from conftest import make_mnist

    make_mnist(tmp_path / "mnist-only")
    return tmp_path / "mnist-only"


def test_default_suite_on_synthetic_cifar_is_throughput_only(tmp_path) -> None:
    """No CIFAR-10 in the data folder (a GPU box): lenet and both VGGs fall back to
    synthetic-cifar10 and are capped, unevaluated; MNIST is real and runs as the course did."""
    from bench.results.suite_tables import THROUGHPUT_ONLY_SYNTHETIC
    from bench.suites import policy as suites

    data = str(_mnist_only(tmp_path))
    cfgs, what, missing = suites.planned_configs("default", True, data)
    assert missing["mnist"] is None and "--download" in missing["cifar10"]
    runs = {(c.model, c.recipe): (c.max_steps, c.evaluate) for c in cfgs}
    steps = suites.SYNTHETIC_STEPS
    assert steps == 200
    for model in ("lenet", "vgg11", "vgg16"):
        assert runs[(model, "seed")] == runs[(model, "fast")] == (steps, False)
    assert runs[("fc", "seed")] == runs[("cnn", "fast")] == (None, True)
    assert THROUGHPUT_ONLY_SYNTHETIC in what and "vgg11" in what and "fc," not in what
    # on a CPU the heavy models keep their smaller caps; lenet gets the synthetic one
    cpu = {(c.model, c.recipe): c.max_steps for c in suites.planned_configs(
        "default", False, data)[0]}
    assert (cpu[("lenet", "seed")], cpu[("vgg11", "seed")], cpu[("vgg16", "fast")]) == (
        steps, 20, 40)


def test_synthetic_mnist_and_named_synthetic_datasets_are_capped_too() -> None:
    from bench.suites import policy as suites

    cfgs, _ = suites.suite_configs("default", True)
    none_real, _ = suites.throughput_on_synthetic("default", cfgs, "",
                                                  {"mnist": False, "cifar10": False})
    assert all(c.max_steps == suites.SYNTHETIC_STEPS and not c.evaluate for c in none_real)
    named = [RunConfig(model="lenet", dataset="synthetic-cifar10", recipe="seed")]
    (c,), _ = suites.throughput_on_synthetic("default", named, "", {"cifar10": True})
    assert (c.max_steps, c.evaluate) == (suites.SYNTHETIC_STEPS, False)
    # a suite that already measures throughput or a few steps is left as it is
    smoke, _ = suites.suite_configs("smoke", True)
    assert suites.throughput_on_synthetic("smoke", smoke, "", {"mnist": False})[0] == smoke


def test_suite_never_downloads_unasked(tmp_path, monkeypatch, capsys) -> None:
    """run_suite on a folder without CIFAR-10: no download attempt, one line saying how to
    get it, every run told not to download; with download=True one attempt, before the
    runs."""
    from test_datasets import _fake_download

    from bench.suites import policy as suites

    calls = _fake_download(monkeypatch, "cifar10", lambda root: None)
    ran: list[RunConfig] = []
    monkeypatch.setattr(suites, "_run_one", lambda name, c, dev, paths: ran.append(c) or "ok")
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)
    data = str(_mnist_only(tmp_path))
    suites.run_suite("default", data_dir=data, out_dir=str(tmp_path / "o"), device="cpu",
                     quiet=True)
    assert calls == [] and len(ran) == 14 and not any(c.download for c in ran)
    lines = [line for line in capsys.readouterr().err.splitlines() if "cifar10 not found" in line]
    assert len(lines) == 1 and "--download" in lines[0] and "synthetic-cifar10" in lines[0]
    lenet = next(c for c in ran if c.model == "lenet")
    assert (lenet.max_steps, lenet.evaluate) == (suites.SYNTHETIC_STEPS, False)
    ran.clear()
    suites.run_suite("default", data_dir=data, out_dir=str(tmp_path / "o"), device="cpu",
                     quiet=True, download=True)
    assert len(calls) == 1 and len(ran) == 14 and not any(c.download for c in ran)


def test_suite_table_marks_throughput_only_synthetic_rows() -> None:
    from bench.results import Result, validate_doc
    from bench.results.suite_tables import (
        THROUGHPUT_ONLY_SYNTHETIC,
        experiments_table,
        runs_table,
    )

    def doc(model: str, real: bool, evaluate: bool) -> dict:
        cfg = {"model": model, "dataset": "cifar10", "loader": "torch", "precision": "fp32",
               "compile": "none", "channels_last": False, "batch_size": 64, "recipe": "seed",
               "world_size": 1, "evaluate": evaluate}
        return validate_doc(Result(config=cfg, env={}, data={"real": real},
                                   summary={"images_per_s": 10.0}).to_dict(), "mem")

    docs = [doc("lenet", False, False), doc("vgg11", True, True), doc("vgg16", False, True)]
    for table in (runs_table(docs), experiments_table(docs)):
        rows = {line.split("|")[1].strip().split()[0]: line for line in table.splitlines()[2:]}
        assert THROUGHPUT_ONLY_SYNTHETIC in rows["lenet"]
        assert THROUGHPUT_ONLY_SYNTHETIC not in rows["vgg11"] + rows["vgg16"]
        assert "(synthetic)" in rows["vgg16"] and "synthetic" not in rows["vgg11"]


def _two_run_suite(monkeypatch, cfgs: list[RunConfig]) -> None:
    from bench.suites import policy as suites

    monkeypatch.setattr(suites, "suite_configs", lambda name, on_gpu: (cfgs, "test"))
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)


def _archive_members(path: Path) -> dict[str, bytes]:
    import tarfile

    with tarfile.open(path, "r:gz") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


def test_smoke_suite_archive_holds_every_result(tiny_data, tmp_path, monkeypatch) -> None:
    """`bench suite smoke --archive`: the archive opens and holds each result JSON and the
    table, byte for byte; the out folder holds nothing the archive lacks."""
    from bench.suites import policy as suites

    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)
    out, archive = tmp_path / "out", tmp_path / "smoke.tar.gz"
    code = main(["suite", "smoke", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--out", str(out), "--quiet", "--archive", str(archive)])
    assert code == 0
    members = _archive_members(archive)
    results = [n for n in members if n.endswith(".json")]
    assert len(results) == len(suites.suite_configs("smoke", False)[0]) == 3
    assert sorted(members) == sorted(p.name for p in out.iterdir())
    assert all(data == (out / name).read_bytes() for name, data in members.items())
    assert {read_result(out / n)["suite"] for n in results} == {"smoke"}


def test_suite_archive_bundles_every_file_it_wrote(tiny_data, tmp_path, monkeypatch) -> None:
    """--archive: one .tar.gz of the result files and the table, relative names, written
    atomically (no temp file left beside it); a failed run (NaN) is in it too."""
    _two_run_suite(monkeypatch, [RunConfig(model="fc", max_steps=2),
                                 RunConfig(model="fc", max_steps=2, lr=1e30)])
    out, archive = tmp_path / "out", tmp_path / "bundle" / "suite.tar.gz"
    code = main(["suite", "x", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--out", str(out), "--quiet", "--archive", str(archive)])
    assert code == 1  # the NaN run
    members = _archive_members(archive)
    written = sorted(p.name for p in out.iterdir())
    assert sorted(members) == written and len(written) == 3  # 2 results + the table
    assert "suite-x-latest.md" in members
    for name, data in members.items():
        assert not name.startswith("/") and ".." not in name
        assert data == (out / name).read_bytes()
    assert sorted(p.name for p in archive.parent.iterdir()) == ["suite.tar.gz"]


def test_stopped_suite_still_writes_its_archive(tiny_data, tmp_path, monkeypatch) -> None:
    """Ctrl-C after the first run: the archive holds that run and the table."""
    from bench.suites import policy as suites

    _two_run_suite(monkeypatch, [RunConfig(model="fc", max_steps=2),
                                 RunConfig(model="cnn", max_steps=2)])
    real, calls = suites.devmod.isolate, []

    def isolate(dev):
        calls.append(dev)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(dev)

    monkeypatch.setattr(suites.devmod, "isolate", isolate)
    out, archive = tmp_path / "out", tmp_path / "suite.tgz"
    code = main(["suite", "x", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--out", str(out), "--quiet", "--archive", str(archive)])
    assert code == 130
    members = _archive_members(archive)
    (result,) = [n for n in members if n.endswith(".json")]
    assert "-fc-" in result and sorted(members) == sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize("name, words", [("results.zip", "ending in .tar.gz or .tgz"),
                                         ("file/x.tar.gz", "is a file, not a folder")])
def test_bad_archive_is_one_line_before_any_run(tmp_path, monkeypatch, capsys, name,
                                                words) -> None:
    from bench.suites import policy as suites

    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(suites, "run_suite", lambda *a, **k: pytest.fail("suite ran"))
    code = main(["suite", "smoke", "--device", "cpu", "--archive", str(tmp_path / name)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err


def test_archive_names_a_file_from_elsewhere_relatively(tmp_path) -> None:
    from bench.suites import policy as suites

    (tmp_path / "out").mkdir()
    inside, outside = tmp_path / "out" / "a.json", tmp_path / "b.json"
    inside.write_text("1")
    outside.write_text("2")
    archive = suites.write_archive(tmp_path / "x.tar.gz", [inside, outside], tmp_path / "out")
    assert _archive_members(archive) == {"a.json": b"1", "elsewhere/b.json": b"2"}


def test_a_run_is_validated_and_its_device_resolved_once(tiny_data, tmp_path: Path,
                                                         monkeypatch) -> None:
    """`bench run --repeats 2`: the flags are checked once before any work, and each repeat
    runs on that resolved device (no second validation, no second resolution)."""
    from bench.cli import main
    from bench.host import device as devmod
    from bench.measure import runner

    calls = {"validate": 0, "resolve_device": 0}
    real_validate, real_resolve = runner.validate, devmod.resolve_device

    def counting(name, real):
        def fn(*a, **kw):
            calls[name] += 1
            return real(*a, **kw)
        return fn

    monkeypatch.setattr(runner, "validate", counting("validate", real_validate))
    monkeypatch.setattr(devmod, "resolve_device", counting("resolve_device", real_resolve))
    code = main(["run", "--model", "fc", "--device", "cpu", "--max-steps", "2", "--repeats", "2",
                 "--data-dir", str(tiny_data[0]), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0 and len(list((tmp_path / "out").glob("*.json"))) == 2
    assert calls == {"validate": 1, "resolve_device": 1}
