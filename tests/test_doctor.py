"""`bench doctor`: every outcome of a check is a row (an exception, a timeout, a hang, a skip),
any failure exits non-zero without a traceback, and the CPU subset passes on this machine."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bench.cli import main
from bench.doctor import verb as doctor
from bench.doctor.checks import check_nvml, check_peak, check_result, checks, model_matrix
from bench.doctor.verb import Check, Context, Fail, Skip, run_check, run_checks
from bench.host import device as devmod
from bench.spec.models import MODELS


def _ctx(tmp_path: Path, device: str = "cpu") -> Context:
    return Context(device, tmp_path, device=torch.device(device))


def _boom(ctx: Context) -> str:
    raise ValueError("the thing broke\nsecond line not shown")


def _slow(ctx: Context) -> str:
    time.sleep(30)
    return "never"


def _skipped(ctx: Context) -> str:
    raise Skip("not here, because")


def _fine(ctx: Context) -> str:
    return "all good"


def _exits(ctx: Context) -> str:
    raise SystemExit(3)


def test_exceptions_and_timeouts_are_fail_rows_not_tracebacks(monkeypatch, tmp_path, capsys
                                                              ) -> None:
    fake = [Check("boom", _boom, needs_device=False), Check("slow", _slow, 0.3,
                                                            needs_device=False),
            Check("exits", _exits, needs_device=False),
            Check("skipped", _skipped, needs_device=False), Check("fine", _fine,
                                                                  needs_device=False)]
    monkeypatch.setattr(doctor, "all_checks", lambda ctx, subset="all": fake)
    out = tmp_path / "doctor.json"
    start = time.monotonic()
    code = main(["doctor", "--device", "cpu", "--json", str(out)])
    assert code == 1 and time.monotonic() - start < 20  # the slow check was stopped
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "2 passed" not in captured.out and "1 passed, 3 failed, 1 skipped" in captured.out
    assert "bench: doctor: 3 check(s) failed: boom, slow, exits" in captured.err
    doc = json.loads(out.read_text())
    rows = {r["name"]: r for r in doc["checks"]}
    assert rows["boom"] == {**rows["boom"], "status": "fail",
                            "message": "ValueError: the thing broke"}
    assert rows["slow"]["status"] == "fail" and rows["slow"]["message"] == "timed out after 0.3s"
    assert rows["exits"]["status"] == "fail" and rows["exits"]["message"] == "SystemExit: 3"
    assert rows["skipped"]["status"] == "skip" and rows["skipped"]["message"] == "not here, because"
    assert rows["fine"]["status"] == "pass" and rows["fine"]["message"] == "all good"
    assert doc["ok"] is False and doc["counts"] == {"pass": 1, "fail": 3, "skip": 1}


def test_all_passing_exits_zero(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(doctor, "all_checks", lambda ctx, subset="all": [Check("fine", _fine,
                                                                 needs_device=False)])
    assert main(["doctor", "--device", "cpu", "--quiet"]) == 0


def test_a_check_stuck_past_its_timeout_stops_the_doctor(monkeypatch, tmp_path) -> None:
    """A check that its alarm cannot stop (here: one that swallows it) is reported hung, with
    the rows before it, by the watchdog."""

    def stubborn(ctx: Context) -> str:
        try:
            time.sleep(5)
        except BaseException:
            time.sleep(1.5)
        return "late"

    monkeypatch.setattr(doctor, "HANG_GRACE_S", 0.3)
    seen: list[list[doctor.Row]] = []
    rows = run_checks([Check("fine", _fine, needs_device=False),
                       Check("stuck", stubborn, 0.2, needs_device=False)],
                      _ctx(tmp_path), on_hang=seen.append)
    assert [r.name for r in seen[0]] == ["fine", "stuck"]
    assert seen[0][1].status == "fail" and seen[0][1].message.startswith("hung for 0.5s")
    assert len(rows) == 2  # (in `bench doctor` the watchdog exits; here the check came back)


def test_past_the_budget_budgeted_checks_are_skipped(tmp_path) -> None:
    rows = run_checks([Check("essential", _fine, budgeted=False),
                       Check("extra", _fine)], _ctx(tmp_path), budget_s=-1)
    assert [(r.name, r.status) for r in rows] == [("essential", "pass"), ("extra", "skip")]
    assert rows[1].message.startswith("not started: needs about 5s, 0s of the time budget left")


def test_a_check_whose_estimate_does_not_fit_is_not_started(tmp_path) -> None:
    """The budget is a bound: a check that cannot finish in what is left never starts (a 240 s
    check does not start at 239 s), and the cheaper ones after it still run."""
    ran: list[str] = []

    def note(name: str) -> Any:
        return lambda ctx: ran.append(name) or "ok"

    rows = run_checks([Check("big", note("big"), 600.0, estimate_s=100.0),
                       Check("small", note("small"), 600.0, estimate_s=1.0)],
                      _ctx(tmp_path), budget_s=30.0)
    assert ran == ["small"]
    assert rows[0].status == "skip" and "needs about 100s" in rows[0].message


def test_a_started_check_runs_under_what_is_left_of_the_budget(tmp_path) -> None:
    start = time.monotonic()
    rows = run_checks([Check("slow", _slow, 600.0, estimate_s=0.1)], _ctx(tmp_path),
                      budget_s=0.5)
    assert time.monotonic() - start < 10
    # cut short by the budget, not by its own timeout: left out (exit 3), not failed (exit 1)
    assert rows[0].status == "skip" and rows[0].message.startswith("stopped at the time budget")
    assert "its own timeout is 600s" in rows[0].message
    assert doctor.budget_skips(rows) == ["slow"]


def test_checks_the_budget_left_out_are_named_and_exit_3(monkeypatch, tmp_path, capsys
                                                         ) -> None:
    monkeypatch.setattr(doctor, "all_checks", lambda ctx, subset="all": [
        Check("fine", _fine, needs_device=False),
        Check("huge", _fine, needs_device=False, estimate_s=1e6),
        Check("gpu-only", _fine, needs_cuda=True, needs_device=False)])
    out = tmp_path / "d.json"
    code = main(["doctor", "--device", "cpu", "--json", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == doctor.EXIT_INCOMPLETE == 3
    last = captured.out.strip().splitlines()[-1]
    assert last == "skipped: huge (time budget); gpu-only (needs CUDA)", last
    assert "incomplete: 1 check(s) did not fit the time budget: huge" in captured.err
    doc = json.loads(out.read_text())
    assert doc["ok"] is True and doc["complete"] is False


def test_cuda_checks_skip_on_a_cpu_and_everything_skips_without_a_device(tmp_path) -> None:
    assert run_check(Check("gpu", _fine, needs_cuda=True), _ctx(tmp_path)).message == \
        "needs CUDA"
    ctx = Context("cuda", tmp_path)
    row = run_check(Check("x", _fine), ctx)
    assert (row.status, row.message) == ("skip", "no usable device (see the device check)")


def test_a_bad_device_name_is_one_error_line(capsys) -> None:
    assert main(["doctor", "--device", "gpu0"]) == 2
    assert capsys.readouterr().err == ("bench: error: unknown device 'gpu0'; choices: auto, "
                                       "cpu, cuda, cuda:N\n")


def test_cuda_without_cuda_is_one_failed_device_row(tmp_path, capsys) -> None:
    out = tmp_path / "d.json"
    assert main(["doctor", "--device", "cuda", "--json", str(out), "--quiet"]) == 1
    doc = json.loads(out.read_text())
    first, rest = doc["checks"][0], doc["checks"][1:]
    assert first["name"] == "device" and first["status"] == "fail"
    assert "no CUDA device is available here" in first["message"]
    assert rest and all(r["status"] == "skip" and r["message"].startswith("no usable device")
                        for r in rest)
    assert "Traceback" not in capsys.readouterr().err


def test_a_gpu_torch_cannot_use_fails_even_the_cpu_doctor(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 535.104.05\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(devmod, "NVIDIA_SMI", "nvidia-smi")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ctx = Context("cpu", tmp_path)
    row = run_check(checks(ctx)[0], ctx)
    assert row.status == "fail" and "driver 535.104.05" in row.message
    assert ctx.device == torch.device("cpu")  # the other checks still run on the CPU


def test_the_gpu_plan_covers_the_matrix(tmp_path) -> None:
    names = [c.name for c in checks(Context("cuda", tmp_path))]
    for must in ("device", "toolchain", "nvml", "peak", "kernel", "cuda:N", "loader:torch",
                 "loader:device", "loader:ffcv", "batch-size-auto", "ddp",
                 "fast:fc:eval-to-target"):
        assert must in names
    matrix = {c.name for c in model_matrix(gpu=True, full=False)}
    assert matrix == {f"model:{m}:{c}:{p}" for m in MODELS
                      for c in ("eager", "default", "reduce-overhead")
                      for p in ("bf16", "fp16", "fp32")}
    assert all(c.needs_cuda for c in model_matrix(gpu=True, full=False))
    assert len(names) == len(set(names))


def test_the_gpu_plan_is_gpu_first(tmp_path) -> None:
    """Right after the machine checks: every compile mode x precision (fp16 with GradScaler
    included) of the small model, the fast recipe with evaluation (it reuses the small model's
    compilation), then the conv-heavy model's; the paths and the rest of the matrix come after,
    where a budget may cut."""
    names = [c.name for c in checks(Context("cuda", tmp_path))]
    machine = ["device", "toolchain", "nvml", "peak", "kernel"]

    def every(m: str) -> set[str]:
        return {f"model:{m}:{c}:{p}" for c in ("eager", "reduce-overhead", "default")
                for p in ("bf16", "fp16", "fp32")}

    assert names[:5] == machine
    assert set(names[5:14]) == every("fc") and names[14] == "fast:fc:eval-to-target"
    assert set(names[15:24]) == every("vgg11")
    rest = [n for n in names[24:] if n.startswith("model:")]
    kinds = [n.split(":")[2] for n in rest]
    assert kinds.index("reduce-overhead") > max(i for i, k in enumerate(kinds) if k == "eager")
    sub = [c.name for c in doctor.all_checks(Context("cuda", tmp_path), "first-contact")]
    assert sub == names[:24]
    # compiled rows of the conv-heavy model are budgeted at their (larger) cost
    est = {c.name: c.estimate_s for c in checks(Context("cuda", tmp_path))}
    assert (est["model:vgg11:default:fp32"] > est["model:fc:default:fp32"]
            > est["model:fc:eager:fp32"])


def _result(**over: Any) -> SimpleNamespace:
    base = dict(status="ok", message=None, config={"device": "cpu", "precision": "fp32"},
                env={"cpu_model": "Some CPU", "gpus": []},
                summary={"images_per_s": 1000.0, "steps": 4, "mfu": 0.2, "mfu_vendor": None})
    return SimpleNamespace(**{**base, **over})


def test_every_result_is_checked(tmp_path) -> None:
    ctx, cpu = _ctx(tmp_path), torch.device("cpu")
    assert "1,000 img/s" in check_result(_result(), ctx, cpu, {"precision": "fp32"})
    cases = [
        (_result(status="oom", message="out of memory at batch size 512"),
         {}, "status oom: out of memory at batch size 512"),
        (_result(), {"precision": "bf16"}, "'precision': ('fp32', 'bf16')"),
        (_result(env={"gpus": []}), {}, "names no CPU model"),
        (_result(config={"max_steps": 6}, summary={"steps": 4}), {}, "4 steps done, 6 asked"),
        (_result(summary={"images_per_s": 0.0}), {}, "images/s is 0.0"),
        (_result(summary={"images_per_s": 5.0, "mfu": 1.7}), {}, "mfu 1.7 is outside (0, 1)"),
        (_result(summary={"images_per_s": 5.0, "mfu_vendor": 0.0}), {}, "mfu_vendor 0.0"),
    ]
    for result, expect, message in cases:
        with pytest.raises(Fail) as info:
            check_result(result, ctx, cpu, expect)
        assert message in str(info.value)


def test_an_mfu_above_100_percent_is_explained_not_failed(tmp_path) -> None:
    """fp32 VGG with cudnn.benchmark may pick Winograd/FFT (fewer real FLOPs than counted): the
    run stores no figure and a note; the doctor passes it with the note, never a figure."""
    note = "mfu above 100% of the measured peak (1.04x): Winograd/FFT"
    line = check_result(_result(summary={"images_per_s": 9.0, "steps": 4, "mfu": None,
                                         "mfu_vendor": 0.4, "mfu_note": note}),
                        _ctx(tmp_path), torch.device("cpu"), {})
    assert "mfu n/a" in line and note in line and "mfu_vendor 40.00%" in line
    assert "104" not in line.replace("1.04x", "")


@pytest.mark.parametrize("scale,ok,bad", [
    ({}, True, None), ({"bf16": 0.1}, False, "bf16"), ({"bf16": 1.6}, False, "bf16"),
    ({"tf32": 0.1}, False, "tf32"), ({"fp16": 1.6}, False, "fp16")])
def test_the_measured_peak_must_lie_near_the_vendor_figure(monkeypatch, tmp_path, scale, ok,
                                                           bad) -> None:
    """Every tensor-core precision has a band: tf32 and fp16 as well as bf16."""
    import bench.measure.peak

    good = {"fp32": 50e12, "tf32": 350e12, "bf16": 700e12, "fp16": 700e12}
    probes = {p: {"matmul": v * scale.get(p, 1.0), "conv1x1": v * scale.get(p, 1.0) / 2}
              for p, v in good.items()}
    monkeypatch.setattr(bench.measure.peak, "measure_peak", lambda dev, quick: {"probes": probes})
    monkeypatch.setattr(devmod, "gpu_name", lambda dev: "NVIDIA H100 80GB HBM3")
    ctx = _ctx(tmp_path, "cuda")
    if ok:
        line = check_peak(ctx)
        assert "H100 SXM datasheet" in line and "bf16 700 of 990 (71%)" in line
        assert "tf32 350 of 494 (71%)" in line and "fp16 700 of 990" in line
    else:
        with pytest.raises(Fail, match=f"{bad} outside the plausible 25%-105%"):
            check_peak(ctx)


def test_the_nvml_check_fails_with_the_reason(monkeypatch, tmp_path) -> None:
    import bench.host.nvml

    monkeypatch.setattr(bench.host.nvml, "open_telemetry",
                        lambda dev: bench.host.nvml.Telemetry(reason="pynvml not installed"))
    with pytest.raises(Fail, match="no NVML telemetry: pynvml not installed"):
        check_nvml(_ctx(tmp_path, "cuda"))


def test_the_cpu_doctor_passes(tmp_path, capsys) -> None:
    """`bench doctor --device cpu` as `make test` runs it: every CPU check passes (GPU ones
    skip with 'needs CUDA'), the table is printed and the JSON written."""
    out = tmp_path / "doctor.json"
    code = main(["doctor", "--device", "cpu", "--json", str(out), "--quiet"])
    table = capsys.readouterr().out
    doc = json.loads(out.read_text())
    failed = [r for r in doc["checks"] if r["status"] == "fail"]
    assert code == 0 and not failed, failed
    rows = {r["name"]: r for r in doc["checks"]}
    assert rows["nvml"]["message"] == rows["kernel"]["message"] == "needs CUDA"
    assert all(rows[f"model:{m}:eager:fp32"]["status"] == "pass" for m in MODELS)
    assert rows["loader:torch"]["status"] == rows["loader:device"]["status"] == "pass"
    assert rows["fast:fc:eval-to-target"]["status"] == "pass"
    assert "evaluations" in rows["fast:fc:eval-to-target"]["message"]
    assert doc["resolved_device"] == "cpu" and "model:vgg16:eager:fp32" in table
    assert doc["complete"] is True


def test_only_keeps_the_device_check(tmp_path) -> None:
    out = tmp_path / "d.json"
    assert main(["doctor", "--device", "cpu", "--only", "toolchain", "--json", str(out),
                 "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert [(r["name"], r["status"]) for r in doc["checks"]] == [("device", "pass"),
                                                                 ("toolchain", "pass")]


def test_an_interruption_still_writes_the_table(monkeypatch, tmp_path, capsys) -> None:
    def interrupted(ctx: Context) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor, "all_checks", lambda ctx, subset="all": [
        Check("fine", _fine, needs_device=False), Check("stop", interrupted, needs_device=False),
        Check("never", _fine, needs_device=False)])
    out = tmp_path / "d.json"
    code = main(["doctor", "--device", "cpu", "--json", str(out), "--quiet"])
    assert code == 130 and "bench: stopped by" in capsys.readouterr().err
    rows = json.loads(out.read_text())["checks"]
    assert [(r["name"], r["status"]) for r in rows] == [("fine", "pass"), ("stop", "fail")]


HUNG_SCRIPT = """
import sys, time
from bench.doctor import verb as doctor
from bench.cli import main

