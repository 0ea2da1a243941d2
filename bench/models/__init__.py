"""Model registry: name -> ModelSpec. Adding a model is one file plus one line in `_REGISTRY`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..errors import BenchError
from . import cnn, fc, lenet, vgg


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]
    family: str  # dataset family the model's input fits: "mnist" (1x28x28) or "cifar10" (3x32x32)
    params: int  # expected parameter count, asserted in tests
    description: str


_REGISTRY = [
    ModelSpec("fc", fc.FC, "mnist", 6_442, "784-8-8-10 MLP, ReLU, log-softmax (course)"),
    ModelSpec("cnn", cnn.CNN, "mnist", 6_422, "2 conv (6 ch, k5) + 2 FC, log-softmax (course)"),
    ModelSpec("lenet", lenet.LeNet, "cifar10", 62_006, "LeNet-5 style CNN (course)"),
    ModelSpec("vgg11", vgg.vgg11_bn, "cifar10", vgg.VGG11_PARAMS,
              "course 'VGG16': 8 conv (VGG config A) + BN, Linear(512,10)"),
    ModelSpec("vgg16", vgg.vgg16_bn, "cifar10", vgg.VGG16_PARAMS,
              "VGG16 config D: 13 conv + BN, Linear(512,10)"),
]
MODELS: dict[str, ModelSpec] = {m.name: m for m in _REGISTRY}


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise BenchError(f"unknown model {name!r}; choices: {', '.join(MODELS)}") from None


def build_model(name: str) -> nn.Module:
    return get_model_spec(name).build()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
