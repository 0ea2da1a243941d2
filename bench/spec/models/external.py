"""Models from outside the package, found the way Python tools find plugins.

`get_model_spec` asks here for a name the registry does not know:
- an entry point of the group `bench.models` (a user's pyproject.toml: `[project.entry-points.
  "bench.models"] mynet = "mypkg.models:spec"`), pointing at a function that returns a
  `ModelSpec` (or registers one and returns it);
- `package.module:function`, the same contract, for a module on PYTHONPATH or in the current
  folder (not installed);
- `timm:NAME` when timm is installed: `timm.create_model(NAME)` for the dataset family's
  channels and classes (the family of the run's dataset, default cifar10).

Every spec is checked before any data loads (one line, exit 2, for each mistake): it is a
ModelSpec of a known family, it builds, and one forward pass of two images on the CPU gives one
score per class. Its parameter count is counted there, a spec without a `fast` recipe gets the
generic one (`generic_recipes`), and it records where it came from and its version (the
distribution's, timm's, or the module file's sha256), which keys its results
(`bench.results.rows.run_key`): a changed model is never compared with its old self.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from bench.errors import BenchError
from bench.spec.models.registry import MODELS, ModelSpec, count_params
from bench.spec.recipes import Recipe

GROUP = "bench.models"  # the entry point group a plugin declares its models in
TIMM_PREFIX = "timm:"
TIMM_INSTALL = "pip install timm"
DEFAULT_FAMILY = "cifar10"  # a timm model's family when the run names no dataset
PROBE_BATCH = 2  # images of the forward pass that checks a model's output
VERSION_HEX = 12  # hex digits of a module file's sha256 kept as its version
# the forms a model name may take besides a registered one (for error messages and --help)
EXTERNAL_FORMS = "or an installed plugin's name, package.module:function, timm:NAME"

# (name, family) -> checked spec; family is None except for timm models (built per family)
_RESOLVED: dict[tuple[str, str | None], ModelSpec] = {}
_LAST_FAMILY: dict[str, str] = {}  # timm name -> the family it was last resolved for


def is_reference(name: str) -> bool:
    """`package.module:function` or `timm:NAME`: passed to `resolve` by name validation."""
    return ":" in name


def _entry_points() -> list[metadata.EntryPoint]:
    """This group's entry points on sys.path, the first of each name."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return list(found.values())


def entry_point_names() -> list[str]:
    """The model names installed plugins declare (listed among --model's choices)."""
    return [ep.name for ep in _entry_points()]


def generic_recipes(family: str) -> dict[str, Recipe]:
    """`fast` for a model that declares none, per device kind: AdamW on a one-cycle schedule
    for one epoch, the data on the device; on a GPU bf16, channels-last and torch.compile, on a
    CPU fp32 eager (bf16 autocast slows most CPU convolutions). Untuned: a spec's own recipe
    is better, and no `seed` exists (the course's loop is for the course's models)."""
    from bench.spec.datasets import FAMILIES

    cpu = Recipe("fast", batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                 schedule="onecycle", warmup_frac=0.2, epochs=1, precision="fp32",
                 loader="device", augment=FAMILIES[family].augment, norm=family,
                 stop_at_target=True)
    cuda = replace(cpu, batch_size=256, precision="bf16", channels_last=True,
                   compile="default", fused_optimizer=True)
    return {"fast": cpu, "fast@cuda": cuda}


def _exc_line(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _call(name: str, what: str, fn: Callable[[], Any]) -> Any:
    """The user's code, its failure one line naming the model and what raised."""
    try:
        return fn()
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"model {name!r}: {what} raised {_exc_line(exc)}") from None


# ----------------------------------------------------------------------------- checks
def _probe(name: str, spec: ModelSpec) -> int:
    """Build the model on the CPU and run two images of its family through it: a wrong class
    count stops here, before any data loads. Returns its parameter count."""
    from bench.spec.datasets import FAMILIES

    family = FAMILIES[spec.family]
    model = _call(name, "building it", spec.build)
    if not isinstance(model, nn.Module):
        raise BenchError(f"model {name!r}: its build returned {type(model).__name__}, not a "
                         "torch.nn.Module")
    x = torch.zeros(PROBE_BATCH, *family.input_shape)
    with torch.no_grad():
        out = _call(name, f"a forward pass of a {spec.family} batch {tuple(x.shape)}",
                    lambda: model.eval()(x))
    want = (PROBE_BATCH, len(family.classes))
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != want:
        raise BenchError(f"model {name!r} gives output {shape} for a {spec.family} batch "
                         f"{tuple(x.shape)}; expected {want}, one score per class")
    return count_params(model)


def _has_fast(spec: ModelSpec) -> bool:
    return any(k == "fast" or k.startswith("fast@") for k in spec.recipes)


