"""Named suites: lists of run configurations, run one after another; a failing configuration
(OOM, NaN, error) is recorded and the suite goes on with the next.

A suite's members come from the model registry (each model names the suites it is part of);
what a suite does with them (recipes, step caps on a CPU or on synthetic data) is the suite's
policy, here. A suite file (TOML, `file_configs`, docs/plugins.md) lists its own runs, and
which of them `bench ci --suite FILE` gates. The suite tables live in
`bench.results.suite_tables`; `write_archive` bundles a suite's files into one .tar.gz (a GPU
window hands back only a few files).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from bench.defaults import DEVICE, WINDOW_STEPS
from bench.errors import BenchError
from bench.fsutil import writable_dir
from bench.host import device as devmod
from bench.host import toolchain
from bench.measure.progress import SuiteProgress
from bench.measure.runner import recipe_for, run, validate
from bench.results.schema import new_batch_id
from bench.results.suite_tables import THROUGHPUT_ONLY_SYNTHETIC
from bench.spec.datasets import FAMILIES, get_dataset_spec, load_dataset
from bench.spec.models import MODELS, ModelSpec, get_model_spec
from bench.spec.runspec import RunConfig, flag_name, validate_options
from bench.suites.catalogue import BUILTIN_SUITES, SUITE_FILE_SUFFIX, suite_label


class SuiteStopped(KeyboardInterrupt):
    """Ctrl-C / SIGTERM / SIGHUP stopped the suite; `paths` are the runs that finished (the
    one in flight is among them, recorded `interrupted`, when the runner caught the signal)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__("suite stopped")
        self.paths = paths


