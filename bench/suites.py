"""Named suites: lists of run configurations, run one after another; a failing configuration
(OOM, NaN, error) is recorded and the suite goes on with the next.

A suite's members come from the model registry (each model names the suites it is part of);
what a suite does with them (recipes, step caps on a CPU) is the suite's policy, here. The
suite tables live in `bench.results.suite_tables`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

from . import device as devmod
from . import toolchain
from .datasets import FAMILIES, load_dataset
from .defaults import DATA_DIR_ENV, DEVICE
from .errors import BenchError
from .models import MODELS, ModelSpec, get_model_spec
from .progress import SuiteProgress
from .runner import recipe_for, run
from .runspec import RunConfig
from .suite_list import BUILTIN_SUITES


class SuiteStopped(KeyboardInterrupt):
    """Ctrl-C / SIGTERM / SIGHUP stopped the suite; `paths` are the runs that finished (the
    one in flight is among them, recorded `interrupted`, when the runner caught the signal)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__("suite stopped")
        self.paths = paths
CPU_HEAVY_BATCH = 16


def suite_names() -> list[str]:
    """The built-in suites, then any other suite a model declares itself part of."""
    declared = sorted({s for m in MODELS.values() for s in m.suites} - set(BUILTIN_SUITES))
    return [*BUILTIN_SUITES, *declared]


def _members(suite: str) -> list[ModelSpec]:
    return [m for m in MODELS.values() if suite in m.suites]


def _experiments(models: list[ModelSpec]) -> list[tuple[ModelSpec, str]]:
    """(model, dataset) of every course experiment of `models`: family by family, and within a
    family each dataset variant across the models (fc, cnn on mnist, then on mnist-perm)."""
    families = list(FAMILIES)
    pairs = [(m, d, (families.index(m.family), i)) for m in models for i, d in
             enumerate(m.datasets or (m.default_dataset,))]
    return [(m, d) for m, d, _ in sorted(pairs, key=lambda p: p[2])]


def _default(on_gpu: bool) -> tuple[list[RunConfig], str]:
    """For each experiment the course's seed loop, then the harness's fast recipe. On a CPU a
    model marked heavy (VGG: an epoch takes hours) is measured for throughput only: capped by
    steps, no test pass (one would cost a minute of fp32)."""
    cfgs = []
    for m, d in _experiments(_members("default")):
        cpu_cap = m.heavy_on_cpu and not on_gpu
        cfgs.append(RunConfig(model=m.name, dataset=d, recipe="seed",
                              max_steps=20 if cpu_cap else None, evaluate=not cpu_cap))
        cfgs.append(RunConfig(model=m.name, dataset=d, recipe="fast",
                              max_steps=40 if cpu_cap else None, evaluate=not cpu_cap))
    if on_gpu:
        return cfgs, "full course suite (seed loop vs fast recipe), GPU"
    return cfgs, ("reduced CPU suite (no GPU found): every course experiment, heavy models "
                  "throughput only (20/40 steps, no evaluation); about 10 minutes on 2 cores")


def _ci(on_gpu: bool) -> tuple[list[RunConfig], str]:
    """The gate's suite: each member's fast recipe measured for throughput (untimed warm-up,
    then a time budget of timed windows, no evaluation). On a CPU every run uses one thread:
    a 2-thread OpenMP step waits at each barrier for a core that a neighbour may hold (runs
    35x slower were measured, docs/ci.md), which no statistic can undo; and a model heavy on a
    CPU runs at batch 16, so that its budget still holds many windows."""
    cfgs = [RunConfig(model=m.name, dataset=m.default_dataset, recipe="fast",
                      measure="throughput", evaluate=False, threads=None if on_gpu else 1,
                      batch_size=CPU_HEAVY_BATCH if m.heavy_on_cpu and not on_gpu else None)
            for m in _members("ci")]
    return cfgs, "CI suite: fast recipes, throughput measurement (time budget per run)"


def _ablation(on_gpu: bool) -> tuple[list[RunConfig], str]:
    # long enough that compilation (first ~6 steps) stays out of the steady windows
    steps = 100 if on_gpu else 30
    cfgs = [RunConfig(model=m.name, recipe="fast", precision=precision, channels_last=cl,
                      compile=comp, max_steps=steps, batch_size=None if on_gpu else 64,
                      evaluate=False)
            for m in _members("vgg-ablation")
            for precision, cl, comp in [("fp32", False, "none"), ("bf16", False, "none"),
                                        ("bf16", True, "none"), ("bf16", True, "default")]]
    return cfgs, (f"VGG ablation: fp32 / bf16 / +channels-last / +compile, {steps} steps "
                  "each, no evaluation")


def _short(name: str) -> tuple[list[RunConfig], str]:
    """smoke, and any suite a model names: its fast recipe on its dataset for 20 steps."""
    return [RunConfig(model=m.name, dataset=m.default_dataset, recipe="fast", max_steps=20)
            for m in _members(name)], f"{name} suite: 20 steps per model"


