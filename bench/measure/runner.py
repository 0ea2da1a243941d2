"""One benchmark run from configuration to a written result, whatever happens in between.

Four phases, each a function: `resolve` (flags + the model's recipe -> a plan, no side
effects), `build` (data, model, loaders, optimiser, step: what the run needs), `execute` (the
training loop; every outcome becomes a status) and `summarise` (the headline figures). Every
outcome a user can meet (NaN, out-of-memory, Ctrl-C, an error) ends as a result file with its
status; configuration mistakes are BenchErrors raised before anything runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.loaders import Loader, LoaderConfig, make_loader
from bench.defaults import EXIT_CODES, THROUGHPUT_BUDGET_S, precision
from bench.errors import BenchError, debug_trace
from bench.host import device as devmod
from bench.host import interrupts, toolchain
from bench.host.envinfo import fingerprint
from bench.measure import turns
from bench.measure.autobatch import candidate_sizes, find_batch_size, probe_step
from bench.measure.distributed import (
    DistContext,
    finish,
    launched_by_torchrun,
    rank0_evaluate,
    wrap_ddp,
)
from bench.measure.engine import (
    TIMED_WINDOW,
    EngineConfig,
    NonFiniteLoss,
    TrainState,
    autocast_context,
    backend_settings,
    build_optimizer,
    build_scheduler,
    make_scaler,
    make_train_step,
    maybe_compile,
    peak_precision,
    set_matmul_precision,
    snapshot,
    train,
)
from bench.measure.progress import RunProgress
from bench.measure.summary import summarise
from bench.measure.throughput import ThroughputConfig, measure_throughput
from bench.results import Result, prepare_out_dir, write_result
from bench.results.version import architecture_digest
from bench.spec.datasets import DatasetArrays, get_dataset_spec, load_dataset
from bench.spec.models import ModelSpec, count_params, get_model_spec
from bench.spec.recipes import BatchSize, Recipe, with_overrides
from bench.spec.runspec import (
    AUTO_BATCH,
    RunConfig,
    recipe_overrides,
    recorded_options,
    validate_options,
)

# Throughput runs stop on a time budget: the LR schedule is laid out over this many steps so
# that it never ends inside one (the step does the same work whatever the learning rate).
THROUGHPUT_SCHEDULE_STEPS = 10**7

__all__ = ["EXIT_CODES", "RunConfig", "build", "execute", "resolve", "run", "validate"]


def validate(cfg: RunConfig) -> torch.device:
    """Reject bad flags with one line before any work starts; returns the device the run will
    use, resolved here once (pass it on to `run`, which then does not validate again)."""
    validate_options(cfg)
    if cfg.measure == "throughput" and launched_by_torchrun():
        raise BenchError("--measure throughput runs in one process (a time budget would stop "
                         "the ranks at different steps); use --measure train with --nproc")
    spec = get_model_spec(cfg.model, cfg.dataset)
    dataset = get_dataset_spec(cfg.dataset or spec.default_dataset)
    if dataset.family != spec.family:
        raise BenchError(f"model {cfg.model!r} takes {spec.family}-shaped input; dataset "
                         f"{dataset.name!r} is {dataset.family}")
    spec.recipe(cfg.recipe)
    return devmod.resolve_device(cfg.device)


# ----------------------------------------------------------------------------- resolve
@dataclass(frozen=True)
class Plan:
    """What will run: the flags resolved against the model's facts and its recipe."""

    cfg: RunConfig
    spec: ModelSpec
    dataset: str
    device: torch.device
    recipe: Recipe  # flags applied; batch size 'auto' is resolved in `build`
    rank: int = 0
    world: int = 1


def recipe_for(cfg: RunConfig, device_type: str) -> Recipe:
    """The model's recipe for this device kind with the given flags applied."""
    spec = get_model_spec(cfg.model, cfg.dataset)
    return with_overrides(spec.recipe(cfg.recipe, device_type), **recipe_overrides(cfg))


def check_toolchain(cfg: RunConfig, recipe: Recipe, device: torch.device) -> None:
    """A run whose first step would fail to build Triton's launcher stops here, in one line."""
    if toolchain.uses_triton(device.type, recipe.compile, recipe.loader):
        toolchain.require(f"{cfg.model} on {device} (recipe {recipe.name}, compile "
                          f"{recipe.compile}, loader {recipe.loader})")


def resolve(cfg: RunConfig, dist: DistContext | None = None,
            device: torch.device | None = None) -> Plan:
    """The run's plan; `device` from the caller's `validate` (else validated here, once)."""
    device = validate(cfg) if device is None else device
    spec = get_model_spec(cfg.model, cfg.dataset)
    device = dist.device if dist is not None else device
    recipe = recipe_for(cfg, device.type)
    check_toolchain(cfg, recipe, device)
    return Plan(cfg, spec, cfg.dataset or spec.default_dataset, device, recipe,
                rank=dist.rank if dist else 0, world=dist.world if dist else 1)


