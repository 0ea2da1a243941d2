"""The history store (records, concurrent appends, torn lines), its series and regressions, and
`bench history` / `--history` on `bench suite` and `bench ci`, on result docs made here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from bench.ci import job as ci
from bench.cli import main
from bench.gate.compare import compare_runs, run_verb
from bench.history.records import RECORD_FIELDS, build_records
from bench.history.series import build_series, find_regressions, short_commit
from bench.history.store import (
    append_docs,
    encode,
    history_path,
    read_file,
    read_history,
)
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
             tta: float | None = 30.0, acc: float = 0.98, suite: str | None = None
             ) -> ResultDoc:
    """One run's result doc, as a suite writes it."""
    config = dict(model=model, dataset="mnist", loader="torch", device="cuda", precision="bf16",
                  compile="none", channels_last=False, batch_size=128, recipe="fast",
                  max_steps=None, seed=repeat)
    env = {"host": "h1", "cpu_model": "Test CPU", "torch_threads": 2,
           "gpus": [{"name": device}], "git_commit": commit}
    summary = dict(images_per_s=ips, images_per_s_min=ips * 0.98, images_per_s_max=ips * 1.02,
                   final_test_acc=acc, time_to_accuracy_s=tta, target_accuracy=0.97)
    return Result(config=config, env=env, status=status, summary=summary, suite=suite,
                  repeat=repeat, created=f"2026-11-{day:02d}T10:{repeat:02d}:00+00:00",
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
                                         tta=20.0 + c + r))
    return docs


# --------------------------------------------------------------------------- records


def test_one_record_per_commit_device_and_configuration():
    docs = make_batch(commits=2, devices=(A100, "NVIDIA H100"))
    docs.append(make_doc("cnn", commit="0" * 40, repeat=3, status="oom"))
    records = build_records(docs, "suite")
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
    json.loads(encode(rec))  # one JSON line


def test_ci_records_carry_the_gate_per_configuration():
    base = make_batch(commits=1)
    cand = [make_doc(model, ips * (1 + 0.01 * (r - 1)), commit="b" * 40, repeat=r)
            for model, ips in (("cnn", 850), ("fc", 5000)) for r in range(3)]
    cmp = compare_runs([flatten(d) for d in base], [flatten(d) for d in cand], 0.05)
    records = {r["key"]["model"]: r for r in build_records(cand, "ci", cmp)}
    cnn, fc = records["cnn"]["gate"], records["fc"]["gate"]
    assert cnn["verdict"] == "regression" and cnn["ratio"] == pytest.approx(0.85, rel=0.01)
    assert cnn["low"] < cnn["ratio"] < cnn["high"] < 1 and cnn["threshold"] == 0.05
    assert fc["verdict"] == "ok" and records["fc"]["source"] == "ci"


# --------------------------------------------------------------------------- store


def test_append_is_idempotent_and_adds_new_runs(tmp_path):
    docs = make_batch(commits=2, devices=(A100, "NVIDIA H100"))
    written = append_docs(tmp_path, docs, "append")
    assert written == {history_path(tmp_path, A100): 4,
                       history_path(tmp_path, "NVIDIA H100"): 4}
    assert history_path(tmp_path, A100).name == "nvidia-a100.jsonl"
    assert sum(append_docs(tmp_path, docs, "append").values()) == 0  # the same runs again
    more = [make_doc("cnn", 1000, commit="1" * 40, repeat=r, day=11) for r in (5, 6)]
    written = append_docs(tmp_path, docs + more, "append")
    assert written == {history_path(tmp_path, A100): 1, history_path(tmp_path, "NVIDIA H100"): 0}
    records = read_history(tmp_path)
    assert len(records) == 9
    assert [r["commit"] for r in records if r["runs"] == 2] == ["1" * 40]


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bench.history.store import locked_append

    path, who, n, pad = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for i in range(n):
        rec = {"kind": "bench-history", "version": 1, "device": "d", "config": "c",
               "date": "2026-11-10", "run_ids": [f"{who}-{i}"], "pad": who * pad}
        locked_append(path, lambda known, rec=rec: [rec])
