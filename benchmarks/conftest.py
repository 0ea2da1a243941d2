"""pytest-benchmark suite (not in the default test run; see docs/development.md).

- The environment is recorded once per saved run, in `machine_info["bench"]` (the
  `pytest_benchmark_update_machine_info` hook): a timing is only comparable with the machine,
  versions and thread count it came from.
- torch's intra-op threads are pinned before any benchmark (`--torch-threads`, default 1) and
  recorded there, so a timing does not follow the machine's core count or the order tests ran.
- Each kind of benchmark has its own `group=` (`train-step`, `loader-epoch`, `batch-prep`), so
  pytest-benchmark never ranks a train step against a loader epoch. Ids name what varies:
  `test_train_step[fc]`, `test_loader_epoch[ffcv-fp32]`, `test_bench_triton[cuda-bf16]`.
"""

from __future__ import annotations

from typing import Any

import pytest

DEFAULT_TORCH_THREADS = 1


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--torch-threads", type=int, default=DEFAULT_TORCH_THREADS,
                     help="torch intra-op threads for every benchmark (default"
                     f" {DEFAULT_TORCH_THREADS}); recorded in machine_info")


def pytest_configure(config: pytest.Config) -> None:
    """Pin torch's threads once, before any benchmark is collected or run."""
    threads = config.getoption("--torch-threads")
    if threads < 1:
        raise pytest.UsageError(f"--torch-threads {threads}: must be 1 or more")
    import torch

    torch.set_num_threads(threads)


def pytest_benchmark_update_machine_info(config: pytest.Config,
                                         machine_info: dict[str, Any]) -> None:
    """Store bench's environment fingerprint and the pinned thread count with the saved run."""
    import torch

    from bench.host.envinfo import fingerprint

    machine_info["bench"] = {"env": fingerprint(), "torch_threads": torch.get_num_threads()}
