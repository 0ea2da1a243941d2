"""`bench doctor --first-contact`: the command a first GPU window runs, dry-run on this CPU.

It must run as it is from a checkout (no install step), leave at most 8 files (what a window
returns), keep what finished when a stage fails, hangs or the deadline comes, and say in one
line what is wrong with its flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.cli import main
from bench.doctor import first_contact as fc

ROOT = Path(__file__).resolve().parent.parent


def test_the_cpu_dry_run_passes_and_leaves_at_most_8_files(tmp_path) -> None:
    """As the GPU box runs it: `python -m bench` from the checkout, PYTHONPATH only."""
    out, empty = tmp_path / "out", tmp_path / "no-data"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench", "doctor", "--first-contact",
                           "--device", "cpu", "--out", str(out), "--data-dir", str(empty)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= fc.MAX_FILES and set(files) == set(fc.OUTPUTS), files
    assert "Traceback" not in proc.stderr
    summary = (out / fc.SUMMARY).read_text()
    for stage in fc.stages():
        assert f"| {stage.name} | ok |" in summary, summary
    assert "synthetic-mnist (no mnist found)" in summary
    assert "throughput only" in summary
    doctor = json.loads((out / fc.DOCTOR_JSON).read_text())
    assert doctor["ok"] and {r["name"] for r in doctor["checks"]} >= {"device", "kernel",
                                                                       "fast:fc:eval-to-target"}
    with tarfile.open(out / fc.ARCHIVE) as tar:
        names = tar.getnames()
    assert all(not n.startswith("/") and ".." not in n for n in names)
    results = [n for n in names if n.startswith("results/") and n.endswith(".json")]
    assert len(results) == 6, names  # fc, cnn, lenet, vgg11, vgg16 fast; vgg16 seed
    assert {"versions.txt", "summary.md", "logs/doctor.log", "logs/peak.log"} <= set(names)
    assert any(n.startswith("peak/") for n in names)
    log = (out / fc.LOG).read_text()
    assert "torch" in log and "nvidia-smi" in log and "===== peak: ok" in log


def _plan_with(monkeypatch, tmp_path, stages: list[fc.Stage], cmd) -> Path:
    monkeypatch.setattr(fc, "stages", lambda: stages)
    monkeypatch.setattr(fc, "command", cmd)
    return tmp_path / "out"


def test_a_hung_stage_is_stopped_and_the_next_one_runs(monkeypatch, tmp_path) -> None:
    def cmd(plan, stage, left):
        code = "import time; time.sleep(120)" if stage.name == "hangs" else "print('fine')"
        return [sys.executable, "-c", code]

    out = _plan_with(monkeypatch, tmp_path, [fc.Stage("hangs", ("run",), 0.1, 1.0),
                                             fc.Stage("after", ("run",), 0.1, 30.0)], cmd)
    code = fc.first_contact(out, "cpu", None, deadline_s=60)
    summary = (out / fc.SUMMARY).read_text()
    assert code == 1
    assert "| hangs | timed out after 1s |" in summary and "| after | ok |" in summary


def test_the_deadline_skips_what_does_not_fit_and_exits_3(monkeypatch, tmp_path) -> None:
    out = _plan_with(monkeypatch, tmp_path, [fc.Stage("quick", ("run",), 0.1, 30.0),
                                             fc.Stage("long", ("run",), 1000.0, 2000.0)],
                     lambda plan, stage, left: [sys.executable, "-c", "print('fine')"])
    assert fc.first_contact(out, "cpu", None, deadline_s=60) == fc.EXIT_INCOMPLETE
    summary = (out / fc.SUMMARY).read_text()
    assert "| long | skipped: needs about 1000s" in summary


def test_a_failed_stage_fails_the_command_and_keeps_the_rest(monkeypatch, tmp_path) -> None:
    def cmd(plan, stage, left):
        return [sys.executable, "-c", "import sys; print('boom'); sys.exit(4)" if stage.name ==
                "bad" else "print('fine')"]

    out = _plan_with(monkeypatch, tmp_path, [fc.Stage("bad", ("run",), 0.1, 30.0),
                                             fc.Stage("good", ("run",), 0.1, 30.0)], cmd)
    assert fc.first_contact(out, "cpu", None, deadline_s=60) == 1
    summary = (out / fc.SUMMARY).read_text()
    assert "| bad | failed (exit 4) | " in summary and "| boom |" in summary
    with tarfile.open(out / fc.ARCHIVE) as tar:
        assert {"logs/bad.log", "logs/good.log"} <= set(tar.getnames())


def test_an_interruption_keeps_what_finished(monkeypatch, tmp_path) -> None:
    def cmd(plan, stage, left):
        if stage.name == "second":
            raise KeyboardInterrupt  # as SIGTERM arrives while the stage starts
        return [sys.executable, "-c", "print('fine')"]

    out = _plan_with(monkeypatch, tmp_path, [fc.Stage("first", ("run",), 0.1, 30.0),
                                             fc.Stage("second", ("run",), 0.1, 30.0)], cmd)
    with pytest.raises(KeyboardInterrupt):
        fc.first_contact(out, "cpu", None, deadline_s=60)
    assert "| first | ok |" in (out / fc.SUMMARY).read_text()
    assert (out / fc.ARCHIVE).is_file()


@pytest.mark.parametrize("argv,message", [
    (["--first-contact", "--device", "cpu"], "--first-contact needs --out DIR"),
    (["--first-contact", "--device", "cpu", "--deadline-s", "nan", "--out", "{tmp}/o"],
     "--deadline-s must be a positive number"),
    (["--first-contact", "--device", "cpu", "--out", "{tmp}/busy"], "holds 1 other file"),
    (["--device", "cpu", "--out", "{tmp}/o"], "--out is for --first-contact"),
])
def test_bad_flags_are_one_line(tmp_path, capsys, argv, message) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    code = main(["doctor", *[a.replace("{tmp}", str(tmp_path)) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_stages_get_the_device_data_and_cpu_caps(tmp_path) -> None:
    plan = fc.Plan(tmp_path, tmp_path / "w", "cpu", "/data", deadline=0.0)
    by_name = {s.name: s for s in fc.stages()}
    run = plan.argv(by_name["fc-fast-mnist"], 400.0)
    assert run[:2] == ["run", "--model"] and "--device" in run and "/data" in run
    assert "--max-steps" in run  # a CPU dry run is capped
    doctor = plan.argv(by_name["doctor"], 400.0)
    assert ["--checks", "first-contact"] == doctor[1:3]
    assert doctor[doctor.index("--budget-s") + 1] == f"{fc.DOCTOR_BUDGET_S:.0f}"
    gpu = fc.Plan(tmp_path, tmp_path / "w", "cuda", None, deadline=0.0)
    assert "--max-steps" not in gpu.argv(by_name["fc-fast-mnist"], 400.0)
    assert "--no-eval" in gpu.argv(by_name["vgg16-fast-synthetic"], 400.0)
    # the stages' estimates fit the deadline with room: docs/doctor.md explains each
    assert sum(s.estimate_s for s in fc.stages()) <= fc.DEADLINE_S


def test_relative_paths_are_the_callers(monkeypatch, tmp_path) -> None:
    """The stages run in the checkout's folder: --out and --data-dir given relative to the
    caller's folder must still mean the caller's folders."""
    seen: dict[str, object] = {}

    def fake(out, device, data_dir, deadline_s):
        seen.update(out=out, data_dir=data_dir)
        return 0

    monkeypatch.setattr(fc, "first_contact", fake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert main(["doctor", "--first-contact", "--device", "cpu", "--out", "o",
                 "--data-dir", "data"]) == 0
    assert seen == {"out": tmp_path / "o", "data_dir": str(tmp_path / "data")}
