"""`bench ci` runs each round of its suite in a fresh process, all with the job's batch id.

Why (bench/ci/rounds.py): on a shared CPU a process has a speed of its own, so a calibration
taken in one process under-states the noise every later job sees. The round processes are
stood in for here by a function that writes what a `bench suite --repeats 1` round would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from bench.ci import job
from bench.ci.rounds import RoundSpec
from bench.cli import main
from bench.results import Result, read_docs, write_result


def _args(tmp_path: Path, **kw) -> argparse.Namespace:
    base = dict(suite=None, device="cpu", data_dir=None, budget_s=None, out=str(tmp_path / "o"),
                one_process=False)
    return argparse.Namespace(**{**base, **kw})


def _config(model: str) -> dict:
    return {"model": model, "dataset": "mnist", "recipe": "fast"}


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def _fake_round(calls: list[tuple[list[str], Path | None]]):
    def run_round(tree, cmd, env, what, cwd=None):
        calls.append((cmd, cwd))
        out = Path(_flag(cmd, "--out"))
        for model in ("fc", "cnn"):
            write_result(Result(config=_config(model), env={},
                                summary={"images_per_s": 100.0}, suite="ci",
                                batch_id=_flag(cmd, "--batch-id")), out)
    return run_round


def test_each_round_is_a_process_of_one_job(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "o"
    earlier = write_result(Result(config=_config("fc"), env={},
                                  summary={"images_per_s": 1.0}, batch_id="0" * 12), out)
    calls: list = []
    monkeypatch.setattr(job, "run_round", _fake_round(calls))
    monkeypatch.chdir(tmp_path)
    docs = job._run_suite(_args(tmp_path), 3)
    assert len(calls) == 3  # one process per round
    batches = {_flag(cmd, "--batch-id") for cmd, _ in calls}
    assert len(batches) == 1  # one job
    assert len(docs) == 6 and {d["batch_id"] for d in docs} == batches
    assert str(earlier) not in {d["_path"] for d in docs}  # an earlier job's file is not read
    cmd, cwd = calls[0]
    assert cmd[1:5] == ["-m", "bench", "suite", "ci"] and _flag(cmd, "--repeats") == "1"
    assert cwd == tmp_path  # relative paths mean what they meant to the user


def test_a_suite_file_round_is_gated_and_named_absolutely(tmp_path: Path, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(job, "run_round", _fake_round(calls))
    monkeypatch.chdir(tmp_path)
    job._run_suite(_args(tmp_path, suite="mine.toml", budget_s=1.5, data_dir="data"), 1)
    cmd = calls[0][0]
    assert cmd[4] == str(tmp_path / "mine.toml") and "--gate" in cmd
    assert _flag(cmd, "--budget-s") == "1.5" and _flag(cmd, "--data-dir") == str(tmp_path / "data")


def test_a_round_that_writes_nothing_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(job, "run_round", lambda *a, **k: None)
    with pytest.raises(job.BenchError, match="wrote no results"):
        job._run_suite(_args(tmp_path), 2)


def test_one_process_runs_the_rounds_here(tmp_path: Path, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(job, "run_round", lambda *a, **k: pytest.fail("a process started"))
    monkeypatch.setattr(job, "_run_suite_here", lambda args, rounds, *_: seen.update(r=rounds) or
                        [{"batch_id": "x"}])
    assert job._run_suite(_args(tmp_path, one_process=True), 4) == [{"batch_id": "x"}]
    assert seen == {"r": 4}


def test_round_command_carries_the_job() -> None:
    cmd = RoundSpec("ci", "cpu", batch_id="ab" * 6).command(Path("rel"))
    assert cmd[0] == sys.executable and _flag(cmd, "--batch-id") == "ab" * 6
    assert Path(_flag(cmd, "--out")).is_absolute() and "--gate" not in cmd


def test_suite_takes_the_batch_id_it_is_given(tmp_path: Path, monkeypatch, capsys) -> None:
    from bench.results import suite_tables
    from bench.suites import policy

    seen = {}

    def run_suite(name, **kw):
        seen.update(kw)
        return [write_result(Result(config=_config("fc"), env={},
                                    summary={"images_per_s": 1.0}, batch_id=kw["batch"]),
                             tmp_path)]

    monkeypatch.setattr(policy, "run_suite", run_suite)
    monkeypatch.setattr(suite_tables, "suite_table", lambda paths: "table\n")
    assert main(["suite", "ci", "--out", str(tmp_path), "--batch-id", "c" * 12, "--gate"]) == 0
    assert seen["batch"] == "c" * 12 and seen["gate"] is True
    assert read_docs(next(tmp_path.glob("2*.json")))[0]["batch_id"] == "c" * 12
    capsys.readouterr()
    assert main(["suite", "ci", "--batch-id", "$(rm -rf ~)"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "12 hexadecimal digits" in err[-1]