def _checked(name: str, obj: Any, source: str, version: str | None) -> ModelSpec:
    """The spec as the harness runs it: checked, its parameters counted, a `fast` recipe where
    it has none, named as asked, with its source and version (a spec's own version wins)."""
    from bench.spec.datasets import FAMILIES

    if not isinstance(obj, ModelSpec):
        raise BenchError(f"model {name!r}: {source} returned {type(obj).__name__}, not a "
                         "bench.ModelSpec")
    if obj.family not in FAMILIES:
        raise BenchError(f"model {name!r}: family {obj.family!r} is not one of "
                         f"{', '.join(FAMILIES)}")
    params = _probe(name, obj)
    if obj.params and obj.params != params:
        raise BenchError(f"model {name!r}: its spec says {obj.params:,} parameters, the built "
                         f"model has {params:,}")
    recipes = obj.recipes if _has_fast(obj) else {**generic_recipes(obj.family), **obj.recipes}
    spec = replace(obj, name=name, params=params, recipes=recipes, source=source,
                   version=obj.version or version)
    if MODELS.get(name) is obj:  # the function registered it under this name: run this one
        MODELS[name] = spec
    return spec


# ----------------------------------------------------------------------------- finders
def _from_entry_point(name: str, ep: metadata.EntryPoint) -> ModelSpec:
    dist = getattr(ep, "dist", None)
    dist_name = getattr(dist, "name", None) or "?"
    source = f"entry point {dist_name}:{ep.name}"
    fn = _call(name, f"loading {source} ({ep.value})", ep.load)
    if not callable(fn):
        raise BenchError(f"model {name!r}: {source} ({ep.value}) is not a function")
    return _checked(name, _call(name, ep.value, fn), source,
                    getattr(dist, "version", None))


def _file_version(path: str | None) -> str | None:
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:VERSION_HEX]


def _shown(path: str | None) -> str:
    """A module file's path, relative to the current folder when under it."""
    if not path:
        return "(no file)"
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _from_module(name: str) -> ModelSpec:
    """`package.module:function`, importable from sys.path or the current folder."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in
                                              (*module_name.split("."), attr)):
        raise BenchError(f"model {name!r}: expected package.module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:  # the `bench` script lacks it
        sys.path.append(os.getcwd())
    module = _call(name, f"importing {module_name}",
                   lambda: importlib.import_module(module_name))
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise BenchError(f"model {name!r}: {module_name} has no function {attr!r}")
    path = getattr(module, "__file__", None)
    return _checked(name, _call(name, f"{name}()", fn), f"module {_shown(path)}",
                    _file_version(path))


def _from_timm(name: str, family: str) -> ModelSpec:
    """timm's model NAME with the family's input channels and one output per class."""
    from bench.spec.datasets import FAMILIES

    model_name = name[len(TIMM_PREFIX):]
    if not model_name:
        raise BenchError(f"model {name!r}: expected timm:NAME (e.g. timm:resnet18)")
    try:
        import timm
    except ImportError:
        raise BenchError(f"model {name!r} needs timm, which is not installed here: "
                         f"{TIMM_INSTALL}") from None
    fam = FAMILIES[family]
    classes, channels = len(fam.classes), fam.input_shape[0]
    build = partial(timm.create_model, model_name, pretrained=False, num_classes=classes,
                    in_chans=channels)
    spec = ModelSpec(name=name, build=build, family=family, params=None,
                     description=f"timm {model_name} ({channels} channel(s) in, {classes} "
                     "classes out)", recipes={})
    return _checked(name, spec, f"timm {timm.__version__}", timm.__version__)


def _timm_family(name: str, dataset: str | None) -> str:
    """The family a timm model is built for: its dataset's, else the one it last ran on."""
    if dataset is not None:
        from bench.spec.datasets import get_dataset_spec

        return get_dataset_spec(dataset).family
    return _LAST_FAMILY.get(name, DEFAULT_FAMILY)


def _find(name: str, family: str | None) -> ModelSpec | None:
    if name.startswith(TIMM_PREFIX):
        assert family is not None
        return _from_timm(name, family)
    if is_reference(name):
        return _from_module(name)
    ep = next((e for e in _entry_points() if e.name == name), None)
    return _from_entry_point(name, ep) if ep is not None else None


def resolve(name: str, dataset: str | None = None) -> ModelSpec | None:
    """The checked spec of a model from outside the package (found once per process, per
    family for timm); None when no plugin, module or timm provides `name`."""
    family = _timm_family(name, dataset) if name.startswith(TIMM_PREFIX) else None
    key = (name, family)
    if key not in _RESOLVED:
        spec = _find(name, family)
        if spec is None:
            return None
        _RESOLVED[key] = spec
    if family is not None:
        _LAST_FAMILY[name] = family
    return _RESOLVED[key]


def forget(name: str) -> None:
    """Drop a resolved model (tests: a module or plugin changed on disk)."""
    for key in [k for k in _RESOLVED if k[0] == name]:
        del _RESOLVED[key]
    _LAST_FAMILY.pop(name, None)


__all__ = ["EXTERNAL_FORMS", "GROUP", "TIMM_INSTALL", "entry_point_names", "forget",
           "generic_recipes", "is_reference", "resolve"]