def stubborn(ctx):
    while True:  # swallows its alarm, as a call stuck in a driver would not return
        try:
            time.sleep(60)
        except BaseException:
            pass

doctor.HANG_GRACE_S = 0.5
doctor.all_checks = lambda ctx, subset="all": [
    doctor.Check("fine", lambda ctx: "ok", needs_device=False),
    doctor.Check("stuck", stubborn, 0.3, needs_device=False)]
sys.exit(main(["doctor", "--device", "cpu", "--quiet", "--json", sys.argv[1]]))
"""


def test_a_hung_check_ends_the_doctor_with_the_table(tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "d.json"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", HUNG_SCRIPT, str(out)], capture_output=True,
                          text=True, timeout=60, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 1, proc.stderr
    assert "stuck" in proc.stdout and "hung for 0.8s" in proc.stdout
    assert "Traceback" not in proc.stderr
    rows = json.loads(out.read_text())["checks"]
    assert [(r["name"], r["status"]) for r in rows] == [("fine", "pass"), ("stuck", "fail")]


SIGNAL_SCRIPT = """
import os, signal, sys
from bench.doctor import verb as doctor
from bench.doctor import checks as doctor_checks
from bench.cli import main

import bench.measure.engine
start_training = bench.measure.engine._Trainer.run

