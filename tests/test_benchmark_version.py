"""The benchmark version (bench.results.version): what defines the measured work, so that a
changed benchmark is never compared with its old self, while speed settings stay comparable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.gate.compare import compare_paths
from bench.gate.compare import main as compare_main
from bench.history.records import build_records
from bench.history.series import build_series
from bench.results import Result, flatten, write_result
from bench.results.version import benchmark_of, benchmark_parts, row_changes

RECIPE = {"name": "fast", "optimizer": "sgd", "lr": 0.1, "epochs": 2.0, "batch_size": 128,
          "augment": True, "norm": "cifar10", "compile": "none", "threads": 0, "workers": 0,
          "channels_last": True, "fused_optimizer": True, "precision": "bf16", "loader": "device"}
MODEL = {"name": "lenet", "params": 62006, "architecture": "0123456789ab"}
DATA = {"name": "cifar10", "family": "cifar10", "real": True, "n_train": 50000, "n_test": 10000,
        "shape": [32, 32, 3], "permuted": False, "source": "/somewhere/on/this/machine"}


def doc(recipe: dict | None = None, model: dict | None = None, **config) -> dict:
    cfg = {"model": "lenet", "dataset": "cifar10", "loader": "device", "precision": "bf16",
           "batch_size": 128, "recipe": "fast", "measure": "train", "device": "cpu", **config}
    return {"config": cfg, "recipe": {**RECIPE, **(recipe or {})},
            "model": {**MODEL, **(model or {})}, "data": dict(DATA)}


def test_the_version_is_stable_and_ignores_speed_settings_and_paths() -> None:
    base = benchmark_of(doc())
    assert base == benchmark_of(doc()) and len(base["version"]) == 12
    faster = doc(recipe={"compile": "max-autotune", "threads": 8, "workers": 4,
                         "channels_last": False, "fused_optimizer": False})
    faster["data"]["source"] = "/elsewhere"
    assert benchmark_of(faster) == base


@pytest.mark.parametrize(("change", "part"), [
    ({"recipe": {"lr": 0.2}}, "recipe"),
    ({"recipe": {"augment": False}}, "recipe"),
    ({"model": {"architecture": "ba9876543210"}}, "model"),
    ({"model": {"params": 62007}}, "model"),
    ({"measure": "throughput"}, "measure"),
])
def test_a_change_of_the_work_changes_the_version_and_names_its_part(change, part) -> None:
    changed = doc(**change)
    assert benchmark_of(changed)["version"] != benchmark_of(doc())["version"]
    parts, other = benchmark_parts(doc()), benchmark_parts(changed)
    assert [p for p in parts if parts[p] != other[p]] == [part]
    rows = [flatten({**d, "benchmark": benchmark_of(d)}) for d in (doc(), changed)]
    assert row_changes(*rows) == [part]


def test_a_result_from_before_versions_is_compared_as_before() -> None:
    new = flatten({**doc(), "benchmark": benchmark_of(doc())})
    old = flatten(doc())
    assert old["benchmark_version"] is None and row_changes(old, new) == []


def test_a_damaged_benchmark_section_is_no_version() -> None:
    row = flatten({**doc(), "benchmark": {"version": 7, "parts": ["x"]}})
    assert row["benchmark_version"] is None and row["benchmark_recipe"] is None


def _write(folder: Path, recipe: dict, ips: float, n: int = 3) -> Path:
    folder.mkdir()
    for i in range(n):
        d = doc(recipe=recipe)
        write_result(Result(config={**d["config"], "seed": i}, env={"host": "h"},
                            recipe=d["recipe"], model=d["model"], data=d["data"],
                            summary={"images_per_s": ips * (1 + 0.01 * i)}, repeat=i), folder)
    return folder


def test_every_written_result_carries_its_version(tmp_path: Path) -> None:
    folder = _write(tmp_path / "a", {}, 1000.0, n=1)
    written = json.loads(next(folder.glob("*.json")).read_text())
    assert written["benchmark"] == benchmark_of(written)


def test_compare_refuses_runs_of_a_changed_recipe_in_one_line(tmp_path: Path, capsys) -> None:
    base = _write(tmp_path / "base", {}, 1000.0)
    cand = _write(tmp_path / "cand", {"lr": 0.2, "epochs": 3.0}, 1000.0)
    with pytest.raises(BenchError, match=r"different work \(recipe changed"):
        compare_paths(str(base), str(cand), 0.05)
    assert compare_main([str(base), str(cand)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recipe changed" in err[0] and "Traceback" not in err[0]


def test_compare_of_the_same_work_at_other_speed_settings_goes_on(tmp_path: Path) -> None:
    base = _write(tmp_path / "base", {}, 1000.0)
    cand = _write(tmp_path / "cand", {"compile": "default", "threads": 4}, 1000.0)
    assert compare_paths(str(base), str(cand), 0.05).rows[0].verdict == "ok"


def test_the_history_never_reads_a_changed_benchmark_as_a_regression(tmp_path: Path) -> None:
    def docs(recipe: dict, ips: float, commit: str, date: str) -> list[dict]:
        out = []
        for i in range(3):
            d = doc(recipe=recipe)
            d.update(status="ok", run_id=f"{commit}{i}", created=date, env={"git_commit": commit},
                     summary={"images_per_s": ips * (1 + 0.001 * i)})
            d["benchmark"] = benchmark_of(d)
            out.append(d)
        return out

    old = build_records(docs({}, 1000.0, "a", "2026-01-01T00:00:00+00:00"), "suite")
    same = build_records(docs({}, 500.0, "b", "2026-01-02T00:00:00+00:00"), "suite")
    other = build_records(docs({"epochs": 9.0}, 500.0, "c", "2026-01-02T00:00:00+00:00"),
                          "suite")
    assert build_series(old + same)[0].regressions  # the same work at half the speed
    assert not build_series(old + other)[0].regressions  # other work: no regression


def test_a_hostile_version_string_is_shown_inert(tmp_path: Path, capsys) -> None:
    """Versions come from files written elsewhere: the refusal line shows them escaped."""
    base = _write(tmp_path / "base", {}, 1000.0)
    cand = _write(tmp_path / "cand", {}, 1000.0)
    for i, path in enumerate(sorted(cand.glob("*.json"))):
        doc = json.loads(path.read_text())
        doc["benchmark"] = {"version": "\x1b[2J\x07evil", "parts": {"recipe": f"\x1b]0;x{i}"}}
        path.write_text(json.dumps(doc))
    assert compare_main([str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "different work" in err
    assert len(err.strip().splitlines()) == 1


def test_the_architecture_digest_is_the_networks_not_the_process() -> None:
    import torch.nn as nn

    from bench.results.version import architecture_digest

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.fn = nn.Linear(4, 2), object()

        def extra_repr(self) -> str:
            return f"fn={self.fn!r}"  # an object address, other in every process

    assert architecture_digest(Holder()) == architecture_digest(Holder())
    assert architecture_digest(nn.Linear(4, 2)) != architecture_digest(nn.Linear(4, 3))
