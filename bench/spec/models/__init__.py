"""Model registry: name -> ModelSpec (see `registry`). Every module in this package registers
its models when imported; the course's come first, in the order suites run them, and any other
file dropped here is found by name, so a new model is one file. A model from outside the
package (an installed plugin, package.module:function, timm:NAME) is found by `external`."""

from __future__ import annotations

import importlib
import pkgutil

import torch.nn as nn

from bench.errors import BenchError
from bench.spec.models.external import EXTERNAL_FORMS, resolve
from bench.spec.models.registry import (
    MODELS,
    ModelSpec,
    count_params,
    register_model,
    unregister_model,
)

_COURSE_ORDER = ("fc", "cnn", "lenet", "vgg")
_NOT_MODELS = ("registry", "external")  # the modules of this package that register no model


def _import_all() -> None:
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_MODELS]
    for name in sorted(names, key=lambda n: (n not in _COURSE_ORDER,
                                             _COURSE_ORDER.index(n) if n in _COURSE_ORDER
                                             else 0, n)):
        importlib.import_module(f"{__name__}.{name}")


_import_all()


def get_model_spec(name: str, dataset: str | None = None) -> ModelSpec:
    """A registered model, else one from outside the package (an installed plugin's,
    package.module:function, timm:NAME: `bench.spec.models.external`); `dataset` fixes the input
    shape of a model built for it (timm), default its family's first dataset."""
    spec = MODELS.get(name)
    if spec is not None:
        return spec
    spec = resolve(name, dataset)
    if spec is None:
        raise BenchError(f"unknown model {name!r}; choices: {', '.join(MODELS)} "
                         f"({EXTERNAL_FORMS})")
    return spec


def build_model(name: str) -> nn.Module:
    return get_model_spec(name).build()


__all__ = ["MODELS", "ModelSpec", "build_model", "count_params", "get_model_spec",
           "register_model", "unregister_model"]
