"""Result files, baselines, history lines, the peak cache and stale temp results are untrusted
input (issue 21, items 1, 2, 7, 10, 12): every reader goes through `bench.results.guarded`.

Each case: one line naming the file (and the field), the right exit code through the CLI, no
traceback, no hang. A named file that fails is refused (exit 2); a bad file met in a folder is
skipped with one line and the rest is read.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_compare import make_result, runs, write_all

from bench.errors import BenchError
from bench.history.jsonl import read_history
from bench.history.records import build_records
from bench.results import guarded as g
from bench.results import (
    load_docs,
    read_baseline,
    read_docs,
    read_result,
    write_baseline,
    write_result,
)

ROOT = Path(__file__).resolve().parent.parent
A100 = "NVIDIA A100"
DEEP = b"[" * 100_000 + b"]" * 100_000
HANG_S = 60  # a deadline for "did not block": a reader that blocks never returns at all


def good_doc(**summary: Any) -> dict[str, Any]:
    doc = make_result().to_dict()
    doc["summary"].update(summary)
    return doc


def raw(doc: dict[str, Any], **replace: str) -> bytes:
    """`doc` as JSON with some values spliced in as raw tokens (NaN, 1e999: what json.dumps
    would not write)."""
    text = json.dumps(doc)
    for key, token in replace.items():
        text = text.replace(f'"{key}": "@"', f'"{key}": {token}')
    return text.encode()


def ips_token(token: str) -> bytes:
    return raw(good_doc(images_per_s="@"), images_per_s=token)


def doc_with(**top: Any) -> bytes:
    doc = good_doc()
    doc.update(top)
    return json.dumps({k: v for k, v in doc.items() if v is not DROP}).encode()


DROP = object()


def baseline_with(version: Any) -> bytes:
    return json.dumps({"kind": "bench-baseline", "version": version, "device": A100,
                       "runs": [make_result().to_dict()]}).encode()


# content of a named file -> what its one line must say
HOSTILE: dict[str, tuple[bytes, str]] = {
    "100000-deep": (DEEP, "JSON nested 100,000 levels deep; at most 64"),
    "ips NaN": (ips_token("NaN"), "summary.images_per_s is NaN, not a finite number"),
    "ips Infinity": (ips_token("Infinity"), "summary.images_per_s is Infinity, not a finite"),
    "ips -Infinity": (ips_token("-Infinity"), "summary.images_per_s is -Infinity"),
    "ips 1e999": (ips_token("1e999"), "summary.images_per_s is 1e999, not a finite number"),
    "ips 0": (json.dumps(good_doc(images_per_s=0)).encode(),
              "summary.images_per_s is 0, expected a positive number"),
    "ips negative": (json.dumps(good_doc(images_per_s=-400.0)).encode(),
                     "summary.images_per_s is -400.0, expected a positive number"),
    "ips '400'": (json.dumps(good_doc(images_per_s="400")).encode(),
                  "summary.images_per_s is a str ('400'), expected a number"),
    "schema_version 0": (doc_with(schema_version=0), "schema_version must be 1 or more, not 0"),
    "schema_version -3": (doc_with(schema_version=-3), "schema_version must be 1 or more"),
    "schema_version '2'": (doc_with(schema_version="2"),
                           "schema_version must be a whole number, not '2'"),
    "schema_version 3": (doc_with(schema_version=3),
                         "result format 3 is newer than this tool understands (2)"),
    "created not-a-date": (doc_with(created="not-a-date"),
                           "created 'not-a-date' is not an ISO 8601 date"),
    "created missing": (doc_with(created=DROP), "created is missing"),
    "baseline version '2'": (baseline_with("2"), "version must be a whole number, not '2'"),
    "baseline version -1": (baseline_with(-1), "version must be 1 or more, not -1"),
    "baseline version 4": (baseline_with(4),
                           "baseline format 4 is newer than this tool understands (3)"),
    "epochs row a number": (doc_with(epochs=[5]), "epochs[0] is a int, expected an object"),
    "config batch '64'": (json.dumps({**good_doc(), "config": {"batch_size": "64"}}).encode(),
                          "config.batch_size is a str ('64'), expected a number"),
}

VERBS: dict[str, Callable[[Path, Path], list[str]]] = {
    "compare": lambda bad, tmp: ["compare", str(bad), str(write_all(tmp / "good", *runs()))],
    "report": lambda bad, tmp: ["report", str(bad), "--out", str(tmp / "rep")],
    "export": lambda bad, tmp: ["export", str(bad), "--to", str(tmp / "x.csv")],
    "history": lambda bad, tmp: ["history", str(bad), "--out", str(tmp / "site")],
    "ci --baseline": lambda bad, tmp: ["ci", "--baseline", str(bad)],
}


def one_line(code: int, err: list[str], want_code: int, needle: str) -> None:
    text = "\n".join(err)
    assert "Traceback" not in text
    assert code == want_code and len(err) == 1, (code, err)
    assert needle in err[0], err[0]


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_named_hostile_file_is_one_line_and_exit_2(case, verb, tmp_path, bench_cli) -> None:
    data, needle = HOSTILE[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    code, err = bench_cli(*VERBS[verb](bad, tmp_path))
    one_line(code, err, 2, needle)
    assert err[0].startswith(f"bench: error: {bad}")  # the file is named


@pytest.mark.parametrize("case", ["100000-deep", "ips NaN", "ips 0", "ips '400'",
                                  "created not-a-date", "baseline version '2'"])
def test_a_hostile_file_in_a_folder_is_skipped_with_one_line(case, tmp_path, bench_cli) -> None:
    data, needle = HOSTILE[case]
    base = write_all(tmp_path / "base", *runs())
    (base / "bad.json").write_bytes(data)
    cand = write_all(tmp_path / "cand", *runs())
    code, err = bench_cli("compare", base, cand)
    assert code == 0 and len(err) == 1 and "Traceback" not in "\n".join(err), err
    assert err[0].startswith(f"bench: warning: skipped {base / 'bad.json'}") and needle in err[0]
    assert len(load_docs([base])) == 3  # nothing else lost


# --------------------------------------------------------------------------- not files


def _limited() -> None:
    """The child may not take the machine down if a regression reads without limit."""
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def bench_subprocess(*argv: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_S, preexec_fn=_limited)


def finishes(fn: Callable[[], Any]) -> Any:
    """fn's result or exception, from a thread given HANG_S to return (it must not block)."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(HANG_S)
    assert not t.is_alive(), "the reader blocked"
    return box


