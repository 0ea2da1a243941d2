"""The readers' shared inputs: folders without reference/, load_results' forms and column types,
`--label DIR=NAME` on compare, report and export, and the compare text's width and header."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_compare import make_result, runs, write_all

from bench import report
from bench.errors import BenchError
from bench.gate import compare
from bench.gate.compare import compare_runs, format_text
from bench.results import (
    Result,
    docs_rows,
    export,
    load_docs,
    load_results,
    parse_labels,
    provenance,
    read_result,
    write_result,
)

ROOT = Path(__file__).resolve().parent.parent


def _env_result(model: str, ips: float, commit: str, torch: str, cuda: str,
                device: str = "NVIDIA A100", repeat: int = 0) -> Result:
    r = make_result(model, ips, device=device, repeat=repeat,
                    created=f"2026-11-2{repeat}T10:00:00+00:00")
    r.env.update(git_commit=commit, cuda_version=cuda, packages={"torch": torch})
    return r


# --------------------------------------------------------------------------- folders


def test_reference_folder_is_skipped_unless_named(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_result(make_result("cnn"), results / "mine")
    ref = results / "reference" / "cpu-box"
    write_result(make_result("cnn", repeat=1), ref)
    write_result(make_result("fc"), ref)
    assert len(load_docs([results])) == 1  # the committed runs are no repeats of mine
    assert len(load_docs([results / "reference"])) == 2  # named, the folder is read
    assert len(load_docs([ref])) == 2  # and so is a path inside it
    one = next(ref.glob("*.json"))
    assert [d["_file"] for d in load_docs([one])] == [str(one)]


def test_committed_reference_runs_stay_out_of_results() -> None:
    committed = ROOT / "results" / "reference"
    if not committed.is_dir():
        pytest.skip("no committed reference runs")
    assert load_docs([committed]) and not any(
        "reference" in Path(d["_file"]).parts for d in load_docs([ROOT / "results"]))


# --------------------------------------------------------------------------- load_results


def test_load_results_takes_a_path_a_list_or_a_glob(tmp_path: Path) -> None:
    for side, n in (("a100", 2), ("h100", 3)):
        write_all(tmp_path / side, *runs("cnn", n=n))
    assert len(load_results(tmp_path / "a100")) == 2  # a Path
    assert len(load_results(str(tmp_path / "h100"))) == 3  # a str is one path, not characters
    assert len(load_results([tmp_path / "a100", str(tmp_path / "h100")])) == 5
    assert len(load_results(str(tmp_path / "*100"))) == 5  # a glob
    assert len(load_results(f"{tmp_path}/**/*.json")) == 5
    with pytest.raises(BenchError, match="no file or folder matches"):
        load_results(str(tmp_path / "v*"))


def test_load_results_column_types(tmp_path: Path) -> None:
    write_all(tmp_path, *runs("cnn", n=2))  # time_to_accuracy_s and max_steps None in every run
    df = load_results(tmp_path)
    assert isinstance(df["created"].dtype, pd.DatetimeTZDtype)
    for col in ("time_to_accuracy_s", "max_steps", "target_accuracy", "images_per_s"):
        assert df[col].dtype == float, col
    assert df["time_to_accuracy_s"].isna().all()
    assert df["created"].iloc[0].year >= 2026
    assert pd.api.types.is_string_dtype(df["model"])  # text stays text


# --------------------------------------------------------------------------- --label


def _two_folders_one_device(tmp_path: Path) -> tuple[Path, Path]:
    a = write_all(tmp_path / "torch-2.13", *runs("cnn", 1000.0))
    b = write_all(tmp_path / "torch-2.14", *runs("cnn", 1200.0))
    return a, b


def test_parse_labels_bad_syntax_is_one_line(tmp_path: Path) -> None:
    for spec, needle in (("results", "expected DIR=NAME"), ("=A100", "expected DIR=NAME"),
                         (f"{tmp_path}=", "expected DIR=NAME"),
                         (f"{tmp_path}/nope=X", "no such file or folder")):
        with pytest.raises(BenchError, match=needle) as err:
            parse_labels([spec])
        assert "\n" not in str(err.value)
    with pytest.raises(BenchError, match="two names"):
        parse_labels([f"{tmp_path}=A", f"{tmp_path}/=B"])
    folder = tmp_path / "bs=256"  # the last '=' splits: a folder name may hold one
    folder.mkdir()
    assert parse_labels([f"{folder}=big batch"]) == {folder.resolve(): "big batch"}


def test_label_makes_two_systems_of_one_device(tmp_path: Path, capsys) -> None:
    a, b = _two_folders_one_device(tmp_path)
    rc = compare.main([str(a), str(b), "--label", f"{a}=old", "--label", f"{b}=new"])
    out = capsys.readouterr().out
    assert rc == 0 and "baseline:  old (NVIDIA A100)" in out
    assert "candidate: new (NVIDIA A100)" in out
    files = report.write_report([a, b], tmp_path / "rep", labels=[f"{a}=old", f"{b}=new"])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "2 device(s): new, old" in md and "against new" in md
    assert any(f.name == "speedup_throughput.png" for f in files)
    unlabelled = (report.write_report([a, b], tmp_path / "rep2")[-1]).read_text()
    assert "1 device(s)" in unlabelled  # without labels one device: no speed-up
    csv = export.export([a, b], tmp_path / "x.csv", labels=[f"{a}=old"])
    assert sorted(set(pd.read_csv(csv)["device_label"])) == ["NVIDIA A100", "old"]


def test_label_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    a, b = _two_folders_one_device(tmp_path)
    other = tmp_path / "empty"
    other.mkdir()
    for argv in (["--label", "nonsense"], ["--label", f"{other}=X"]):
        assert compare.main([str(a), str(b), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bench: error: --label") and "\n" not in err
    from bench.cli import main as cli_main

    for verb in (["report", str(a), "--out", str(tmp_path / "r")],
                 ["export", str(a), "--to", str(tmp_path / "x.csv")]):
        assert cli_main([*verb, "--label", "no-equals-sign"]) == 2
        assert "expected DIR=NAME" in capsys.readouterr().err


def test_most_specific_label_wins(tmp_path: Path) -> None:
    a, b = _two_folders_one_device(tmp_path)
    docs = load_docs([tmp_path])
    from bench.results import apply_labels

    labels = parse_labels([f"{tmp_path}=all", f"{b}=new"])
    names = {Path(d["_file"]).parent.name: d["_label"] for d in apply_labels(docs, labels)}
    assert names == {"torch-2.13": "all", "torch-2.14": "new"}


# --------------------------------------------------------------------------- compare text


def test_compare_text_fits_120_columns_and_names_each_side(tmp_path: Path) -> None:
    long = dict(compile="max-autotune", channels_last=True, recipe="fast", max_steps=300,
                dataset="synthetic-cifar10", batch_size=1024)
    base_runs = [_env_result("vgg11", 1234567.0 * (1 + i / 100), "a" * 40, "2.13.0", "12.6",
                             repeat=i) for i in range(3)]
    cand_runs = [_env_result("vgg11", 1200000.0 * (1 + i / 50), "b" * 40 + "-dirty", "2.14.1",
                             "13.0", device="NVIDIA H100 80GB HBM3", repeat=i) for i in range(3)]
    for r in (*base_runs, *cand_runs):
        r.config.update(long)
    deep = tmp_path / ("a-very-long-folder-name-" * 6) / "runs"
    base = write_all(deep / "a100", *base_runs, *runs("cnn", n=1), make_result(
        "lenet", status="oom", **long))
    cand = write_all(tmp_path / "h100", *cand_runs,
                     *runs("fc", n=2, device="NVIDIA H100 80GB HBM3"))
    cmp = compare.compare_paths(str(base), str(cand), 0.05)
    text = format_text(cmp)
    widths = [len(line) for line in text.splitlines()]
    assert max(widths) <= compare.TEXT_WIDTH, text
    first, second = text.splitlines()[:2]
    assert first.startswith("baseline:") and "NVIDIA A100" in first and "aaaaaaaaaa" in first
    assert "torch 2.13.0" in first and "CUDA 12.6" in first and "| 2026-11-20.." in first
    assert second.startswith("candidate:") and "bbbbbbbbbb-dirty" in second
    assert "torch 2.14.1" in second and "CUDA 13.0" in second
    # nothing dropped: every configuration, unmatched one and skipped run is still named
    for needle in ("vgg11/synthetic-cifar10", "Only in baseline", "Only in candidate",
                   "Skipped runs", "result:"):
        assert needle in text


def test_compare_text_without_provenance_still_fits() -> None:
    base = [make_result(f"m{i}" * 30, 1000.0) for i in range(2)]
    cand = [make_result(f"m{i}" * 30, 900.0) for i in range(2)]
    cmp = compare_runs(docs_rows([r.to_dict() for r in base]),
                       docs_rows([r.to_dict() for r in cand]), 0.05)
    text = format_text(cmp)
    assert max(len(line) for line in text.splitlines()) <= compare.TEXT_WIDTH
    assert text.startswith("baseline:  NVIDIA A100")
    assert "needs --repeats 2+" in text  # the reason moved below the table, still there


def test_provenance_summarises_fingerprints(tmp_path: Path) -> None:
    write_all(tmp_path, *[_env_result("cnn", 1000.0, c * 40, t, "13.0", repeat=i)
                          for i, (c, t) in enumerate([("a", "2.14.1"), ("b", "2.14.1"),
                                                      ("c", "2.13.0")])])
    p = provenance(load_docs(tmp_path))
    assert p.runs == 3 and p.torch == ["2.13.0", "2.14.1"] and p.dates == ["2026-11-20",
                                                                            "2026-11-22"]
    assert "commit aaaaaaaaaa, bbbbbbbbbb (+1)" in p.line()
    doc = read_result(next(tmp_path.glob("*.json")))
    assert json.loads(json.dumps(provenance([doc]).__dict__))["runs"] == 1


def test_copy_of_reference_results_compare(tmp_path: Path) -> None:
    """The committed reference runs load, label and compare end to end."""
    ref = ROOT / "results" / "reference"
    if not ref.is_dir():
        pytest.skip("no committed reference runs")
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(ref, a)
    shutil.copytree(ref, b)
    cmp = compare.compare_paths(str(a), str(b), 0.05, labels=[f"{a}=A", f"{b}=B"])
    assert cmp.base_devices == ["A"] and cmp.cand_devices == ["B"] and cmp.rows
    assert max(len(line) for line in format_text(cmp).splitlines()) <= compare.TEXT_WIDTH


def test_text_table_wraps_one_column_to_fit() -> None:
    from bench.results import text_table

    rows = [["a fairly long configuration name that will not fit", "12,345", "ok"]]
    table = text_table(["configuration", "img/s", "verdict"], rows, width=40, wrap=0)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 40 and len(lines) > 2
    assert lines[2].startswith("  ")  # continuation lines are indented
    assert lines[1].startswith("a fairly long") and lines[1].endswith("12,345  ok")
    assert [line.strip() for line in lines[2:]] == ["configuration name", "that will not fit"]
    assert text_table(["x"], [["short"]], width=40) == "x\nshort"  # fits: unchanged