""")


def test_concurrent_appends_neither_interleave_nor_get_lost(tmp_path):
    """Four processes append 20 records each, every record longer than a pipe buffer."""
    path, n, pad, writers = tmp_path / "d.jsonl", 20, 9000, "wxyz"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), w, str(n), str(pad)],
                              cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
             for w in writers]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(writers)
    lines = path.read_bytes().splitlines()
    assert len(lines) == n * len(writers)
    records = [json.loads(line) for line in lines]  # every line whole
    assert all(r["pad"] == r["run_ids"][0][0] * pad for r in records)
    assert sorted(r["run_ids"][0] for r in records) == sorted(
        f"{w}-{i}" for w in writers for i in range(n))


def test_a_torn_last_line_is_skipped_with_a_warning_and_isolated(tmp_path, capsys):
    docs = make_batch(commits=2)
    append_docs(tmp_path, docs[:6], "append")  # commit 0
    path = history_path(tmp_path, A100)
    whole = path.read_bytes()
    path.write_bytes(whole + encode(build_records(docs[6:9], "append")[0])[:57])  # killed
    assert len(read_file(path)) == 2
    assert "torn last line" in capsys.readouterr().err
    assert append_docs(tmp_path, docs, "append") == {path: 2}  # commit 1, after the fragment
    records = read_history(tmp_path)
    assert [r["commit"][0] for r in records] == ["0", "0", "1", "1"]
    assert "skipped 1 line(s)" in capsys.readouterr().err


def test_read_skips_lines_that_are_not_records(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    good = encode(build_records(make_batch(commits=1), "append")[0])
    path.write_bytes(b'{"kind": "other"}\n[1, 2]\n' + good + b"\n")
    assert len(read_history(tmp_path)) == 1
    assert "skipped 2 line(s)" in capsys.readouterr().err


# --------------------------------------------------------------------------- series


def test_series_mark_gate_verdicts_and_significant_steps():
    records = build_records(make_batch(commits=4, slow_commit=2), "append")
    series = {s.config.split("/")[0]: s for s in build_series(records)}
    cnn, fc = series["cnn"], series["fc"]
    assert [p["commit"][0] for p in cnn.points] == ["0", "1", "2", "3"]
    assert [p["commit"][0] for p, _ in cnn.regressions] == ["2"]  # 3 is faster, not slower
    assert "ratio 0.850" in cnn.regressions[0][1] and fc.regressions == []
    single = build_records(make_batch(commits=3, slow_commit=2, repeats=1), "append")
    assert all(s.regressions == [] for s in build_series(single))  # one run cannot be gated
    gated = [dict(r, gate={"verdict": "regression", "ratio": 0.9, "low": 0.85, "high": 0.95})
             for r in records[:1]]
    assert "ci gate" in find_regressions(gated, 0.05, 0.05)[0][1]
    assert short_commit("0123456789abcdef-dirty") == "01234567-dirty" and short_commit(None) == "?"


# --------------------------------------------------------------------------- the verb


@needs_plotly
def test_history_verb_appends_and_renders(tmp_path, capsys):
    results = tmp_path / "results"
    for doc in make_batch(commits=3, slow_commit=1):
        write_result(Result(**{k: v for k, v in doc.items() if not k.startswith("_")}), results)
    store, site = tmp_path / "h", tmp_path / "site"
    assert main(["history", "append", str(results), "--history", str(store)]) == 0
    assert "appended 6 record(s)" in capsys.readouterr().out
    assert main(["history", str(store), "--out", str(site)]) == 0
    assert [p.name for p in site.iterdir()] == ["index.html"]  # no temp file left behind
    text = (site / "index.html").read_text()
    assert "plotly" in text.lower() and "1 regression(s) marked" in text and A100 in text
    assert main(["history", "--history", str(store), "--out", str(tmp_path / "s2")]) == 0
    assert "1 regression(s) marked" in (tmp_path / "s2" / "index.html").read_text()


@pytest.mark.parametrize("argv, message", [
    (["history", "{tmp}/missing", "--out", "{tmp}/site"], "no such file or folder"),
    (["history", "{tmp}", "--out", "{tmp}/site"], "no history records"),
    (["history", "{tmp}", "{tmp}", "--out", "{tmp}/site"], "one history folder at most"),
    (["history", "append", "--history", "{tmp}/h"], "name the result files"),
    (["history", "append", "{tmp}/missing.json", "--history", "{tmp}/h"], "no such file"),
    (["history", "append", "{tmp}/bad.json", "--history", "{tmp}/h"], "not a readable result"),
    (["history", "{tmp}/h", "--out", "{tmp}/bad.json"], "is a file, not a folder"),
    (["history", "{tmp}/h", "--threshold", "lots"], "--threshold"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, bench_cli):
    (tmp_path / "bad.json").write_text("{not json")
    append_docs(tmp_path / "h", make_batch(commits=1), "append")
    code, err = bench_cli(*[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and len(err) == 1 and err[0].startswith("bench: error:")
    assert message in err[0]


@needs_plotly
def test_rendering_imports_no_torch(tmp_path):
    append_docs(tmp_path / "h", make_batch(commits=2), "append")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bench", "history",
                           str(tmp_path / "h"), "--out", str(tmp_path / "site")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "plotly" in imported and "torch" not in imported


def test_without_plotly_the_page_is_one_line_and_append_still_works(monkeypatch, tmp_path,
                                                                     bench_cli):
    """plotly hidden (None in sys.modules makes `import plotly` fail, as if not installed): the
    page says what to install in one line, exit 2, and writes nothing; appending works."""
    for name in ["plotly", *(n for n in sys.modules if n.startswith("plotly."))]:
        monkeypatch.setitem(sys.modules, name, None)
    results = tmp_path / "results"
    for doc in make_batch(commits=2):
        write_result(Result(**{k: v for k, v in doc.items() if not k.startswith("_")}), results)
    store, site = tmp_path / "h", tmp_path / "site"
    code, err = bench_cli("history", "append", results, "--history", store)
    assert code == 0 and err == [] and len(read_history(store)) == 4
    code, err = bench_cli("history", store, "--out", site)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("bench: error: history: drawing the page needs plotly")
    assert "pip install plotly" in err[0] and not (site / "index.html").exists()


# --------------------------------------------------------------------------- the hooks


@pytest.fixture
def fake_suite(monkeypatch, tmp_path):
    """A stand-in bench.suites.policy whose run_suite writes `repeats` runs of `state['ips']`."""
    state = {"ips": {"cnn": 1000.0, "fc": 5000.0}, "commit": "a" * 40}

    def run_suite(name, *, data_dir, out_dir, device="auto", repeats=1, overrides=None,
                  **kw):
        return [write_result(Result(**{k: v for k, v in make_doc(
            model, ips * (1 + 0.005 * r), commit=state["commit"], repeat=r, suite=name).items()
            if not k.startswith("_")}), out_dir)
            for r in range(repeats) for model, ips in state["ips"].items()]

    # check_archive/write_archive: `bench suite --archive`, imported by cmd_suite, unused here
    fake = types.SimpleNamespace(run_suite=run_suite, SuiteStopped=KeyboardInterrupt,
                                 check_archive=lambda path: path,
                                 write_archive=lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "bench.suites.policy", fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return state


def test_suite_history_flag_appends(fake_suite, tmp_path, capsys):
    assert main(["suite", "ci", "--repeats", "2", "--out", "res"]) == 0
    assert not (tmp_path / "h").exists()  # off by default
    assert main(["suite", "ci", "--repeats", "2", "--out", "res", "--history", "h"]) == 0
    records = read_history(tmp_path / "h")
    assert len(records) == 2 and {r["source"] for r in records} == {"suite"}
    assert {r["suite"] for r in records} == {"ci"} and records[0]["runs"] == 2
    assert "history: appended 2 record(s) to h" in capsys.readouterr().err


def test_ci_history_flag_records_the_gate(fake_suite, tmp_path):
    assert run_verb(ci.register, ["ci", "--record-baseline"]) == 0
    fake_suite.update(ips={"cnn": 850.0, "fc": 5000.0}, commit="b" * 40)
    assert run_verb(ci.register, ["ci", "--history", "h"]) == 1
    records = {r["key"]["model"]: r for r in read_history(tmp_path / "h")}
    assert records["cnn"]["gate"]["verdict"] == "regression"
    assert records["fc"]["gate"]["verdict"] == "ok"
    assert records["cnn"]["commit"] == "b" * 40 and records["cnn"]["runs"] == ci.DEFAULT_REPEATS
