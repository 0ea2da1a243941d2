"""The model registry: every fact about a model lives in its own file, in one `ModelSpec`.

A model file builds the network and registers a spec with `register_model` (as timm keeps a
model's `default_cfg` beside it): its dataset family, the course experiments it runs in, the
accuracy target per dataset, its recipes per device kind and the suites it belongs to. Nothing
else in the harness names a model, so adding one is adding one file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch.nn as nn

from ..errors import BenchError
from ..recipes import Recipe


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]
    family: str  # dataset family its input fits (a key of bench.datasets.FAMILIES)
    params: int  # expected parameter count, asserted in tests
    description: str
    # recipe name -> recipe; "<name>@<device type>" (e.g. "fast@cuda") overrides per device kind
    recipes: Mapping[str, Recipe]
    # dataset -> test accuracy the fast recipe must reach (the course's figure)
    targets: Mapping[str, float] = field(default_factory=dict)
    # the course experiments (datasets) this model is trained on; the first is its default
    datasets: tuple[str, ...] = ()
    suites: frozenset[str] = frozenset()  # named suites it is part of (bench suite NAME)
    heavy_on_cpu: bool = False  # suites run it throughput-only on a CPU (an epoch takes hours)

    @property
    def default_dataset(self) -> str:
        return self.datasets[0] if self.datasets else self.family

    def recipe(self, name: str, device_type: str = "cpu") -> Recipe:
        """The named recipe for this device kind (the device-specific one where declared)."""
        found = self.recipes.get(f"{name}@{device_type}") or self.recipes.get(name)
        if found is None:
            raise BenchError(f"recipe {name!r} has no settings for model {self.name!r}")
        return found

    def target(self, dataset: str) -> float | None:
        return self.targets.get(dataset)


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a test may register a toy one); returns the spec."""
    MODELS[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    MODELS.pop(name, None)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise BenchError(f"unknown model {name!r}; choices: {', '.join(MODELS)}") from None


def build_model(name: str) -> nn.Module:
    return get_model_spec(name).build()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
