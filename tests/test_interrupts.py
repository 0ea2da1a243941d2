"""Stop signals, output preflight and exit codes of run/suite/compare (issue 15, the parts in
the runner, the suite and the CLI). Signals go through a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import Result, prepare_out_dir, write_result

ROOT = Path(__file__).resolve().parent.parent


def signals_as_at_a_terminal() -> None:
    """In the child: SIGHUP and SIGINT at their defaults, as under a terminal. Run under `nohup`
    the tests inherit SIGHUP ignored, and as a shell's background job SIGINT ignored; Python
    and bench rightly keep an ignored signal ignored, so the child would not stop."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group
                            preexec_fn=signals_as_at_a_terminal)


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"never saw {needle!r}")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                       (signal.SIGINT, 130)])
def test_run_stopped_by_a_signal_keeps_its_result(tiny_data, tmp_path, sig, code) -> None:
    out = tmp_path / "out"
    proc = _start(["run", "--model", "fc", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                   "--batch-size", "16", "--epochs", "100000", "--out", str(out)])
    _wait_for_line(proc, "epoch 2/")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    (doc,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert doc["status"] == "interrupted" and len(doc["epochs"]) >= 2
    assert not list(out.glob(".*.tmp"))


def test_under_nohup_sighup_is_left_ignored(tiny_data, tmp_path) -> None:
    """`nohup bench ...`: SIGHUP stays ignored, the run goes on (SIGTERM still stops it)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--model", "fc", "--device",
                             "cpu", "--data-dir", str(tiny_data[0]), "--batch-size", "16",
                             "--epochs", "100000", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    _wait_for_line(proc, "epoch 2/")
    proc.send_signal(signal.SIGHUP)
    _wait_for_line(proc, "epoch 4/")  # still training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err


def test_suite_stopped_writes_the_table_of_what_finished(tiny_data, tmp_path) -> None:
    out = tmp_path / "out"
    proc = _start(["suite", "smoke", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                   "--out", str(out), "--repeats", "50"])
    _wait_for_line(proc, "[cnn/")  # fc finished, cnn running
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "suite stopped by SIGTERM" in err
    assert "| fc |" in stdout and (out / "suite-smoke-latest.md").exists()
    statuses = [json.loads(p.read_text())["status"] for p in out.glob("2*.json")]
    assert "ok" in statuses and set(statuses) <= {"ok", "interrupted"}


def test_unwritable_out_fails_before_training(tiny_data, tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "--model", "fc", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--out", str(blocker / "sub")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is a file, not a folder" in err and len(err.splitlines()) == 1


def test_stale_temp_results_are_recovered_or_removed(tmp_path) -> None:
    done = Result(config={"model": "fc"}, env={})
    final = tmp_path / done.file_name()
    complete = tmp_path / f".{final.name}.abc123.tmp"
    complete.write_text(json.dumps(done.to_dict()))
    partial = tmp_path / ".other.json.zz9.tmp"
    partial.write_text('{"schema_ver')
    fresh = tmp_path / ".young.json.qq1.tmp"
    fresh.write_text("{")
    old = time.time() - 3600
    for p in (complete, partial):
        os.utime(p, (old, old))
    notes = prepare_out_dir(tmp_path)
    assert final.exists() and not complete.exists() and not partial.exists()
    assert fresh.exists()  # may belong to a live writer
    assert len(notes) == 2 and any("recovered" in n for n in notes)


def test_suite_exits_nonzero_when_a_run_failed(tiny_data, tmp_path, monkeypatch) -> None:
    from bench.spec.runspec import RunConfig
    from bench.suites import policy as suites

    cfgs = [RunConfig(model="fc", max_steps=2), RunConfig(model="fc", max_steps=2, lr=1e30)]
    monkeypatch.setattr(suites, "suite_configs", lambda name, on_gpu: (cfgs, "test"))
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)
    code = main(["suite", "x", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                 "--out", str(tmp_path), "--quiet"])
    assert code == 1


def test_compare_with_nothing_matched_cannot_pass(tmp_path, capsys) -> None:
    a = write_result(Result(config={"model": "fc"}, env={}, summary={"images_per_s": 1.0}),
                     tmp_path / "a")
    b = write_result(Result(config={"model": "cnn"}, env={}, summary={"images_per_s": 1.0}),
                     tmp_path / "b")
    assert main(["compare", str(a), str(b)]) == 3
    assert "nothing to gate" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be positive"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--seed", "1e23"], "invalid int value"),
    (["--workers", "100000"], "--workers must be at most 256"),
    (["--nproc", "0"], "--nproc must be positive"),
    (["--nproc", "2", "--model", "resnet"], "unknown model 'resnet'"),
])
def test_bad_numbers_one_line(argv, needle, capsys) -> None:
    base = ["run", "--device", "cpu"] + ([] if "--model" in argv else ["--model", "fc"])
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_very_short_fast_run_has_a_valid_schedule(tiny_data, tmp_path) -> None:
    """`--recipe fast --max-steps 5` used to die in OneCycleLR (division by zero)."""
    assert main(["run", "--model", "fc", "--recipe", "fast", "--device", "cpu", "--data-dir",
                 str(tiny_data[0]), "--max-steps", "5", "--out", str(tmp_path), "--quiet"]) == 0


@pytest.mark.parametrize("field, value", [("config", 5), ("env", "x"), ("summary", [1]),
                                          ("epochs", {})])
@pytest.mark.parametrize("verb", ["compare", "report", "export"])
def test_wrongly_typed_result_fields_are_one_line(tmp_path, capsys, field, value, verb) -> None:
    good = Result(config={"model": "fc"}, env={}, summary={"images_per_s": 1.0}).to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**good, field: value}))
    argv = {"compare": ["compare", str(bad), str(bad)],
            "report": ["report", str(bad), "--out", str(tmp_path / "r")],
            "export": ["export", str(bad), "--to", str(tmp_path / "x.csv")]}[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"'{field}' is a" in err and len(err.splitlines()) == 1


def test_unwritable_outputs_are_one_line(tmp_path, capsys) -> None:
    doc = write_result(Result(config={"model": "fc"}, env={}, summary={"images_per_s": 1.0}),
                       tmp_path / "r")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv in (["report", str(doc), "--out", str(blocker / "rep")],
                 ["export", str(doc), "--to", str(blocker / "x.csv")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_string_schema_version_is_named(tmp_path, capsys) -> None:
    good = Result(config={"model": "fc"}, env={}).to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**good, "schema_version": "1"}))
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "schema_version must be a whole number" in capsys.readouterr().err


def test_sweep_steps_zero_names_its_own_flag(capsys) -> None:
    assert main(["sweep", "--model", "fc", "--steps", "0", "--device", "cpu"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_suite_killed_at_random_points_loses_no_finished_run(tiny_data, tmp_path) -> None:
    """kill -9 a suite N times at random moments: every result file present is whole, and the
    next start recovers or removes what a killed writer left (nothing half-written is read)."""
    import random

    from bench.results import read_result

    rng = random.Random(7)
    out = tmp_path / "out"
    seen: set[str] = set()
    for _ in range(4):
        proc = _start(["suite", "smoke", "--device", "cpu", "--data-dir", str(tiny_data[0]),
                       "--out", str(out), "--repeats", "20", "--quiet"])
        deadline = time.monotonic() + 180  # a new result first (start-up varies with load),
        while len(list(out.glob("2*.json"))) <= len(seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 3.0))  # then a random point in a later run or its write
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        finished = sorted(out.glob("2*.json"))
        for path in finished:  # every visible result parses and is a complete document
            doc = read_result(path)
            assert doc["status"] in ("ok", "interrupted") and doc["summary"]
        assert seen <= {p.name for p in finished}  # nothing finished earlier disappeared
        seen = {p.name for p in finished}
        for tmp in out.glob(".*.tmp"):  # make them stale, as a later start would find them
            os.utime(tmp, (0, 0))
        prepare_out_dir(out)
        assert not list(out.glob(".*.json.*.tmp"))
    assert seen, "the suite never finished a run in 4 tries"
