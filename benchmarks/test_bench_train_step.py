"""One SGD train step per course model on a synthetic batch, on CPU.

Run: `pytest benchmarks/test_bench_train_step.py --benchmark-autosave`, later the same with
`--benchmark-compare --benchmark-compare-fail=median:5%` (see docs/development.md). Ids are the
model names (`-k "train_step and fc"`: `-k fc` alone also matches ffcv's loader epochs).
Batches are small (64; 16 for VGG) so the whole file takes well under a minute.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.spec.models import build_model

# model -> (channels, side, batch size)
CASES = {
    "fc": (1, 28, 64),
    "cnn": (1, 28, 64),
    "lenet": (3, 32, 64),
    "vgg11": (3, 32, 16),
    "vgg16": (3, 32, 16),
}


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("name", list(CASES))
def test_train_step(benchmark, name: str) -> None:
    channels, side, batch = CASES[name]
    torch.manual_seed(0)
    model = build_model(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, channels, side, side)
    y = torch.randint(0, 10, (batch,))

    def step() -> torch.Tensor:
        # cross_entropy also fits fc/cnn: log_softmax of log-probabilities leaves them unchanged
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    step()  # first call allocates buffers and optimizer state: keep it out of the timing
    benchmark.extra_info.update(model=name, batch_size=batch)
    loss = benchmark(step)
    assert torch.isfinite(loss)