def suite_configs(name: str, on_gpu: bool) -> tuple[list[RunConfig], str]:
    """Configurations of a suite and a line saying what it is."""
    builders = {"default": _default, "ci": _ci, "vgg-ablation": _ablation}
    if name in builders:
        return builders[name](on_gpu)
    if name in suite_names():
        return _short(name)
    raise BenchError(f"unknown suite {name!r}; choices: {', '.join(suite_names())}")


def _real_data_available(families: set[str], data_dir: str | None) -> dict[str, bool]:
    """Whether each dataset family can be had (read, or downloaded once into the cache)."""
    out = {}
    for family in sorted(families, key=list(FAMILIES).index):
        try:
            load_dataset(family, data_dir)
            out[family] = True
        except BenchError:
            out[family] = False
    return out


def _ensure_peak(device: str) -> None:
    """MFU needs this machine's measured ceiling: measure it once (cached) if it is missing."""
    from .device import resolve_device
    from .peak import format_peak, load_cached_peak, measure_peak

    dev = resolve_device(device)
    if load_cached_peak(dev) is None:
        print("suite: measuring this device's peak FLOP/s once (bench peak)...", file=sys.stderr)
        print(format_peak(measure_peak(dev, quick=True)), file=sys.stderr)


def _check_toolchain(cfgs: list[RunConfig], dev: torch.device) -> None:
    """On a GPU, a suite whose runs need Triton stops before its first run when Triton cannot
    build its launcher here: one line, not one failed run per configuration."""
    if dev.type != "cuda":
        return
    recipes = [(c.model, recipe_for(c, dev.type)) for c in cfgs]
    needing = sorted({m for m, r in recipes if toolchain.uses_triton(dev.type, r.compile,
                                                                     r.loader)})
    if needing:
        toolchain.require(f"the suite's runs of {', '.join(needing)} on {dev}")


def _run_one(name: str, c: RunConfig, dev: torch.device, paths: list[Path]) -> str:
    """One run of the suite, after resetting what an earlier run may have left behind (compiled
    graphs, CUDA-graph pools, cached memory): its compile and warm-up times are its own.
    Returns the run's status ('not run' when its configuration was refused)."""
    try:
        devmod.isolate(dev)
        result, path = run(c)
    except BenchError as exc:
        print(f"suite {name}: {c.model}/{c.dataset}/{c.recipe}: {exc}", file=sys.stderr)
        return "not run"
    except KeyboardInterrupt:
        raise SuiteStopped(paths) from None
    if path is not None:
        paths.append(path)
    if result is not None and result.status == "interrupted":
        raise SuiteStopped(paths)
    return result.status if result is not None else "no result"


def run_suite(name: str, *, data_dir: str | None, out_dir: str, device: str = DEVICE,
              repeats: int = 1, overrides: dict | None = None, quiet: bool = False,
              progress: bool = True) -> list[Path]:
    """Run every configuration of a suite `repeats` times (each repeat its own seed).

    Repeats are interleaved (A B C A B C, not A A A B B B) so that slow drift of the machine
    (thermal, a neighbour's job) spreads over every configuration instead of landing on one.
    Every run starts isolated from the one before (`bench.device.isolate`) and says so in its
    config (`isolated`).
    """
    dev = devmod.resolve_device(device)  # a GPU torch cannot use stops here, in one line
    cfgs, what = suite_configs(name, dev.type == "cuda")
    cfgs = [replace(c, **(overrides or {})) for c in cfgs]
    _check_toolchain(cfgs, dev)
    real = _real_data_available({get_model_spec(c.model).family for c in cfgs}, data_dir)
    print(f"suite {name}: {what}", file=sys.stderr)
    _ensure_peak(device)
    for ds, ok in real.items():
        if not ok:
            print(f"suite {name}: no real {ds} in {data_dir or '$' + DATA_DIR_ENV}: using "
                  f"synthetic-{ds} (throughput only, accuracy meaningless)", file=sys.stderr)
    paths: list[Path] = []
    bar = SuiteProgress(name, len(cfgs) * repeats, enabled=progress and not quiet,
                        lines=not quiet)
    try:
        for r in range(repeats):
            for cfg in cfgs:
                # the availability check above already tried; don't retry a download per run
                family = get_model_spec(cfg.model).family
                c = replace(cfg, data_dir=data_dir, out=out_dir, device=device, suite=name,
                            repeat=r, seed=cfg.seed + r, allow_synthetic=True, quiet=quiet,
                            progress=progress, download=real[family], isolated=True)
                bar.done(f"{c.model}/{c.dataset}/{c.recipe} r{r}", _run_one(name, c, dev, paths))
    finally:
        bar.close()
    return paths