@pytest.fixture
def zero_link(tmp_path: Path) -> Path:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    folder = write_all(tmp_path / "runs", *runs())
    (folder / "zero.json").symlink_to("/dev/zero")
    return folder


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    folder = write_all(tmp_path / "runs", *runs())
    os.mkfifo(folder / "x.json")
    return folder


def test_symlink_to_dev_zero_is_never_read(zero_link, tmp_path) -> None:
    link = zero_link / "zero.json"
    box = finishes(lambda: read_result(link))
    assert isinstance(box.get("error"), BenchError)
    assert "a symlink to a character device, not a regular file" in str(box["error"])
    docs = finishes(lambda: load_docs([zero_link]))["value"]
    assert len(docs) == 3  # the folder's results, without the link
    proc = bench_subprocess("compare", zero_link, write_all(tmp_path / "cand", *runs()))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert str(link) in line and "outside the folder being read" in line


def test_a_fifo_named_json_never_blocks(fifo, tmp_path) -> None:
    box = finishes(lambda: read_result(fifo / "x.json"))
    assert "a FIFO, not a regular file" in str(box["error"])
    assert len(finishes(lambda: load_docs([fifo]))["value"]) == 3
    proc = bench_subprocess("compare", fifo, write_all(tmp_path / "cand", *runs()))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert f"skipped {fifo / 'x.json'}" in line and "a FIFO" in line
    proc = bench_subprocess("report", fifo / "x.json", "--out", tmp_path / "rep")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "a FIFO" in proc.stderr