CPU_HEAVY_BATCH = 16
# On synthetic data (random pixels with a class signal) accuracy means nothing, so the default
# suite measures such a run for throughput only: no evaluation, and this many steps instead of
# the course's epochs (10 of them: 3,900 VGG steps). 200 = the untimed warm-up pass (compile,
# cuDNN autotuning, CUDA-graph capture) then 4 timed windows of WINDOW_STEPS: a median and a
# spread of steady-state images/s on a GPU, in seconds per run. A CPU's smaller caps stay.
SYNTHETIC_STEPS = 4 * WINDOW_STEPS
# The suites whose runs on synthetic data are capped so; the others measure throughput or a
# few steps already.
SYNTHETIC_CAPPED_SUITES = frozenset({"default"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


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
    steps, no test pass (one would cost a minute of fp32). Runs on synthetic data are capped
    later, once the data is known (`throughput_on_synthetic`)."""
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


def gate_policy(on_gpu: bool) -> dict[str, Any]:
    """How the gate measures a configuration: its fast recipe for throughput (untimed warm-up,
    then a time budget of timed windows, no evaluation). On a CPU every run uses one thread:
    a 2-thread OpenMP step waits at each barrier for a core that a neighbour may hold (runs
    35x slower were measured, docs/ci.md), which no statistic can undo."""
    return {"recipe": "fast", "measure": "throughput", "evaluate": False,
            "threads": None if on_gpu else 1}


def _gate_batch(spec: ModelSpec, on_gpu: bool) -> int | None:
    """A model heavy on a CPU runs at batch 16 in the gate: its budget still holds many
    windows. None: its recipe's batch."""
    return CPU_HEAVY_BATCH if spec.heavy_on_cpu and not on_gpu else None


def _ci(on_gpu: bool) -> tuple[list[RunConfig], str]:
    """The gate's suite: each member measured as `gate_policy` says."""
    cfgs = [RunConfig(model=m.name, dataset=m.default_dataset, **gate_policy(on_gpu),
                      batch_size=_gate_batch(m, on_gpu))
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
    path = suite_file(name)
    if path is not None:
        return file_configs(path, on_gpu)
    raise BenchError(f"unknown suite {name!r}; choices: {', '.join(suite_names())} (or a suite "
                     "file, NAME.toml)")


# ----------------------------------------------------------------------------- suite files
FILE_KEYS = ("description", "defaults", "run", "ci")  # a suite file's top-level keys
GATE_KEY = "gate"  # a run's own key: whether `bench ci --suite FILE` gates it (default true)
# run options the suite's command sets for every run (its flags), never a file
SET_BY_COMMAND = ("data_dir", "out", "device", "download", "allow_synthetic", "quiet",
                  "progress")
_OPTIONS = {f.name: f for f in fields(RunConfig) if f.metadata["flag"]
            and f.name not in SET_BY_COMMAND}


def suite_file(name: str) -> Path | None:
    """The suite file `name` names (ending in .toml, or an existing file); None for a named
    suite (a built-in name wins over a file of that name)."""
    if name in suite_names():
        return None
    path = Path(name)
    return path if name.endswith(SUITE_FILE_SUFFIX) or path.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10, the project's floor, has no tomllib
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise BenchError(f"{path}: reading a suite file needs Python 3.11+ or tomli "
                             "(pip install tomli)") from None
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BenchError(f"{path}: no such suite file") from None
    except OSError as exc:
        raise BenchError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: not valid TOML: {str(exc).splitlines()[0]}") from None


def _wanted(key: str) -> tuple[type | tuple[type, ...], str]:
    """The TOML types an option takes (those its flag parses to), and their name."""
    m = _OPTIONS[key].metadata
    if m["kind"] != "value":
        return bool, "true or false"
    if m["parse"] is int:
        return int, "an integer"
    if m["parse"] is float:
        return (int, float), "a number"
    if m["also"] is not None and m["minimum"] is not None:  # a number, or its other forms
        return (int, str), f"an integer {m['also'][1]}"
    return str, "a string"


def _typed(where: str, key: str, value: Any) -> Any:
    """A TOML value as the run option holds it; one line naming the key when it cannot."""
    types, name = _wanted(key)
    if isinstance(value, bool) != (types is bool) or not isinstance(value, types):
        raise BenchError(f"{where}: {key}: expected {name}, got {value!r}")
    parse = _OPTIONS[key].metadata["parse"]
    if isinstance(value, str) and parse is not None:  # 'auto', a loader's former name
        try:
            value = parse(value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise BenchError(f"{where}: {key}: {exc}") from None
    return float(value) if parse is float else value


def _options(where: str, table: Any, own: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table of run options (by RunConfig field name), each checked as its flag would be."""
    if not isinstance(table, dict):
        raise BenchError(f"{where}: expected a table of run options, got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == GATE_KEY and key in own:
            if not isinstance(value, bool):
                raise BenchError(f"{where}: {key}: expected true or false, got {value!r}")
        elif key in SET_BY_COMMAND:
            raise BenchError(f"{where}: {key}: set by the command ({flag_name(key)}), not in "
                             "a suite file")
        elif key not in _OPTIONS:
            raise BenchError(f"{where}: unknown key {key!r}; run options: "
                             f"{', '.join([*_OPTIONS, *own])}")
        else:
            value = _typed(where, key, value)
            try:
                validate_options(RunConfig(**{"model": None, key: value}))
            except BenchError as exc:
                raise BenchError(f"{where}: {key}: {exc}") from None
        out[key] = value
    return out


def _read_suite_file(path: Path) -> tuple[str | None, dict, dict, list[dict]]:
    """(description, defaults, ci options, each run's options), every key checked."""
    doc = _read_toml(path)
    unknown = [k for k in doc if k not in FILE_KEYS]
    if unknown:
        raise BenchError(f"{path}: unknown key {unknown[0]!r}; a suite file has: "
                         f"{', '.join(FILE_KEYS)}")
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise BenchError(f"{path}: description: expected a string, got {description!r}")
    runs = doc.get("run")
    if not isinstance(runs, list) or not runs:
        raise BenchError(f"{path}: run: expected [[run]] tables (model = \"NAME\" and any run "
                         "option each)")
    return (description, _options(f"{path}: defaults", doc.get("defaults", {})),
            _options(f"{path}: ci", doc.get("ci", {})),
            [_options(f"{path}: run {i}", r, own=(GATE_KEY,)) for i, r in enumerate(runs, 1)])


def _file_run(where: str, opts: dict[str, Any], on_gpu: bool, gate: bool) -> RunConfig:
    """One run of a suite file, checked as `bench run` would check it, its recipe named."""
    if opts.get("model") is None:
        raise BenchError(f"{where}: model: missing (model = \"NAME\")")
    cfg = RunConfig(**opts)
    try:
        spec = get_model_spec(cfg.model, cfg.dataset)
    except BenchError as exc:
        raise BenchError(f"{where}: model: {exc}") from None
    if gate and "batch_size" not in opts:
        cfg = replace(cfg, batch_size=_gate_batch(spec, on_gpu))
    cfg = replace(cfg, recipe=cfg.recipe or spec.default_recipe)
    try:
        validate(replace(cfg, device="cpu"))  # the device is the command's, checked there
    except BenchError as exc:
        raise BenchError(f"{where}: {exc}") from None
    return cfg


def file_configs(path: Path, on_gpu: bool, gate: bool = False) -> tuple[list[RunConfig], str]:
    """The runs of a suite file (each its `defaults` then its own options) and its line; with
    `gate`, those `bench ci --suite FILE` gates: the runs not marked `gate = false`, measured
    as the gate measures (`gate_policy`) unless the file says otherwise, the `[ci]` table's
    options over all."""
    description, defaults, ci, runs = _read_suite_file(path)
    cfgs = []
    for i, own in enumerate(runs, 1):
        if gate and not own.get(GATE_KEY, True):
            continue
        opts = {k: v for k, v in own.items() if k != GATE_KEY}
        merged = {**gate_policy(on_gpu), **defaults, **opts, **ci} if gate else {**defaults,
                                                                                  **opts}
        cfgs.append(_file_run(f"{path}: run {i}", merged, on_gpu, gate))
    if not cfgs:
        raise BenchError(f"{path}: every run has {GATE_KEY} = false: nothing to gate")
    what = description or f"{len(cfgs)} run(s) from {path}"
    return cfgs, f"{what} (gated: throughput unless the file says otherwise)" if gate else what


def _real_data_available(families: set[str], data_dir: str | None) -> dict[str, bool]:
    """Whether each dataset family can be read (from the folder, or the cache)."""
    out = {}
    for family in _ordered(families):
        try:
            load_dataset(family, data_dir, download=False)
            out[family] = True
        except BenchError:
            out[family] = False
    return out


def _ordered(families: set[str]) -> list[str]:
    return sorted(families, key=list(FAMILIES).index)


def _why_missing(family: str, data_dir: str | None, download: bool) -> str | None:
    """Why a family the check did not find cannot be had: its one line, which says how to get
    it (or why the download failed); None when `download` fetched it into the cache."""
    try:
        load_dataset(family, data_dir, download=download)
    except BenchError as exc:
        return str(exc)
    return None


def _missing_data(families: set[str], data_dir: str | None, download: bool
                  ) -> dict[str, str | None]:
    """Why each dataset family cannot be had, or None when it can: read, or with `download`
    fetched once into the cache now, before any run (only the families not found)."""
    real = _real_data_available(families, data_dir)
    return {f: None if ok else _why_missing(f, data_dir, download) for f, ok in real.items()}


def _dataset(c: RunConfig) -> str:
    return c.dataset or get_model_spec(c.model).default_dataset


def _on_synthetic(c: RunConfig, real: Mapping[str, bool]) -> bool:
    """Whether the run trains on synthetic data: named so, or its family's real data missing."""
    spec = get_dataset_spec(_dataset(c))
    return spec.synthetic or not real.get(spec.family, True)


def throughput_on_synthetic(name: str, cfgs: Sequence[RunConfig], what: str,
                            real: Mapping[str, bool]) -> tuple[list[RunConfig], str]:
    """The suite's runs on synthetic data measured for throughput only (SYNTHETIC_STEPS at
    most, no evaluation), and its line saying which; `real`: family -> real data found."""
    if name not in SYNTHETIC_CAPPED_SUITES:
        return list(cfgs), what
    out, capped = [], []
    for c in cfgs:
        if _on_synthetic(c, real):
            c = replace(c, max_steps=min(c.max_steps or SYNTHETIC_STEPS, SYNTHETIC_STEPS),
                        evaluate=False)
            capped.append(c.model)
        out.append(c)
    if capped:
        what += (f"; {', '.join(dict.fromkeys(capped))}: {THROUGHPUT_ONLY_SYNTHETIC}, at most "
                 f"{SYNTHETIC_STEPS} steps, no evaluation")
    return out, what


def planned_configs(name: str, on_gpu: bool, data_dir: str | None, download: bool = False,
                    gate: bool = False) -> tuple[list[RunConfig], str, dict[str, str | None]]:
    """What a suite will run here: its configurations once the data is known, its line, and
    why each missing dataset family is missing (None: found). `gate`: a suite file's gated
    runs (`bench ci --suite FILE`)."""
    path = suite_file(name) if gate else None
    cfgs, what = file_configs(path, on_gpu, gate=True) if path else suite_configs(name, on_gpu)
    missing = _missing_data({get_model_spec(c.model, c.dataset).family for c in cfgs},
                            data_dir, download)
    cfgs, what = throughput_on_synthetic(name, cfgs, what,
                                         {f: why is None for f, why in missing.items()})
    return cfgs, what, missing


def _ensure_peak(device: str) -> None:
    """MFU needs this machine's measured ceiling: measure it once (cached) if it is missing."""
    from bench.host.device import resolve_device
    from bench.measure.peak import format_peak, load_cached_peak, measure_peak

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
              progress: bool = True, download: bool = False, gate: bool = False,
              batch: str | None = None, models: Sequence[str] | None = None) -> list[Path]:
    """Run every configuration of a suite `repeats` times (each repeat its own seed).

    Repeats are interleaved (A B C A B C, not A A A B B B) so that slow drift of the machine
    (thermal, a neighbour's job) spreads over every configuration instead of landing on one.
    Every run starts isolated from the one before (`bench.host.device.isolate`) and says so in its
    config (`isolated`). A missing dataset is downloaded only with `download`, once, before
    the first run; without it the runs use its synthetic twin, for throughput only. `name`
    may be a suite file (`gate`: the runs `bench ci --suite FILE` gates), named by its stem.
    `batch`: the batch id of a job whose rounds run in several processes (`bench ci`);
    `models`: only these models' configurations (its later rounds: the undecided ones).
    """
    dev = devmod.resolve_device(device)  # a GPU torch cannot use stops here, in one line
    cfgs, what, missing = planned_configs(name, dev.type == "cuda", data_dir, download, gate)
    name = suite_label(name)
    cfgs = [replace(c, **(overrides or {})) for c in cfgs if models is None or c.model in models]
    if models is not None and not cfgs:
        raise BenchError(f"suite {name}: none of its configurations is of the models "
                         f"{', '.join(models or ())}")
    _check_toolchain(cfgs, dev)
    print(f"suite {name}: {what}", file=sys.stderr)
    _ensure_peak(device)
    for family, why in missing.items():
        if why is not None:
            print(f"suite {name}: {why}; using synthetic-{family} ({THROUGHPUT_ONLY_SYNTHETIC})",
                  file=sys.stderr)
    paths: list[Path] = []
    batch = batch or new_batch_id()  # its runs say they belong together
    bar = SuiteProgress(name, len(cfgs) * repeats, enabled=progress and not quiet,
                        lines=not quiet)
    try:
        for r in range(repeats):
            for cfg in cfgs:
                # the check above fetched what could be fetched: no run downloads again
                c = replace(cfg, data_dir=data_dir, out=out_dir, device=device, suite=name,
                            batch_id=batch, repeat=r, seed=cfg.seed + r,
                            allow_synthetic=True, quiet=quiet, progress=progress,
                            download=False, isolated=True)
                bar.done(f"{c.model}/{c.dataset}/{c.recipe} r{r}", _run_one(name, c, dev, paths))
    except SuiteStopped:
        raise
    except KeyboardInterrupt:  # between two runs: the finished ones still count
        raise SuiteStopped(paths) from None
    finally:
        bar.close()
    return paths


# ----------------------------------------------------------------------------- archive
def check_archive(path: str | os.PathLike[str]) -> Path:
    """`--archive FILE.tar.gz`, checked before the suite runs: a bad name is one line now,
    not after an hour of runs."""
    p = Path(path)
    if not p.name.endswith(ARCHIVE_SUFFIXES) or p.name in ARCHIVE_SUFFIXES:
        raise BenchError(f"--archive {path}: expected a file name ending in "
                         f"{' or '.join(ARCHIVE_SUFFIXES)}")
    if p.is_dir():
        raise BenchError(f"--archive {path} is a folder; expected a .tar.gz file name")
    writable_dir(p.parent, "--archive folder")
    return p


def _arcname(path: Path, root: Path) -> str:
    """A file's name inside the archive: relative to the suite's out folder; one written
    elsewhere (a result rescued to the temp folder) goes under `elsewhere/`."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return f"elsewhere/{path.name}"


def write_archive(archive: str | os.PathLike[str], files: Sequence[Path], root: Path) -> Path:
    """One gzip'd tar of `files` (names relative to `root`), written atomically. Returns its
    path."""
    from bench.results.archive import write_archive as write_tar

    dest = Path(archive)
    write_tar(dest, {_arcname(p, root): p for p in dict.fromkeys(files)})
    return dest
