"""The history as a view of the result store (records per job, the gate's verdicts kept beside
the runs, the old JSON-lines stores still read), its series and regressions, and `bench
history`, on result docs made here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bench.ci import job as ci
from bench.cli import main
from bench.gate.compare import compare_runs, run_verb
from bench.history.gates import read_verdicts, write_verdicts
from bench.history.jsonl import read_file, read_history
from bench.history.records import RECORD_FIELDS, build_records
from bench.history.series import build_series, find_regressions, short_commit
from bench.history.view import history_records
from bench.results import Result, ResultDoc, flatten, write_result

ROOT = Path(__file__).resolve().parent.parent
A100 = "NVIDIA A100"
# plotly is a dependency of bench, but a checkout run uninstalled (the GPU box's twin) may lack it
PLOTLY_REASON = ("plotly is not installed (pip install plotly, or pip install -e .): only the "
                 "history page needs it")
needs_plotly = pytest.mark.skipif(importlib.util.find_spec("plotly") is None,
                                  reason=PLOTLY_REASON)


def make_doc(model: str = "cnn", ips: float = 1000.0, *, commit: str = "a" * 40,
             device: str = A100, repeat: int = 0, day: int = 10, status: str = "ok",
             tta: float | None = 30.0, acc: float = 0.98, suite: str | None = None,
             batch: str | None = None) -> ResultDoc:
    """One run's result doc, as a suite writes it."""
    config = dict(model=model, dataset="mnist", loader="torch", device="cuda", precision="bf16",
                  compile="none", channels_last=False, batch_size=128, recipe="fast",
                  max_steps=None, seed=repeat)
    env = {"host": "h1", "cpu_model": "Test CPU", "torch_threads": 2,
           "gpus": [{"name": device}], "git_commit": commit}
    summary = dict(images_per_s=ips, images_per_s_min=ips * 0.98, images_per_s_max=ips * 1.02,
                   final_test_acc=acc, time_to_accuracy_s=tta, target_accuracy=0.97)
    return Result(config=config, env=env, status=status, summary=summary, suite=suite,
                  batch_id=batch, repeat=repeat,
                  created=f"2026-11-{day:02d}T10:{repeat:02d}:00+00:00",
                  message=None if status == "ok" else "out of memory").to_dict()


def make_batch(commits: int = 3, devices: tuple[str, ...] = (A100,), slow_commit: int = -1,
               repeats: int = 3) -> list[ResultDoc]:
    """cnn and fc on each device at each commit (a day apart), `repeats` runs 1% apart; cnn is
    15% slower at `slow_commit`."""
    docs = []
    for c in range(commits):
        for d, device in enumerate(devices):
            for model, base in (("cnn", 1000.0), ("fc", 5000.0)):
                for r in range(repeats):
                    ips = base * (1 + d) * (0.85 if c == slow_commit and model == "cnn" else 1)
                    docs.append(make_doc(model, ips * (1 + 0.01 * (r - 1)), commit=f"{c:x}" * 40,
                                         device=device, repeat=r, day=10 + c,
                                         tta=20.0 + c + r, batch=f"job{c}"))
    return docs


def write_docs(folder: Path, docs: list[ResultDoc]) -> Path:
    """The docs as result files in `folder` (a result store)."""
    for doc in docs:
        write_result(Result(**{k: v for k, v in doc.items() if not k.startswith("_")}), folder)
    return folder


