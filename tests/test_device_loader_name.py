"""The device-resident loader is called `device` (it runs on a CPU too); `gpu`, its former
name, is still accepted on the command line and read from old result files as `device`."""

import argparse

import numpy as np
import pytest
import torch

from bench.data.loaders import LOADERS, canonical_loader, get_loader_factory
from bench.errors import BenchError
from bench.results.rows import config_label, run_key
from bench.spec.runspec import RunConfig, add_run_flags


def test_the_registry_names_device_and_keeps_gpu_as_an_alias() -> None:
    assert LOADERS == ("torch", "device", "ffcv") and "gpu" not in LOADERS
    assert canonical_loader("gpu") == "device" and canonical_loader("torch") == "torch"
    assert get_loader_factory("gpu") is get_loader_factory("device")
    with pytest.raises(BenchError, match="unknown loader 'dali'; choices: torch, device, ffcv"):
        get_loader_factory("dali")


def test_loader_gpu_on_the_command_line_reads_as_device() -> None:
    parser = argparse.ArgumentParser()
    add_run_flags(parser, include=("model", "loader"))
    args = parser.parse_args(["--model", "fc", "--loader", "gpu"])
    assert RunConfig.from_args(args).loader == "device"


def test_old_results_with_loader_gpu_key_and_label_as_device() -> None:
    """Read through the schema upgrade (the one place the old name is mapped)."""
    from bench.results.schema import upgrade

    old = {"model": "cnn", "dataset": "mnist", "loader": "gpu", "precision": "bf16"}
    new = {**old, "loader": "device"}
    read = upgrade({"schema_version": 1, "config": old})["config"]
    assert run_key(read) == run_key(new)
    assert config_label(run_key(read)).startswith("cnn/mnist device bf16")


def test_the_loader_describes_itself_as_device() -> None:
    from bench.data.loaders import LoaderConfig, make_loader
    from bench.spec.datasets import DatasetArrays

    data = DatasetArrays("ids", "mnist", np.zeros((8, 28, 28, 1), np.uint8), np.arange(8),
                         np.zeros((4, 28, 28, 1), np.uint8), np.arange(4),
                         [str(i) for i in range(10)], real=False, source="test")
    ld = make_loader("gpu", data, LoaderConfig(split="train", batch_size=4,
                                               device=torch.device("cpu")))
    assert ld.describe()["name"] == "device" and type(ld).__name__ == "DeviceLoader"


def test_old_result_files_read_loader_gpu_as_device() -> None:
    """Every reader (suite tables included) sees 'device': the schema-1 upgrade renames it."""
    from bench.results.schema import upgrade
    from bench.results.suite_tables import runs_table

    old = {"schema_version": 1, "status": "ok",
           "config": {"model": "cnn", "dataset": "mnist", "recipe": "fast", "loader": "gpu",
                      "precision": "bf16", "batch_size": 512},
           "summary": {"images_per_s": 1000.0}, "data": {"real": True}}
    doc = upgrade(old)
    assert doc["config"]["loader"] == "device" and old["config"]["loader"] == "gpu"
    table = runs_table([doc])
    assert "| device |" in table and "gpu" not in table