def test_symlink_policy(tmp_path, capsys) -> None:
    """In a folder: a link to a file inside it is read, one out of it skipped; a named link to
    a regular file is read (the user chose it)."""
    other = write_all(tmp_path / "other", make_result("fc"))
    target = next(other.glob("*.json"))
    folder = write_all(tmp_path / "runs", make_result())
    (folder / "inside.json").symlink_to(next(folder.glob("*.json")).name)
    (folder / "out.json").symlink_to(target)
    (folder / "loop.json").symlink_to("loop.json")
    docs = load_docs([folder])
    assert [d["config"]["model"] for d in docs] == ["cnn"]  # inside.json is the same run: once
    err = capsys.readouterr().err
    assert "outside the folder being read" in err and "loop.json" in err
    assert read_result(folder / "out.json")["config"]["model"] == "fc"


def test_a_folder_named_json_is_walked_not_read(tmp_path, capsys) -> None:
    write_all(tmp_path / "runs" / "more.json", make_result())
    assert len(load_docs([tmp_path / "runs"])) == 1 and capsys.readouterr().err == ""


def test_a_file_over_the_cap_is_refused_unread(tmp_path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: nothing is written, nothing must be read
        f.truncate(g.MAX_RESULT_BYTES + 1)
    with pytest.raises(BenchError, match="over the 32.0 MiB cap for a result file"):
        read_result(big)


def test_the_depth_scan_ignores_brackets_in_strings() -> None:
    assert g.nesting_depth('{"a": "[[[[[[", "b": [[1]], "c": "\\"]]"}') == 3
    assert g.loads('{"a": "' + "[" * 1000 + '"}', "mem") == {"a": "[" * 1000}
    with pytest.raises(g.Refused, match="nested 65 levels"):
        g.loads("[" * 65 + "]" * 65, "mem")


# --------------------------------------------------------------------------- duplicates


def test_the_same_runs_three_times_in_a_folder_are_counted_once(tmp_path, bench_cli) -> None:
    folder = write_all(tmp_path / "runs", *runs(n=2))
    files = sorted(folder.glob("*.json"))
    (folder / "copy").mkdir()
    for f in files:
        shutil.copy(f, folder / "copy" / f.name)
    write_baseline(folder / "saved-baseline.json", [read_result(f) for f in files], A100)
    code, err = bench_cli("export", folder, "--to", tmp_path / "x.csv")
    assert code == 0 and len(err) == 1 and "Traceback" not in err[0]
    assert "2 run(s) found in more than one file" in err[0] and "in 3 files" in err[0]
    assert len(pd.read_csv(tmp_path / "x.csv")) == 2
    assert len(load_docs([folder])) == 2


# --------------------------------------------------------------------------- history


def _results(tmp_path: Path) -> Path:
    return write_all(tmp_path / "results", *runs())


def test_an_old_history_store_that_is_a_fifo_does_not_block(tmp_path) -> None:
    store = tmp_path / "h"
    store.mkdir()
    os.mkfifo(store / "nvidia-a100.jsonl")
    assert finishes(lambda: read_history(store))["value"] == []  # skipped with one line
    proc = bench_subprocess("history", store, "--out", tmp_path / "site")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not a regular file" in proc.stderr and "no results in it" in proc.stderr


def _store_with_a_bad_line(tmp_path: Path, line: bytes) -> Path:
    """An old history store of one good record, then `line` appended to its file."""
    store = tmp_path / "h"
    store.mkdir()
    (record,) = build_records([r.to_dict() for r in runs()])
    (store / "nvidia-a100.jsonl").write_bytes(json.dumps(record).encode() + b"\n" + line
                                              + b"\n")
    return store


@pytest.mark.parametrize("line, needle", [
    (DEEP, "nested 100,000 levels deep"),
    (b'{"kind": "bench-history", "images_per_s": NaN}', "images_per_s is NaN"),
    (b"[" + b"1," * (g.MAX_LINE_BYTES // 2) + b"1]", "over 256 KiB"),
    (b'{"kind": "bench-history", "version": "1"}', "version must be a whole number"),
    (b'{"kind": "bench-history", "version": 1, "device": "d", "config": "c", "date": "x"}',
     "date 'x' is not an ISO 8601 date"),
])
def test_a_hostile_history_line_is_skipped(line, needle, tmp_path, capsys) -> None:
    store = _store_with_a_bad_line(tmp_path, line)
    assert len(read_history(store)) == 1
    (warning,) = capsys.readouterr().err.splitlines()
    assert "skipped 1 line(s)" in warning and needle in warning


def test_history_reader_warns_once_per_file_with_the_reason(tmp_path, capsys) -> None:
    store = _store_with_a_bad_line(tmp_path, DEEP)
    assert len(read_history(store)) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "skipped 1 line(s)" in line and "line 2: " in line and "nested 100,000" in line


# --------------------------------------------------------------------------- stale .tmp


def test_a_deep_stale_tmp_does_not_stop_the_next_run(tiny_data, tmp_path, bench_cli) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".20260101T000000-fc-mnist-r0-abc.json.k3j4.tmp"
    stale.write_bytes(DEEP)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    code, err = bench_cli("run", "--model", "fc", "--device", "cpu", "--data-dir", tiny_data[0],
                          "--max-steps", "3", "--out", out, "--quiet")
    assert code == 0 and "Traceback" not in "\n".join(err), err
    assert any(f"removed {stale}" in line for line in err)
    assert not stale.exists() and len(list(out.glob("*.json"))) == 1


def test_a_complete_stale_tmp_is_still_recovered(tmp_path) -> None:
    from bench.results import prepare_out_dir

    doc = make_result()
    stale = tmp_path / f".{doc.file_name()}.zz.tmp"
    stale.write_text(json.dumps(doc.to_dict()))
    os.utime(stale, (time.time() - 3600,) * 2)
    (note,) = prepare_out_dir(tmp_path)
    assert note.startswith("recovered") and (tmp_path / doc.file_name()).exists()


# --------------------------------------------------------------------------- peak cache


@pytest.mark.parametrize("kind", ["deep", "fifo", "dev-zero", "nan"])
def test_a_hostile_peak_cache_is_ignored_with_one_line(kind, capsys) -> None:
    import torch

    from bench.measure import peak

    cpu = torch.device("cpu")
    path = peak._cache_path(cpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "deep":
        path.write_bytes(DEEP)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b'{"flops": {"fp32": NaN}, "copy_bytes_per_s": 1e9}')
    peak._WARNED.clear()
    capsys.readouterr()
    assert finishes(lambda: peak.load_cached_peak(cpu))["value"] is None  # MFU unknown
    (line,) = capsys.readouterr().err.splitlines()
    assert "ignoring the peak cache" in line and str(path) in line


# --------------------------------------------------------------------------- round trips


def test_what_bench_writes_it_reads_back(tmp_path) -> None:
    """A calibration holding NaN is written as null: the reader refuses NaN, so the writer
    must never produce it."""
    docs = [read_result(write_result(r, tmp_path / "r")) for r in runs()]
    write_baseline(tmp_path / "b.json", docs, A100, {"configs": [], "spread": float("nan")})
    base, calibration = read_baseline(tmp_path / "b.json")
    assert len(base) == 3 and calibration == {"configs": [], "spread": None}
    assert len(read_docs(tmp_path / "b.json")) == 3
