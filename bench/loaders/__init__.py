"""Loader registry: name -> factory(data, LoaderConfig) -> Loader.

Adding a loader is one module with a `build(data, cfg)` function plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..datasets import DatasetArrays
from ..errors import BenchError
from .base import NORMS, Loader, LoaderConfig

# Modules are imported on first use so that a missing optional dependency (ffcv) only fails
# the loader that needs it.
_LOADER_MODULES: dict[str, str] = {
    "torch": "bench.loaders.torch_loader",
    "gpu": "bench.loaders.gpu_loader",
    "ffcv": "bench.loaders.ffcv_loader",
}
LOADERS = tuple(_LOADER_MODULES)


def get_loader_factory(name: str) -> Callable[[DatasetArrays, LoaderConfig], Loader]:
    if name not in _LOADER_MODULES:
        raise BenchError(f"unknown loader {name!r}; choices: {', '.join(LOADERS)}")
    module = importlib.import_module(_LOADER_MODULES[name])
    return module.build


def make_loader(name: str, data: DatasetArrays, cfg: LoaderConfig) -> Loader:
    return get_loader_factory(name)(data, cfg)


__all__ = ["LOADERS", "NORMS", "Loader", "LoaderConfig", "get_loader_factory", "make_loader"]
