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

from bench.errors import BenchError
from bench.spec.recipes import Recipe


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]
    family: str  # dataset family its input fits (a key of bench.spec.datasets.FAMILIES)
    # expected parameter count, asserted in tests; None or 0 (a model from outside the
    # package): counted from the built model (bench.spec.models.external)
    params: int | None
    description: str
    # recipe name -> recipe; "<name>@<device type>" (e.g. "fast@cuda") overrides per device kind
    recipes: Mapping[str, Recipe]
    # dataset -> test accuracy the fast recipe must reach (the course's figure)
    targets: Mapping[str, float] = field(default_factory=dict)
    # the course experiments (datasets) this model is trained on; the first is its default
    datasets: tuple[str, ...] = ()
    suites: frozenset[str] = frozenset()  # named suites it is part of (bench suite NAME)
    heavy_on_cpu: bool = False  # suites run it throughput-only on a CPU (an epoch takes hours)
    # a model from outside the package: where it came from ("entry point dist:name", "module
    # path.py", "timm 1.0.9") and its version (the distribution's, timm's, or the module
    # file's sha256), which keys its results (bench.results.rows.run_key); None: built in
    source: str | None = None
    version: str | None = None

    @property
    def default_dataset(self) -> str:
        return self.datasets[0] if self.datasets else self.family

    @property
    def default_recipe(self) -> str:
        """The recipe a run takes when none is named: the course's `seed` where the model has
        one, else `fast` (a model from outside the package may declare no seed)."""
        return "seed" if "seed" in self.recipes else "fast"

    def recipe(self, name: str | None, device_type: str = "cpu") -> Recipe:
        """The named recipe (None: the default one) for this device kind (the device-specific
        one where declared)."""
        name = name or self.default_recipe
        found = self.recipes.get(f"{name}@{device_type}") or self.recipes.get(name)
        if found is None:
            have = sorted({k.split("@")[0] for k in self.recipes})
            raise BenchError(f"recipe {name!r} has no settings for model {self.name!r} "
                             f"(it has: {', '.join(have) or 'none'})")
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


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