# ----------------------------------------------------------------------------- build
@dataclass
class Built:
    """Everything the training loop and the summary need."""

    plan: Plan
    recipe: Recipe  # as run (batch size resolved)
    data: DatasetArrays
    model: torch.nn.Module  # the module as trained (compiled and/or DDP-wrapped)
    train_loader: Loader
    step: Any
    engine: EngineConfig
    result: Result
    evaluate_fn: Any = None
    test_loader: Loader | None = None
    reset: Any = None  # puts model, optimiser, schedule, scaler back after the warm-up pass


def _load_data(plan: Plan) -> DatasetArrays:
    cfg = plan.cfg
    torch.manual_seed(cfg.seed)
    return load_dataset(plan.dataset, cfg.data_dir, seed=cfg.seed,
                        allow_synthetic=cfg.allow_synthetic, download=cfg.download)


def _auto_batch(plan: Plan, model: torch.nn.Module, data: DatasetArrays
                ) -> tuple[Recipe, list[dict[str, Any]] | None]:
    """`--batch-size auto`: the largest batch that runs a step, backing off on OOM."""
    if plan.cfg.batch_size != AUTO_BATCH:
        return plan.recipe, None
    h, w, c = data.train_x.shape[1:]
    shape = (c, h, w)
    fmt = torch.channels_last if plan.recipe.channels_last else torch.contiguous_format
    cands = candidate_sizes(plan.device, model, shape, len(data.train_y))
    probe = probe_step(model, plan.device, shape,
                       lambda: autocast_context(plan.device, plan.recipe.precision), fmt)
    bs, log = find_batch_size(probe, cands, plan.device)
    return dataclasses.replace(plan.recipe, batch_size=bs), log


def _loaders(plan: Plan, recipe: Recipe, data: DatasetArrays, batch: BatchSize
             ) -> tuple[Loader, Loader]:
    common = dict(device=plan.device, dtype=precision(recipe.precision).input_dtype,
                  channels_last=recipe.channels_last, norm=recipe.norm, seed=plan.cfg.seed,
                  workers=recipe.workers)
    train_loader = make_loader(recipe.loader, data, LoaderConfig(
        split="train", batch_size=batch.per_rank, augment=recipe.augment,
        pad=recipe.augment_pad, shuffle=True,
        drop_last=True, rank=plan.rank, world_size=plan.world, **common))
    # Evaluation always covers the full test set on every rank (never a shard).
    test_loader = make_loader(recipe.loader, data, LoaderConfig(
        split="test", batch_size=recipe.test_batch_size, augment=False, shuffle=False,
        drop_last=False, **common))
    if len(train_loader) == 0:
        raise BenchError(f"batch size {batch.per_rank} exceeds the {len(data.train_y)} training "
                         "images: no full batch")
    return train_loader, test_loader


def total_steps(recipe: Recipe, steps_per_epoch: int, max_steps: int | None) -> int:
    """Training steps of the run: the recipe's epochs, capped by --max-steps."""
    steps = math.ceil(recipe.epochs * steps_per_epoch)
    return min(steps, max_steps) if max_steps else steps


def _result_skeleton(plan: Plan, recipe: Recipe, data: DatasetArrays, loader: Loader,
                     model_info: tuple[int, str], batch: BatchSize) -> Result:
    """The result before training: what ran, where, on what (derived from the run options)."""
    from bench.measure.peak import load_cached_peak

    cfg, device = plan.cfg, plan.device
    config = {**recorded_options(cfg, recipe), "dataset": plan.dataset, "device": str(device),
              "recipe": recipe.name,
              "threads": torch.get_num_threads() if device.type == "cpu" else None,
              "world_size": plan.world, "per_rank_batch_size": batch.per_rank,
              **backend_settings()}  # TF32 and cuDNN autotuning as this run had them
    env = {**fingerprint(), "peak": load_cached_peak(device)}  # the MFU denominator, as measured
    params, architecture = model_info
    # the architecture's digest (its module tree as printed) is part of the benchmark version
    model = {"name": cfg.model, "params": params, "architecture": architecture,
             "description": plan.spec.description}
    if plan.spec.source is not None:  # from outside the package: where from, which version
        model.update(source=plan.spec.source, version=plan.spec.version)
        config["model_version"] = plan.spec.version  # part of the key (results.rows.run_key)
    return Result(
        config=config, env=env, recipe=dataclasses.asdict(recipe), data=data.describe(),
        loader=loader.describe(), model=model,
        timed_window=TIMED_WINDOW, suite=cfg.suite, repeat=cfg.repeat,
        batch_id=cfg.batch_id)


