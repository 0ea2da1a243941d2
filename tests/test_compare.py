"""bench compare (pure core and CLI) and bench ci, on result files generated in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bench.ci import job as ci
from bench.errors import BenchError
from bench.gate import compare
from bench.gate.compare import compare_runs, parse_threshold
from bench.results import (
    SCHEMA_VERSION,
    Result,
    flatten,
    load_docs,
    newest_suite_batch,
    write_result,
)
from bench.results.schema import new_batch_id
from bench.results.store import baseline_runs_dir

ROOT = Path(__file__).resolve().parent.parent


def make_result(model: str = "cnn", ips: float = 1000.0, *, repeat: int = 0,
                device: str = "NVIDIA A100", suite: str | None = None, status: str = "ok",
                acc: float = 0.98, created: str | None = None, **cfg) -> Result:
    """A plausible result: in-run IQR of 2%, epoch time consistent with images/s."""
    config = dict(model=model, dataset="mnist", loader="torch", device="cuda", precision="fp32",
                  compile=False, channels_last=False, batch_size=128, recipe="course",
                  epochs=2, max_steps=None, seed=repeat)
    config.update(cfg)
    env = {"host": "h1", "cpu_model": "Test CPU", "torch_threads": 2, "gpus": [{"name": device}]}
    summary = dict(images_per_s=ips, images_per_s_min=ips * 0.98, images_per_s_max=ips * 1.02,
                   images_per_s_q1=ips * 0.99, images_per_s_q3=ips * 1.01,
                   epoch_time_s=60000 / ips, final_test_acc=acc, best_test_acc=acc,
                   time_to_accuracy_s=None, target_accuracy=None)
    extra = {"created": created} if created else {}
    return Result(config=config, env=env, status=status, summary=summary, suite=suite,
                  repeat=repeat, message=None if status == "ok" else "CUDA out of memory",
                  **extra)


def frame(*results: Result) -> list[dict]:
    """The flat rows of the results, as the gate reads them."""
    return [flatten(r.to_dict()) for r in results]


def write_all(folder: Path, *results: Result) -> Path:
    for r in results:
        write_result(r, folder)
    return folder


def run_cli(*argv: str) -> int:
    return compare.main([str(a) for a in argv])


# --------------------------------------------------------------------------- pure core


def runs(model: str = "cnn", ips: float = 1000.0, spread: float = 0.01, n: int = 3,
         **kw) -> list[Result]:
    """n repeats around `ips` (relative steps of `spread`), as a suite with --repeats n makes."""
    return [make_result(model, ips * (1 + spread * (i - (n - 1) / 2)), repeat=i, **kw)
            for i in range(n)]


def test_single_runs_cannot_be_gated():
    """One run per side says nothing about noise: the ratio is shown, the verdict is not a
    pass (issue 14: 15 of 20 identical pairs failed a 1-run gate)."""
    cmp = compare_runs(frame(make_result(ips=1000)), frame(make_result(ips=900)), 0.05)
    (row,) = cmp.rows
    assert row.verdict == "not gated" and cmp.exit_code == 3
    assert row.ips_ratio == pytest.approx(0.9) and row.epoch_ratio == pytest.approx(1000 / 900)
    assert "needs --repeats 2+" in compare.fmt_verdict(row)


@pytest.mark.parametrize("cand_ips, verdict, code", [
    (900.0, "regression", 1), (980.0, "ok", 0), (1200.0, "faster", 0)])
def test_verdicts_with_calibrated_noise(cand_ips, verdict, code):
    base, cand = frame(*runs(ips=1000)), frame(*runs(ips=cand_ips))
    key = compare.run_key(base[0])
    cmp = compare_runs(base, cand, 0.05, noise={key: 0.01})
    (row,) = cmp.rows
    assert (row.verdict, cmp.exit_code) == (verdict, code)
    assert row.gate.noise_source == "calibrated" and row.gate.detectable < 0.05
    assert row.gate.low < row.ips_ratio < row.gate.high


def test_noisy_slowdown_is_not_gated_and_says_what_it_needs():
    base = [make_result(ips=v, repeat=i) for i, v in enumerate((950, 1000, 1050))]  # 10% spread
    cand = [make_result(ips=940, repeat=i) for i in range(3)]  # 6% slower
    cmp = compare_runs(frame(*base), frame(*cand), 0.05)
    (row,) = cmp.rows
    assert row.verdict == "not gated" and row.gate.needed_repeats > 3
    assert cmp.exit_code == 3
    assert f"needs {row.gate.needed_repeats} runs per side" in compare.fmt_verdict(row)


def test_slowdown_beyond_noise_is_regression():
    base = [make_result(ips=v, repeat=i) for i, v in enumerate((990, 1000, 1010))]
    cand = [make_result(ips=v, repeat=i, acc=0.97 + i / 100) for i, v in enumerate((880, 890, 900))]
    cmp = compare_runs(frame(*base), frame(*cand), 0.05)
    (row,) = cmp.rows
    assert row.verdict == "regression" and row.gate.p_slower < 0.001
    assert row.base.images_per_s == 1000 and row.cand.images_per_s == 890
    assert row.acc_delta == pytest.approx(0.0) and row.acc_delta_std == pytest.approx(0.01)
    assert cmp.exit_code == 1


def test_budget_is_part_of_the_configuration():
    """Like with like: a 300-step run and a full run never match (issue 14 item 4)."""
    cmp = compare_runs(frame(*runs(max_steps=300)), frame(*runs(max_steps=None)), 0.05)
    assert not cmp.rows and cmp.only_base and cmp.only_cand
    assert "steps<=300" in cmp.only_base[0]


def test_unmatched_and_skipped_are_listed():
    base = frame(make_result("cnn"), make_result("fc"), make_result("vgg11", status="oom"))
    cand = frame(make_result("cnn"), make_result("lenet"), make_result("vgg11"))
    cmp = compare_runs(base, cand, 0.05)
    assert [r.label for r in cmp.rows] == ["cnn/mnist torch fp32 bs128 recipe=course"]
    assert cmp.only_base == ["fc/mnist torch fp32 bs128 recipe=course"]
    assert cmp.only_cand == ["lenet/mnist torch fp32 bs128 recipe=course",
                             "vgg11/mnist torch fp32 bs128 recipe=course"]
    (skip,) = cmp.skipped
    assert (skip.side, skip.status) == ("baseline", "oom") and "out of memory" in skip.reason
    text = compare.format_text(cmp)
    for needle in ("Only in baseline", "fc/mnist", "lenet/mnist", "Skipped runs", "status oom"):
        assert needle in text


def test_config_differences_prevent_matching():
    cmp = compare_runs(frame(make_result(precision="fp32")),
                         frame(make_result(precision="bf16")), 0.05)
    assert not cmp.rows and len(cmp.only_base) == 1 and len(cmp.only_cand) == 1


def test_candidate_that_stopped_working_fails():
    cmp = compare_runs(frame(make_result()), frame(make_result(status="oom")), 0.05)
    assert cmp.failed and not cmp.rows and cmp.exit_code == 1


def test_mixed_devices_on_one_side_is_an_error():
    base = frame(make_result(device="NVIDIA A100"), make_result(device="NVIDIA H100", repeat=1))
    with pytest.raises(BenchError, match="2 devices"):
        compare_runs(base, frame(make_result()), 0.05)


def test_parse_threshold():
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.1") == pytest.approx(0.1)
    for bad in ("5", "abc", "0%", "150%"):
        with pytest.raises(BenchError):
            parse_threshold(bad)


# --------------------------------------------------------------------------- CLI on files


@pytest.mark.parametrize("cand_ips, code", [(900.0, 1), (995.0, 0)])
def test_cli_exit_codes(tmp_path, capsys, cand_ips, code):
    base = write_all(tmp_path / "a100", *runs(ips=1000, spread=0.002),
                     *runs("fc", ips=5000, spread=0.002))
    cand = write_all(tmp_path / "h100", *runs(ips=cand_ips, spread=0.002, device="NVIDIA H100"),
                     *runs("fc", ips=5000, spread=0.002, device="NVIDIA H100"))
    assert run_cli(base, cand, "--threshold", "5%") == code
    out = capsys.readouterr().out
    assert "NVIDIA A100" in out and "NVIDIA H100" in out
    assert ("REGRESSION" in out) == (code == 1)


def test_cli_markdown_and_json(tmp_path, capsys):
    base = write_all(tmp_path / "a", *runs(ips=1000))
    cand = write_all(tmp_path / "b", *runs(ips=900, device="NVIDIA H100"))
    assert run_cli(base, cand, "--format", "md") == 1
    md = capsys.readouterr().out
    assert "| configuration | baseline img/s |" in md and "|---|" in md and "REGRESSION" in md
    assert run_cli(base, cand, "--format", "json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["regressions"] == 1 and doc["rows"][0]["key"]["model"] == "cnn"


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = write_result(make_result(), tmp_path / "good")
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": 1, "config": ')
    future = tmp_path / "future.json"
    doc = make_result().to_dict()
    doc["schema_version"] = SCHEMA_VERSION + 1
    future.write_text(json.dumps(doc))
    (tmp_path / "empty").mkdir()
    return {"good": good, "missing": tmp_path / "missing.json", "broken": broken,
            "future": future, "empty": tmp_path / "empty"}


@pytest.mark.parametrize("which, needle", [
    ("missing", "no such"), ("broken", "not a readable result file"),
    ("future", "newer than this tool"), ("empty", "no result files")])
def test_bad_input_exits_2_with_one_line(tmp_path, which, needle):
    paths = _bad_inputs(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "bench.gate.compare", str(paths["good"]),
                           str(paths[which])], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and needle in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_unknown_suite_name_is_bad_input(tmp_path, capsys):
    good = write_result(make_result(), tmp_path / "good")
    assert run_cli(good, "nosuch", "--results-dir", tmp_path) == 2
    assert "no run of a suite" in capsys.readouterr().err


def test_suite_name_picks_newest_batch(tmp_path, capsys):
    results = tmp_path / "results"
    old = [make_result(m, ips=500, suite="ci", created=f"2024-01-01T00:00:0{i}+00:00")
           for i, m in enumerate(("cnn", "fc"))]
    new = [make_result(m, ips=1000, suite="ci", created=f"2024-02-01T00:00:0{i}+00:00")
           for i, m in enumerate(("cnn", "fc"))]
    other = make_result("lenet", suite="default", created="2024-03-01T00:00:00+00:00")
    write_all(results, *old, *new, other)
    batch = newest_suite_batch(load_docs([results]), "ci")
    assert sorted(d["summary"]["images_per_s"] for d in batch) == [1000, 1000]
    base = write_all(tmp_path / "base", *(make_result(m, ips=1000) for m in ("cnn", "fc")))
    assert run_cli(base, "ci", "--results-dir", results) == 3  # one run a side: not gated
    assert "2 matched configurations" in capsys.readouterr().out


def test_baseline_list_file_is_a_side(tmp_path, capsys):
    bundle = tmp_path / "base.json"
    bundle.write_text(json.dumps([r.to_dict() for r in runs(ips=1000)]))
    cand = write_all(tmp_path / "c", *runs(ips=900))
    assert run_cli(bundle, cand) == 1


# --------------------------------------------------------------------------- bench ci


@pytest.fixture
def fake_suite(monkeypatch, tmp_path):
    """A stand-in bench.suites.policy whose run_suite writes `repeats` copies of `state['results']`
    (each repeat 0.5% apart, as an interleaved suite would)."""
    state: dict = {"results": [make_result(ips=1000), make_result("fc", ips=5000)], "calls": []}

    def run_suite(name, *, data_dir, out_dir, device="auto", repeats=1, overrides=None, **kw):
        state["calls"].append((name, data_dir, out_dir, device, repeats))
        out, batch = [], new_batch_id()
        for r in range(repeats):
            for res in state["results"]:
                doc = res.to_dict()
                doc["summary"]["images_per_s"] *= 1 + 0.005 * (r - (repeats - 1) / 2)
                out.append(write_result(Result(**{**{k: v for k, v in doc.items()
                                                     if k != "run_id"}, "repeat": r,
                                                  "batch_id": batch}), out_dir))
        return out

    monkeypatch.setitem(sys.modules, "bench.suites.policy",
                        types.SimpleNamespace(run_suite=run_suite))
    monkeypatch.setattr(ci, "ONE_PROCESS", True)  # the stand-in suite runs in-process
    monkeypatch.chdir(tmp_path)
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    state["summary"] = summary
    return state


def run_ci(*argv: str) -> int:
    return compare.run_verb(ci.register, ["ci", *argv])


def test_ci_without_baseline_cannot_gate_and_says_so(fake_suite, capsys):
    assert run_ci("--data-dir", "/data") == 3
    assert fake_suite["calls"] == [("ci", "/data", "results", "auto", ci.DEFAULT_REPEATS)]
    assert "no baseline for NVIDIA A100" in capsys.readouterr().out
    assert "| configuration |" in fake_suite["summary"].read_text()


def test_ci_records_then_gates(fake_suite, capsys, tmp_path):
    assert run_ci("--record-baseline") == 0
    baseline = Path("results/baselines/nvidia-a100.json")
    doc = json.loads(baseline.read_text())
    assert doc["kind"] == "bench-baseline" and doc["device"] == "NVIDIA A100"
    # a tag: the job's runs moved (not copied) into the folder beside it
    assert len(doc["run_ids"]) == 2 * ci.DEFAULT_REPEATS and len(doc["batch_ids"]) == 1
    runs = baseline_runs_dir(baseline)
    assert runs == Path("results/baselines/nvidia-a100.runs")
    assert len(list(runs.glob("*.json"))) == 2 * ci.DEFAULT_REPEATS
    assert load_docs(["results"]) == []  # folders skip baselines/, and nothing was left behind
    assert len(load_docs([baseline])) == 2 * ci.DEFAULT_REPEATS

    fake_suite["results"] = [make_result(ips=985), make_result("fc", ips=5050)]
    assert run_ci("--json", str(tmp_path / "gate.json")) == 0
    gate_doc = json.loads((tmp_path / "gate.json").read_text())
    assert gate_doc["exit_code"] == 0 and gate_doc["rows"][0]["gate"]["detectable"] < 0.05
    (verdicts,) = Path("results/gates").glob("*.json")  # kept beside the runs, for the history
    assert verdicts.stem == load_docs(["results"])[0]["batch_id"]
    assert {c["gate"]["verdict"] for c in json.loads(verdicts.read_text())["configs"]} == {"ok"}
    fake_suite["results"] = [make_result(ips=900), make_result("fc", ips=5000)]
    assert run_ci("--threshold", "5%") == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out
    summary = fake_suite["summary"].read_text()
    assert summary.count("bench compare") == 2 and "❌" in summary and "✅" in summary


def test_a_new_baseline_replaces_the_old_runs_and_old_formats_keep_reading(fake_suite,
                                                                          bench_cli):
    assert run_ci("--record-baseline") == 0
    tag = Path("results/baselines/nvidia-a100.json")
    first = set(json.loads(tag.read_text())["run_ids"])
    assert run_ci("--record-baseline") == 0
    second = set(json.loads(tag.read_text())["run_ids"])
    kept = {d["run_id"] for d in load_docs([baseline_runs_dir(tag)])}
    assert kept == second and not first & second  # the replaced baseline's runs are gone
    # a baseline written before tags (version 2: copies of the runs inside) still reads
    runs = load_docs([tag])
    old = {"kind": "bench-baseline", "version": 2, "device": "NVIDIA A100",
           "runs": [{k: v for k, v in d.items() if not k.startswith("_")} for d in runs]}
    Path("old.json").write_text(json.dumps(old))
    assert len(load_docs(["old.json"])) == len(runs)
    # a run named twice in an edited tag is read once (it would pose as a repeat)
    edited = json.loads(tag.read_text())
    Path("twice.json").write_text(json.dumps({**edited, "run_ids": edited["run_ids"] * 2}))
    Path("twice.runs").symlink_to(baseline_runs_dir(tag).resolve())
    assert len(load_docs(["twice.json"])) == len(runs)
    # a tag whose runs were deleted is one line, naming what is missing
    next(baseline_runs_dir(tag).glob("*.json")).unlink()
    code, err = bench_cli("compare", tag, "old.json")
    assert code == 2 and len(err) == 1
    assert f"1 of its {len(runs)} runs are not in" in err[0]
    assert "record the baseline again" in err[0]


def test_a_baseline_that_cannot_take_its_runs_is_one_line(fake_suite, monkeypatch, capsys):
    import errno
    import shutil

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "move", full)
    assert run_ci("--record-baseline") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot move the baseline's runs" in err[0]
    assert "no space left on device" in err[0].lower()
    assert not Path("results/baselines/nvidia-a100.json").exists()  # no tag without its runs
    assert len(load_docs(["results"])) == 2 * ci.DEFAULT_REPEATS  # the runs stay where they were


def test_ci_refuses_another_devices_baseline(fake_suite, tmp_path, capsys):
    other = tmp_path / "h100.json"
    other.write_text(json.dumps([make_result(ips=1000, device="NVIDIA H100").to_dict()]))
    assert run_ci("--baseline", str(other)) == 2
    assert "baseline of NVIDIA H100" in capsys.readouterr().err


def test_ci_failed_run_fails_the_gate(fake_suite, tmp_path, capsys):
    assert run_ci("--record-baseline") == 0
    fake_suite["results"] = [make_result(ips=1000, status="oom"), make_result("fc", ips=5000)]
    assert run_ci() == 1  # ok in the baseline, failed now
    assert run_ci("--record-baseline") == 2
    assert "not recording a baseline" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--baseline", "/no/such.json"], "no such file"),
    (["--repeats", "0"], "must be at least 1"),
    (["--calibrate", "--against", "HEAD"], "exclude each other"),
    (["--alpha", "150%"], "must lie between"),
    (["--repeats", "1"], "cannot be gated without a calibrated baseline"),
])
def test_ci_bad_input_one_line(fake_suite, capsys, argv, needle):
    with pytest.raises(SystemExit) if argv == ["--repeats", "0"] else _nullcontext():
        assert run_ci(*argv) == 2
    assert needle in capsys.readouterr().err


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def test_ci_calibrate_round_trip(fake_suite, capsys):
    """--calibrate stores the A/A noise per configuration; the next gate uses it."""
    assert run_ci("--calibrate", "--rounds", "6") == 0
    doc = json.loads(Path("results/baselines/nvidia-a100.json").read_text())
    cal = doc["calibration"]
    assert len(doc["run_ids"]) == 12 and len(cal["configs"]) == 2
    sigma = cal["configs"][0]["sigma"]
    assert 0.008 < sigma < 0.011  # six rounds 0.5% apart: sd 0.5% x sqrt(35/12)
    assert "noise (sd)" in capsys.readouterr().out
    fake_suite["results"] = [make_result(ips=1000), make_result("fc", ips=5000)]
    assert run_ci("--json", "g.json") == 0
    rows = json.loads(Path("g.json").read_text())["rows"]
    # the calibration's noise, pooled with the job's own spread (bench.gate.sequential)
    assert {r["gate"]["noise_source"] for r in rows} == {"calibrated+job"}
