"""Training-benchmark harness.

The stable public API (docs/plugins.md) is what a model file outside the package needs:
`from bench import ModelSpec, Recipe, register_model`. The names are looked up on first use
(PEP 562), so `import bench` alone stays torch-free and the reader verbs start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it (its home may move; this table keeps the API)
_PUBLIC = {
    "ModelSpec": "bench.spec.models.registry",
    "Recipe": "bench.spec.recipes",
    "register_model": "bench.spec.models.registry",
    "BenchError": "bench.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    home = _PUBLIC.get(name)
    if home is None:  # AttributeError also lets `from bench import suites` find submodules
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