def build(plan: Plan, dist: DistContext | None = None) -> Built:
    """Data, model, loaders, optimiser and the step function; compilation happens lazily in
    the warm-up window, not here."""
    cfg, device = plan.cfg, plan.device
    if device.type == "cpu" and plan.recipe.threads > 0:
        torch.set_num_threads(plan.recipe.threads)
    devmod.select(device)  # cuda:N: Triton kernels and CUDA graphs launch on the current GPU
    data = _load_data(plan)
    set_matmul_precision(device, plan.recipe.precision, plan.recipe.torch_defaults)
    model = plan.spec.build().to(device)
    params, architecture = count_params(model), architecture_digest(model)
    if plan.recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    recipe, search_log = _auto_batch(plan, model, data)
    batch = BatchSize(recipe.batch_size, plan.world)  # the one holder from here on
    train_loader, test_loader = _loaders(plan, recipe, data, batch)
    steps = total_steps(recipe, len(train_loader), cfg.max_steps)
    if cfg.measure == "throughput":  # as many steps as the time budget takes; no schedule end
        steps = THROUGHPUT_SCHEDULE_STEPS
    opt = build_optimizer(model, recipe)
    compiled = maybe_compile(model, recipe.compile)
    if dist is not None:
        compiled = wrap_ddp(compiled, device)
    scheduler, scaler = build_scheduler(opt, recipe, steps), make_scaler(device, recipe.precision)
    step = make_train_step(compiled, opt, scheduler, device, recipe.precision,
                           recipe.label_smoothing, cudagraphs=recipe.compile == "reduce-overhead",
                           scaler=scaler)
    # a training run starts from this state again after its untimed warm-up pass
    reset = snapshot(model, opt, scheduler, scaler) if cfg.measure == "train" else None
    evaluate_fn = None
    if dist is not None:  # every rank evaluates, all act on rank 0's figure (the one stored)
        evaluate_fn = rank0_evaluate(compiled, test_loader, device, recipe.precision, dist)
    target = plan.spec.target(plan.dataset) if data.real else None
    engine = EngineConfig(total_steps=steps, eval_every=recipe.eval_every,
                          target_accuracy=target, stop_at_target=recipe.stop_at_target,
                          evaluate=cfg.evaluate, warmup_steps=cfg.warmup_steps,
                          window_steps=cfg.window_steps, batch=batch,
                          cudagraphs=recipe.compile == "reduce-overhead")
    result = _result_skeleton(plan, recipe, data, train_loader, (params, architecture), batch)
    if search_log is not None:
        result.config["batch_size_search"] = search_log
    return Built(plan, recipe, data, compiled, train_loader, step, engine, result, evaluate_fn,
                 test_loader, reset)


# ----------------------------------------------------------------------------- execute
def _record_failure(result: Result, exc: BaseException, batch_size: int,
                    device: torch.device) -> None:
    """Turn what stopped training into the result's status; nothing is raised further."""
    if isinstance(exc, KeyboardInterrupt):
        result.status = "interrupted"
        result.message = (f"stopped by {interrupts.describe()} after {len(result.epochs)} "
                          "complete epoch(s)")
    elif isinstance(exc, NonFiniteLoss):
        result.status, result.message = "nan", str(exc)
    elif devmod.is_oom(exc):
        result.status = "oom"
        result.message = f"out of memory at batch size {batch_size}"
        devmod.empty_cache(device)
    else:  # recorded, never lost; BENCH_DEBUG=1 shows the traceback
        first_line = (str(exc).splitlines() or [""])[0][:300]
        result.status, result.message = "error", f"{type(exc).__name__}: {first_line}"
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exception(exc)


def _budget(plan: Plan) -> float:
    """--measure throughput: seconds of timed training."""
    return plan.cfg.budget_s or THROUGHPUT_BUDGET_S.get(plan.device.type, 5.0)


def _measure(built: Built, state: TrainState, progress: RunProgress) -> None:
    """--measure throughput: untimed warm-up, then timed windows for the time budget."""
    plan = built.plan
    budget = _budget(plan)
    built.model.train()
    cfg = plan.cfg
    measure_throughput(built.step, built.train_loader, plan.device, ThroughputConfig(
        budget_s=budget, warmup_steps=cfg.warmup_steps, batch=built.engine.batch,
        max_steps=cfg.max_steps, turns=turns.for_process(),
        turn_key=f"{cfg.model}/{cfg.dataset}/{cfg.recipe}/{cfg.precision}/{cfg.batch_size}"),
        state, progress)
    built.result.config["budget_s"] = budget