def signalled_run(self):
    os.kill(os.getpid(), signal.SIGTERM)  # arrives inside the training loop, which records it
    return start_training(self)

bench.measure.engine._Trainer.run = signalled_run

def train_then_signal(ctx):
    return doctor_checks.train_run(ctx, "fc", max_steps=100000, warmup_steps=1,
                                   window_steps=50, batch_size=8)

doctor.all_checks = lambda ctx, subset="all": [
    doctor.Check("device", doctor_checks.check_device, 30, needs_device=False),
    doctor.Check("long", train_then_signal, 60),
    doctor.Check("never", lambda ctx: open(sys.argv[2], "w").write("ran") and "ran", 60)]
sys.exit(main(["doctor", "--device", "cpu", "--quiet", "--json", sys.argv[1]]))
"""


def test_a_signal_during_a_training_check_stops_the_doctor_at_once(tmp_path) -> None:
    """SIGTERM while a check trains: the runner records its run `interrupted`; the doctor must
    stop there (143), not fail the row and run the remaining checks."""
    import subprocess
    import sys

    out, marker = tmp_path / "d.json", tmp_path / "never-ran"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, str(out), str(marker)],
                          capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "bench: stopped by SIGTERM" in proc.stderr
    assert not marker.exists()
    rows = json.loads(out.read_text())["checks"]
    assert [(r["name"], r["status"]) for r in rows] == [("device", "pass"), ("long", "fail")]
    assert rows[1]["message"].startswith("interrupted by SIGTERM")


def test_json_dash_is_stdout(monkeypatch, tmp_path, capsys) -> None:
    """`--json -` means stdout (the table moves to stderr), not a file named '-'."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(doctor, "all_checks", lambda ctx, subset="all": [
        Check("fine", _fine, needs_device=False)])
    assert main(["doctor", "--device", "cpu", "--json", "-", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["checks"][0]["name"] == "fine"
    assert "1 passed, 0 failed, 0 skipped" in captured.err
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("steps_to_target,ok", [(51, True), (None, False)])
def test_the_eval_row_must_reach_the_target_on_real_mnist(monkeypatch, tmp_path,
                                                          steps_to_target, ok) -> None:
    """On real MNIST the fast recipe with evaluation must stop at its target (the summary marks
    it with steps_to_accuracy); on synthetic data it is capped and passes without one."""
    import bench.measure.runner
    import bench.spec.datasets
    from bench.doctor.checks import check_eval_to_target

    monkeypatch.setattr(bench.spec.datasets, "load_dataset", lambda *a, **k: None)  # "found"
    summary = {"images_per_s": 1e5, "steps": 51 if ok else 117, "target_accuracy": 0.88,
               "steps_to_accuracy": steps_to_target, "best_test_acc": 0.8802}
    fake = _result(config={"device": "cpu", "dataset": "mnist", "eval_every": 5},
                   summary=summary)
    fake.evals = [{"step": 5 * i} for i in range(1, 11)]
    monkeypatch.setattr(bench.measure.runner, "run", lambda cfg: (fake, None))
    ctx = _ctx(tmp_path)
    if ok:
        line = check_eval_to_target(ctx)
        assert "mnist" in line and "target 88% at step 51" in line and "10 evaluations" in line
    else:
        with pytest.raises(Fail, match="target 0.88 not reached"):
            check_eval_to_target(ctx)
