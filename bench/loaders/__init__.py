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
    "device": "bench.loaders.device_loader",
    "ffcv": "bench.loaders.ffcv_loader",
}
LOADERS = tuple(_LOADER_MODULES)
# Former names still accepted on the command line (and read in old result files as the new
# name): the device-resident loader was called `gpu`, though it runs on a CPU too.
LOADER_ALIASES: dict[str, str] = {"gpu": "device"}


def canonical_loader(name: str) -> str:
    """The loader's current name for `name` (an alias or a name; unknown names unchanged)."""
    return LOADER_ALIASES.get(name, name)


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
