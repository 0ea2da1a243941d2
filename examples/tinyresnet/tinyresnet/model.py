"""A small ResNet for 32x32 CIFAR-10 images (three stages of one basic block each, 16-32-64
channels, about 78k parameters) and its spec: everything bench needs to train, time and gate it.

`spec` is the function the entry point names (pyproject.toml); it may also be named directly:
`bench run --model tinyresnet.model:spec` with this folder on PYTHONPATH.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import ModelSpec, Recipe


class Block(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (1x1 when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            blocks.append(Block(c_in, c_out, stride=1 if i == 0 else 2))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# Its own fast recipe (a spec without one gets bench's generic AdamW recipe): SGD nesterov on a
# one-cycle schedule, label smoothing, crop+flip; on a CPU fp32 eager (bf16 autocast slows CPU
# convolutions), on a GPU bf16, channels-last and compiled. Untuned, and no accuracy target is
# claimed: add `targets={"cifar10": 0.80}` once a run has shown that it reaches it.
FAST = Recipe("fast", batch_size=256, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
              weight_decay=5e-4, schedule="onecycle", warmup_frac=0.2, epochs=5,
              loader="device", augment=True, norm="cifar10", label_smoothing=0.1)
FAST_CUDA = replace(FAST, precision="bf16", channels_last=True, compile="default",
                    fused_optimizer=True)


def spec() -> ModelSpec:
    """The model's facts for bench; params=None: bench counts them from the built model."""
    return ModelSpec(
        name="tinyresnet", build=TinyResNet, family="cifar10", params=None,
        description="ResNet, 3 basic blocks (16-32-64 ch), global pool, Linear(64,10)",
        recipes={"fast": FAST, "fast@cuda": FAST_CUDA},
        datasets=("cifar10",),
    )
