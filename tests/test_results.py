import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.results import (
    CONFIG_KEYS,
    SCHEMA_VERSION,
    Result,
    config_label,
    device_label,
    device_slug,
    experiments_table,
    flatten,
    fmt_ips,
    fmt_num,
    fmt_percent,
    load_epochs,
    load_results,
    markdown_table,
    norm,
    num,
    read_result,
    repeats_table,
    run_key,
    runs_table,
    suite_table,
    text_table,
    validate_doc,
    write_result,
)

ROOT = Path(__file__).resolve().parent.parent


def _result(**kw) -> Result:
    cfg = {"model": "fc", "dataset": "mnist", "loader": "device", "precision": "fp32",
           "compile": "none", "channels_last": False, "batch_size": 64, "recipe": "fast",
           "device": "cpu"}
    return Result(config=cfg, env={"host": "h", "cpu_model": "cpu"},
                  summary={"images_per_s": 1000.0, "final_test_acc": 0.9, "loss": float("nan")},
                  epochs=[{"epoch": 0, "test_acc": 0.9, "cumulative_train_time_s": 1.0}], **kw)


def test_round_trip_and_dataframe(tmp_path: Path) -> None:
    p = write_result(_result(), tmp_path)
    doc = read_result(p)
    assert doc["schema_version"] == SCHEMA_VERSION and doc["summary"]["loss"] is None
    assert [q.name for q in tmp_path.iterdir()] == [p.name]  # no temporary files left
    write_result(_result(status="nan", message="diverged"), tmp_path)
    df = load_results([tmp_path])
    assert len(df) == 2 and set(df["status"]) == {"ok", "nan"}
    assert (df["images_per_s"] == 1000.0).all() and "device_label" in df
    ep = load_epochs([tmp_path])
    assert len(ep) == 2 and (ep["test_acc"] == 0.9).all()