def _progress(built: Built) -> RunProgress:
    """Rank 0 alone shows progress; the bar also needs a terminal and no --no-progress."""
    plan = built.plan
    shown = not plan.cfg.quiet and plan.rank == 0
    throughput = plan.cfg.measure == "throughput"
    return RunProgress(f"{plan.cfg.model}/{plan.dataset}/{built.recipe.loader}/"
                       f"{built.recipe.precision}", lines=shown, bar=shown and plan.cfg.progress,
                       total=_budget(plan) if throughput else built.engine.total_steps,
                       unit="s" if throughput else "step")


def execute(built: Built, dist: DistContext | None = None) -> TrainState:
    """Train; the state is filled as it goes, so an interruption keeps what finished."""
    plan, state = built.plan, TrainState()
    progress = _progress(built)
    devmod.reset_peak_memory(plan.device)
    in_loop = dist.training_loop() if dist is not None else contextlib.nullcontext()
    try:
        with in_loop:
            if plan.cfg.measure == "throughput":
                _measure(built, state, progress)
            else:
                train(built.step, built.model, built.train_loader, built.test_loader,
                      plan.device, built.recipe.precision, built.engine, state, progress,
                      evaluate_fn=built.evaluate_fn, reset=built.reset)
    except (KeyboardInterrupt, Exception) as exc:
        built.result.epochs = state.epochs
        _record_failure(built.result, exc, built.recipe.batch_size, plan.device)
    finally:
        progress.close()
    return state


# ----------------------------------------------------------------------------- run
def _flops(model: str, batch: int, precision_name: str
           ) -> tuple[float | None, dict[str, float] | None, float | None]:
    """FLOPs per image, their split by kind (conv, matmul: which peaks bound the run) and the
    roofline's intensity, each None when it cannot be counted (a failing intensity, e.g. a
    model from outside the package, leaves the FLOPs and MFU). FLOP counting is informative
    only: it never fails a run, and under BENCH_DEBUG says why it could not count."""
    from bench.measure.flops import arithmetic_intensity, train_flop_split, train_flops_per_image

    try:
        flops, split = train_flops_per_image(model), train_flop_split(model)
    except Exception:
        debug_trace("FLOP counting")
        return None, None, None
    try:
        return flops, split, arithmetic_intensity(model, batch, precision_name)
    except Exception:
        debug_trace("arithmetic intensity")
        return flops, split, None


def _write(result: Result, out: str) -> Path:
    """Write the result; if `out` fails now (disk full, removed), rescue it to the temp folder
    rather than lose the run, and say where in one line."""
    try:
        return write_result(result, out)
    except OSError as exc:
        rescue = Path(tempfile.gettempdir()) / "bench-rescued"
        try:
            path = write_result(result, rescue)
        except OSError:
            raise BenchError(f"cannot write the result to {out} ({exc.strerror or exc}) nor to "
                             f"{rescue}") from None
        print(f"bench: cannot write to {out} ({exc.strerror or exc}); result saved as {path}",
              file=sys.stderr)
        return path


def run(cfg: RunConfig, dist: DistContext | None = None, device: torch.device | None = None
        ) -> tuple[Result, Path | None]:
    """Run one configuration; always returns a Result (written unless cfg.write is False).
    `device`: what the caller's `validate(cfg)` returned (the run is then not validated twice)."""
    threads, started = torch.get_num_threads(), time.perf_counter()
    try:
        if cfg.write:  # before any expensive work: the result must have a place to go
            for note in prepare_out_dir(cfg.out):
                print(f"bench: {note}", file=sys.stderr)
        plan = resolve(cfg, dist, device)
        built = build(plan, dist)
        state = execute(built, dist)
        result = built.result
        flops, split, intensity = _flops(cfg.model, built.engine.batch.per_rank,
                                         built.recipe.precision)
        result.epochs, result.evals = state.epochs, state.evals
        result.windows = [dataclasses.asdict(w) for w in state.windows]
        result.summary = summarise(state, built.train_loader.num_samples, flops,
                                   result.model["params"], built.engine.target_accuracy,
                                   plan.device,
                                   peak_precision(built.recipe.precision, plan.device,
                                                  result.config, split),
                                   intensity, measure=cfg.measure,
                                   images_per_step=built.engine.batch.total,
                                   wall_time_s=time.perf_counter() - started,
                                   flop_split=split)
        if dist is not None:  # rank 0 gathers every rank's report and writes the job's result
            return result, finish(dist, result, built.model, cfg.out, cfg.write)
        return result, _write(result, cfg.out) if cfg.write else None
    finally:  # a recipe's thread count must not leak into the next run of a suite
        torch.set_num_threads(threads)
