"""Training FLOPs per image, counted by torch's FlopCounterMode (forward + backward)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .models import build_model, get_model_spec

INPUT_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@functools.cache
def flop_counts(model_name: str, batch: int = 2) -> dict[str, float]:
    """FLOPs per image (1 multiply-add = 2 FLOPs) of the forward pass and of a training step."""
    spec = get_model_spec(model_name)
    model = build_model(model_name)
    x = torch.randn(batch, *INPUT_SHAPES[spec.family])
    y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as fwd:
        out = model(x)
    forward = fwd.get_total_flops()
    with FlopCounterMode(display=False) as full:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    del out
    train = full.get_total_flops()
    return {"forward_flops_per_image": forward / batch, "train_flops_per_image": train / batch}


def train_flops_per_image(model_name: str) -> float:
    return flop_counts(model_name)["train_flops_per_image"]