def test_bad_result_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "future.json").write_text(json.dumps({"schema_version": 99, "config": {}}))
    (tmp_path / "foreign.json").write_text(json.dumps([1, 2]))
    for name, match in [("broken.json", "not a readable"), ("future.json", "newer"),
                        ("foreign.json", "not a bench result"), ("missing.json", "no such")]:
        with pytest.raises(BenchError, match=match) as err:
            read_result(tmp_path / name)
        assert "\n" not in str(err.value)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_result(_result(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_results_skips_baselines_like_load_docs(tmp_path: Path) -> None:
    run = write_result(_result(), tmp_path / "runs")
    baselines = tmp_path / "runs" / "baselines"
    baselines.mkdir()
    (baselines / "cpu.json").write_text(json.dumps([read_result(run)] * 2))  # copies of the run
    assert len(load_results([tmp_path])) == 1  # a folder's baselines/ are not repeats
    assert len(load_results([baselines / "cpu.json"])) == 2  # named, a baseline file is read
    ep = load_epochs([tmp_path])
    assert len(ep) == 1 and {"run_id", "device_label", "status", "repeat", *CONFIG_KEYS} <= set(ep)


def _doc() -> dict:
    return validate_doc(_result().to_dict(), "mem")


def test_labels_and_keys() -> None:
    env = {"cpu_model": "Zen", "torch_threads": 2, "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
    assert device_label(env, "cuda") == "NVIDIA H100 80GB HBM3"
    assert device_label(env, "cpu") == "CPU Zen x2"
    assert device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    row = flatten(_doc())
    assert run_key(row) == ("fc", "mnist", "device", "fp32", "none", False, 64, "fast", None,
                            "train", None)  # an absent measure reads as a training run
    assert config_label(run_key(row)) == "fc/mnist device fp32 bs64 recipe=fast"
    assert norm(float("nan")) is None and norm(128.0) == 128 and num(True) is None


def test_tables_escape_cells_and_pad_columns() -> None:
    assert markdown_table(["a", "b"], [["x|y", 1]]) == "| a | b |\n|---|---|\n| x\\|y | 1 |"
    assert text_table(["name", "n"], [["ab", 10]]) == "name  n\nab    10"
    assert fmt_num(None, ".2f") == fmt_num(float("nan"), ".2f") == "-"
    assert fmt_percent(0.9712) == "97.12"
    assert (fmt_ips(1234.5), fmt_ips(42.25)) == ("1,234", "42.2")


def _suite_doc(model: str, recipe: str, repeat: int = 0, status: str = "ok", real: bool = True,
               **summary: float) -> dict:
    cfg = {"model": model, "dataset": "mnist", "loader": "device", "precision": "fp32",
           "compile": "none", "channels_last": False, "batch_size": 64, "recipe": recipe,
           "world_size": 1}
    r = Result(config=cfg, env={}, status=status, repeat=repeat, data={"real": real},
               summary=summary)
    return validate_doc(r.to_dict(), "mem")


def test_suite_tables() -> None:
    """Golden output, byte for byte as the tables `bench suite` has always printed."""
    docs = [_suite_doc("fc", "seed", images_per_s=1500.0, epoch_time_s=40.0, final_test_acc=0.97,
                       best_test_acc=0.975, time_to_accuracy_s=80.0, target_accuracy=0.97,
                       warmup_time_s=0.5),
            _suite_doc("fc", "fast", images_per_s=30000.0, epoch_time_s=2.0, final_test_acc=0.98,
                       best_test_acc=0.981, time_to_accuracy_s=1.25, target_accuracy=0.97,
                       warmup_time_s=0.25, mfu=0.125),
            _suite_doc("fc", "fast", repeat=1, images_per_s=36000.0, epoch_time_s=1.5,
                       final_test_acc=0.96),
            _suite_doc("cnn", "fast", status="oom", real=False)]
    assert experiments_table(docs).splitlines()[1:] == [
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| fc on mnist | 97.00 | 80.00 | - | -x | 1,500 | 36,000 | 24.0x | 97.50 | - | - |",
        "| cnn on mnist (synthetic) | - | - | - | -x | - | - | -x | - | - | - |"]
    assert runs_table(docs).splitlines() == [
        "| model | dataset | recipe | loader | precision | CL | compile | bs | status | images/s"
        " | epoch s | accuracy % | time to target s | warm-up s | MFU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| fc | mnist | seed | device | fp32 | n | none | 64 | ok | 1,500 | 40.00 | 97.00 | 80.00"
        " | 0.50 | - |",
        "| fc | mnist | fast | device | fp32 | n | none | 64 | ok | 30,000 | 2.00 | 98.00 | 1.25"
        " | 0.25 | 12.5 |",
        "| fc | mnist | fast | device | fp32 | n | none | 64 | ok | 36,000 | 1.50 | 96.00 | -"
        " | - | - |",
        "| cnn | mnist (synthetic) | fast | device | fp32 | n | none | 64 | oom | - | - | - | -"
        " | - | - |"]
    assert repeats_table(docs).splitlines()[2:] == [
        "| fc/mnist/device/fp32 bs64 seed | 1 | 1,500 (1,500-1,500) | 40.00 (40.00-40.00)"
        " | 97.00 +- 0.00 |",
        "| fc/mnist/device/fp32 bs64 fast | 2 | 33,000 (30,000-36,000) | 1.75 (1.50-2.00)"
        " | 97.00 +- 1.41 |"]


def test_suite_table_from_files(tmp_path: Path) -> None:
    paths = [write_result(Result(config=_suite_doc("fc", "fast")["config"], env={}, repeat=r,
                                 summary={"images_per_s": 100.0 + r}), tmp_path)
             for r in range(2)]
    parts = suite_table(paths).split("\n\n")
    assert len(parts) == 3 and parts[2].endswith("| 2 | 100 (100-101) | - | - |")
    assert suite_table(paths[:1]).count("\n\n") == 1  # no repeats table without repeats


def test_readers_do_not_import_torch() -> None:
    """compare/report/export/ci stay quick to start: the library and they import no torch."""
    code = ("import sys, bench.gate.compare, bench.report, bench.results.export, bench.ci.job,"
            " bench.results;"
            " sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
