"""Loader registry: name -> factory(data, LoaderConfig) -> Loader.

Adding a loader is one module with a `build(data, cfg)` function plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from bench.data.loaders.base import NORMS, Loader, LoaderConfig
from bench.defaults import LOADER_ALIASES, LOADERS, canonical_loader
from bench.errors import BenchError
from bench.spec.datasets import DatasetArrays

# Modules are imported on first use so that a missing optional dependency (ffcv) only fails
# the loader that needs it.
_LOADER_MODULES = {name: f"bench.data.loaders.{name}_loader" for name in LOADERS}


def get_loader_factory(name: str) -> Callable[[DatasetArrays, LoaderConfig], Loader]:
    name = canonical_loader(name)
    if name not in _LOADER_MODULES:
        raise BenchError(f"unknown loader {name!r}; choices: {', '.join(LOADERS)}")
    module = importlib.import_module(_LOADER_MODULES[name])
    return module.build


def make_loader(name: str, data: DatasetArrays, cfg: LoaderConfig) -> Loader:
    return get_loader_factory(name)(data, cfg)


__all__ = ["LOADERS", "LOADER_ALIASES", "NORMS", "Loader", "LoaderConfig", "canonical_loader",
           "get_loader_factory", "make_loader"]
