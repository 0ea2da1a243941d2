"""pytest-benchmark cases for batch preparation (not part of the default test run).

Run: ``pytest benchmarks/test_bench_kernels.py``. CIFAR-10-shaped data resident on the device,
batch 512, pad 4, random crop offsets and flips. Every timed call synchronises CUDA, so the
figures are per-batch latency including the launch, not queued-launch throughput (for that, see
``benchmarks/kernel_timing.py``, which times back-to-back batches with CUDA events).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from kernel_timing import BenchInputs, make_inputs

from kernels import triton_available
from kernels.reference import prepare_batch_reference

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA"))]
DTYPES = [torch.bfloat16, torch.float32]


@pytest.fixture(scope="module", params=DEVICES)
def inputs(request: pytest.FixtureRequest) -> BenchInputs:
    return make_inputs(request.param)


def _bench(benchmark: Any, inputs: BenchInputs, fn: Callable, dtype: torch.dtype) -> None:
    """Benchmark ``fn`` cycling through the pre-drawn batches, after one warm-up call."""
    dev = inputs.data.device
    counter = itertools.count()

    def run() -> None:
        inputs.call(fn, next(counter), dtype)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    run()  # JIT / allocator warm-up, not timed
    benchmark.extra_info.update(device=str(dev), dtype=str(dtype), batch=512)
    benchmark(run)


@pytest.mark.benchmark(group="batch-prep")
@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp32"])
def test_bench_reference_eager(benchmark: Any, inputs: BenchInputs, dtype: torch.dtype) -> None:
    _bench(benchmark, inputs, prepare_batch_reference, dtype)


@pytest.mark.benchmark(group="batch-prep")
@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp32"])
def test_bench_triton(benchmark: Any, inputs: BenchInputs, dtype: torch.dtype) -> None:
    if inputs.data.device.type != "cuda":
        pytest.skip("the Triton kernel runs on CUDA only (CPU runs are interpreted)")
    if not triton_available():
        pytest.skip("triton cannot be imported")
    from kernels.triton_batch import prepare_batch_triton

    _bench(benchmark, inputs, prepare_batch_triton, dtype)
