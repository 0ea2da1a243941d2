"""The pytest-benchmark suite in benchmarks/: ids, groups, pinned threads, machine info.

Collected in a subprocess (the suite has its own conftest and options); nothing is timed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GROUPS = {"test_bench_train_step.py": "train-step", "test_bench_loaders.py": "loader-epoch",
          "test_bench_kernels.py": "batch-prep"}

# a plugin that prints, per collected benchmark, its id, its group and torch's thread count
PLUGIN = '''
import torch

def pytest_collection_finish(session):
    for item in session.items:
        mark = item.get_closest_marker("benchmark")
        group = mark.kwargs.get("group") if mark else None
        print(f"ITEM {item.nodeid} {group} {torch.get_num_threads()}")
'''


def _collect(tmp_path: Path, *args: str) -> list[list[str]]:
    (tmp_path / "show_items.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--collect-only", "-q",
         "-p", "no:cacheprovider", "-p", "show_items", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("ITEM ")]


def test_every_benchmark_has_its_kinds_group_and_pinned_threads(tmp_path: Path) -> None:
    items = _collect(tmp_path)
    assert len(items) >= 10
    for nodeid, group, threads in items:
        assert group == GROUPS[nodeid.split("::")[0].split("/")[-1]], nodeid
        assert threads == "1", nodeid  # pinned to the default before collection


def test_ids_select_one_kind_and_model(tmp_path: Path) -> None:
    picked = _collect(tmp_path, "-k", "train_step and fc", "--torch-threads", "2")
    assert [(i[0].split("::")[1], i[2]) for i in picked] == [("test_train_step[fc]", "2")]
    # -k is a substring match: "fc" also finds ffcv's loader epochs, never another model's step
    by_kind: dict[str, set[str]] = {}
    for nodeid, group, _ in _collect(tmp_path, "-k", "fc"):
        by_kind.setdefault(group, set()).add(nodeid.split("::")[1])
    assert by_kind == {"train-step": {"test_train_step[fc]"},
                       "loader-epoch": {"test_loader_epoch[ffcv-fp32]",
                                        "test_loader_epoch[ffcv-bf16]"}}


def test_machine_info_carries_the_environment_once() -> None:
    spec = importlib.util.spec_from_file_location("bench_conftest", ROOT / "benchmarks" /
                                                  "conftest.py")
    assert spec and spec.loader
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    info: dict = {"cpu": {}}
    conftest.pytest_benchmark_update_machine_info(None, info)
    torch = pytest.importorskip("torch")
    assert info["bench"]["torch_threads"] == torch.get_num_threads()
    assert {"packages", "cpu_model", "git_commit"} <= set(info["bench"]["env"])
    assert "extra_info" not in (ROOT / "benchmarks" / "conftest.py").read_text()
