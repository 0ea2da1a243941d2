import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.results import (
    SCHEMA_VERSION,
    Result,
    load_epochs,
    load_results,
    read_result,
    write_result,
)


def _result(**kw) -> Result:
    cfg = {"model": "fc", "dataset": "mnist", "loader": "gpu", "precision": "fp32",
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