def jsonl(record: dict) -> bytes:
    """A record as a line of the old JSON-lines stores."""
    return (json.dumps(record, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------- records


def test_one_record_per_job_device_commit_and_configuration():
    docs = make_batch(commits=2, devices=(A100, "NVIDIA H100"))
    docs.append(make_doc("cnn", commit="0" * 40, repeat=3, status="oom", batch="job0"))
    records = build_records(docs)
    assert len(records) == 2 * 2 * 2
    rec = next(r for r in records if r["device"] == A100 and r["config"].startswith("cnn")
               and r["commit"] == "0" * 40)
    assert set(rec) == set(RECORD_FIELDS)
    assert rec["runs"] == 3 and rec["failed"] == 1 and len(rec["run_ids"]) == 4
    assert rec["images_per_s"] == pytest.approx(1000.0)
    assert (rec["images_per_s_min"], rec["images_per_s_max"]) == pytest.approx((990.0, 1010.0))
    assert (rec["time_to_accuracy_s"], rec["time_to_accuracy_s_min"],
            rec["time_to_accuracy_s_max"]) == (21.0, 20.0, 22.0)
    assert rec["reached"] == 3 and rec["accuracy"] == 0.98 and rec["target_accuracy"] == 0.97
    assert rec["date"] == "2026-11-10T10:03:00+00:00" and rec["gate"] is None
    assert rec["key"]["model"] == "cnn" and rec["key"]["precision"] == "bf16"
    assert rec["source"] == "run"
    json.loads(jsonl(rec))  # one JSON line
    # a second job at the same commit is a point of its own
    again = [dict(d, run_id=f"{d['run_id']}x", batch_id="job9") for d in docs[:3]]
    assert len(build_records(docs + again)) == len(records) + 1


def test_ci_records_carry_the_gate_per_configuration(tmp_path):
    base = make_batch(commits=1)
    cand = [make_doc(model, ips * (1 + 0.01 * (r - 1)), commit="b" * 40, repeat=r, batch="ci1")
            for model, ips in (("cnn", 850), ("fc", 5000)) for r in range(3)]
    cmp = compare_runs([flatten(d) for d in base], [flatten(d) for d in cand], 0.05)
    write_verdicts(tmp_path, "ci1", cmp)
    records = {r["key"]["model"]: r for r in build_records(cand, read_verdicts(tmp_path))}
    cnn, fc = records["cnn"]["gate"], records["fc"]["gate"]
    assert cnn["verdict"] == "regression" and cnn["ratio"] == pytest.approx(0.85, rel=0.01)
    assert cnn["low"] < cnn["ratio"] < cnn["high"] < 1 and cnn["threshold"] == 0.05
    assert fc["verdict"] == "ok" and records["fc"]["source"] == "ci"
    other = [dict(d, batch_id="ci2") for d in cand]  # another job: not what the gate judged
    assert all(r["gate"] is None for r in build_records(other, read_verdicts(tmp_path)))


def test_a_damaged_verdict_file_is_skipped_with_one_line(tmp_path, capsys):
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "a.json").write_text('{"kind": "bench-gate", "version": 1, "batch_id": "a", '
                                  '"configs": [{"key": [], "gate": {"verdict": "maybe"}}]}')
    (gates / "b.json").write_text("[" * 100 + "]" * 100)
    # a key that is not a row of scalars (it could not be looked up) is left out, not a crash
    (gates / "c.json").write_text('{"kind": "bench-gate", "version": 1, "batch_id": "c", '
                                  '"configs": [{"key": [{}, [], 1, 2, 3, 4, 5, 6, 7, 8, 9], '
                                  '"gate": {"verdict": "ok"}}]}')
    assert read_verdicts(tmp_path) == {}
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "without a known verdict" in err[0] and "nested" in err[1]


# --------------------------------------------------------------------------- the view


def test_the_history_is_a_view_of_the_result_files(tmp_path):
    store = write_docs(tmp_path / "results", make_batch(commits=2, devices=(A100, "NVIDIA H100")))
    records = history_records(store)
    assert len(records) == 8 and {r["runs"] for r in records} == {3}
    write_docs(store, [make_doc("cnn", 1000, commit="1" * 40, repeat=r, day=11, batch="late")
                       for r in (5, 6)])
    records = history_records(store)
    assert len(records) == 9
    assert [r["commit"] for r in records if r["runs"] == 2] == ["1" * 40]


def test_old_jsonl_stores_still_draw_without_drawing_a_run_twice(tmp_path):
    docs = make_batch(commits=2)
    store = write_docs(tmp_path / "results", docs[:6])  # commit 0 as result files
    old = tmp_path / "results" / "history"
    old.mkdir()
    # the old store recorded both commits; commit 0's runs are also in the store
    (old / "nvidia-a100.jsonl").write_bytes(b"".join(jsonl(r) for r in build_records(docs)))
    records = history_records(store)
    assert sorted(r["commit"][0] for r in records) == ["0", "0", "1", "1"]
    assert len(history_records(old)) == 4 and len(history_records(old / "nvidia-a100.jsonl")) == 4


def test_a_torn_last_line_of_an_old_store_is_skipped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    records = build_records(make_batch(commits=2))
    path.write_bytes(b"".join(jsonl(r) for r in records[:3]) + jsonl(records[3])[:57])  # killed
    assert len(read_file(path)) == 3
    assert "skipped 1 line(s)" in capsys.readouterr().err


def test_read_skips_lines_that_are_not_records(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    good = jsonl(build_records(make_batch(commits=1))[0])
    path.write_bytes(b'{"kind": "other"}\n[1, 2]\n' + good + b"\n")
    assert len(read_history(tmp_path)) == 1
    assert "skipped 2 line(s)" in capsys.readouterr().err


# --------------------------------------------------------------------------- series


def test_series_mark_gate_verdicts_and_significant_steps():
    records = build_records(make_batch(commits=4, slow_commit=2))
    series = {s.config.split("/")[0]: s for s in build_series(records)}
    cnn, fc = series["cnn"], series["fc"]
    assert [p["commit"][0] for p in cnn.points] == ["0", "1", "2", "3"]
    assert [p["commit"][0] for p, _ in cnn.regressions] == ["2"]  # 3 is faster, not slower
    assert "ratio 0.850" in cnn.regressions[0][1] and fc.regressions == []
    single = build_records(make_batch(commits=3, slow_commit=2, repeats=1))
    assert all(s.regressions == [] for s in build_series(single))  # one run cannot be gated
    gated = [dict(r, gate={"verdict": "regression", "ratio": 0.9, "low": 0.85, "high": 0.95})
             for r in records[:1]]
    assert "ci gate" in find_regressions(gated, 0.05, 0.05)[0][1]
    assert short_commit("0123456789abcdef-dirty") == "01234567-dirty" and short_commit(None) == "?"


# --------------------------------------------------------------------------- the verb


@needs_plotly
def test_history_verb_renders_the_result_folder(tmp_path, capsys, monkeypatch):
    results, site = write_docs(tmp_path / "results", make_batch(commits=3, slow_commit=1)), \
        tmp_path / "site"
    assert main(["history", str(results), "--out", str(site)]) == 0
    assert [p.name for p in site.iterdir()] == ["index.html"]  # no temp file left behind
    text = (site / "index.html").read_text()
    assert "plotly" in text.lower() and "1 regression(s) marked" in text and A100 in text
    monkeypatch.chdir(tmp_path)  # the default: results/
    assert main(["history", "--out", "s2"]) == 0
    assert "1 regression(s) marked" in (tmp_path / "s2" / "index.html").read_text()


@pytest.mark.parametrize("argv, message", [
    (["history", "{tmp}/missing", "--out", "{tmp}/site"], "no such file or folder"),
    (["history", "{tmp}/empty", "--out", "{tmp}/site"], "no results in it"),
    (["history", "{tmp}", "{tmp}", "--out", "{tmp}/site"], "one results folder at most"),
    (["history", "append", "{tmp}/r"], "no history store to append to"),
    (["history", "{tmp}/r", "--out", "{tmp}/bad.json"], "is a file, not a folder"),
    (["history", "{tmp}/r", "--threshold", "lots"], "--threshold"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, bench_cli):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    write_docs(tmp_path / "r", make_batch(commits=1))
    code, err = bench_cli(*[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and len(err) == 1 and err[0].startswith("bench: error:")
    assert message in err[0]


@needs_plotly
def test_rendering_imports_no_torch(tmp_path):
    write_docs(tmp_path / "r", make_batch(commits=2))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bench", "history",
                           str(tmp_path / "r"), "--out", str(tmp_path / "site")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "plotly" in imported and "torch" not in imported


def test_without_plotly_the_page_is_one_line(monkeypatch, tmp_path, bench_cli):
    """plotly hidden (None in sys.modules makes `import plotly` fail, as if not installed): the
    page says what to install in one line, exit 2, and writes nothing."""
    for name in ["plotly", *(n for n in sys.modules if n.startswith("plotly."))]:
        monkeypatch.setitem(sys.modules, name, None)
    results, site = write_docs(tmp_path / "results", make_batch(commits=2)), tmp_path / "site"
    code, err = bench_cli("history", results, "--out", site)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("bench: error: history: drawing the page needs plotly")
    assert "pip install plotly" in err[0] and not (site / "index.html").exists()


# --------------------------------------------------------------------------- suite and ci


@pytest.fixture
def fake_suite(monkeypatch, tmp_path):
    """A stand-in bench.suites.policy whose run_suite writes `repeats` runs of `state['ips']`,
    one batch id per call, as the real one does."""
    state = {"ips": {"cnn": 1000.0, "fc": 5000.0}, "commit": "a" * 40, "calls": 0}

    def run_suite(name, *, data_dir, out_dir, device="auto", repeats=1, overrides=None,
                  **kw):
        state["calls"] += 1
        return [write_result(Result(**{k: v for k, v in make_doc(
            model, ips * (1 + 0.005 * r), commit=state["commit"], repeat=r, suite=name,
            batch=f"job{state['calls']}").items() if not k.startswith("_")}), out_dir)
            for r in range(repeats) for model, ips in state["ips"].items()]

    # check_archive/write_archive: `bench suite --archive`, imported by cmd_suite, unused here
    fake = types.SimpleNamespace(run_suite=run_suite, SuiteStopped=KeyboardInterrupt,
                                 check_archive=lambda path: path,
                                 write_archive=lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "bench.suites.policy", fake)
    monkeypatch.setattr(ci, "ONE_PROCESS", True)  # the stand-in suite runs in-process
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return state


def test_a_suite_is_in_the_history_as_it_finishes(fake_suite, tmp_path, capsys):
    assert main(["suite", "ci", "--repeats", "2", "--out", "res"]) == 0
    records = history_records(tmp_path / "res")
    assert len(records) == 2 and {r["source"] for r in records} == {"suite"}
    assert {r["suite"] for r in records} == {"ci"} and records[0]["runs"] == 2
    # the old flag: the job goes on, one line says it is ignored, nothing else is written
    assert main(["suite", "ci", "--repeats", "2", "--out", "res", "--history", "h"]) == 0
    assert "--history h is ignored" in capsys.readouterr().err and not (tmp_path / "h").exists()


def test_ci_keeps_the_gate_verdicts_beside_its_runs(fake_suite, tmp_path):
    assert run_verb(ci.register, ["ci", "--record-baseline"]) == 0
    fake_suite.update(ips={"cnn": 850.0, "fc": 5000.0}, commit="b" * 40)
    assert run_verb(ci.register, ["ci"]) == 1
    records = {r["key"]["model"]: r for r in history_records(tmp_path / "results")}
    assert records["cnn"]["gate"]["verdict"] == "regression"
    assert records["fc"]["gate"]["verdict"] == "ok"
    assert len(records) == 2  # the baseline's runs are a tag's, not points of the history
