"""One benchmark run from configuration to a written result, whatever happens in between.

Every outcome a user can meet (NaN, out-of-memory, Ctrl-C, an error) ends as a result file with
its status; configuration mistakes are BenchErrors raised before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import device as devmod
from .autobatch import candidate_sizes, find_batch_size, probe_step
from .datasets import get_dataset_spec, load_dataset
from .engine import (
    COMPILE_MODES,
    PRECISIONS,
    TIMED_WINDOW,
    EngineConfig,
    NonFiniteLoss,
    Progress,
    TrainState,
    autocast_context,
    build_optimizer,
    build_scheduler,
    input_dtype,
    make_train_step,
    maybe_compile,
    set_matmul_precision,
    steady_state,
    train,
)
from .envinfo import fingerprint
from .errors import BenchError
from .loaders import LOADERS, LoaderConfig, make_loader
from .models import count_params, get_model_spec
from .recipes import get_recipe, target_accuracy, with_overrides
from .results import Result, write_result

DEFAULT_DATASET = {"mnist": "mnist", "cifar10": "cifar10"}
EXIT_CODES = {"ok": 0, "error": 1, "nan": 3, "oom": 4, "interrupted": 130}


@dataclass
class RunConfig:
    """Flags of `bench run`; None means 'take it from the recipe'."""

    model: str
    dataset: str | None = None
    loader: str | None = None
    device: str = "auto"
    precision: str | None = None
    channels_last: bool | None = None
    compile: str | None = None
    recipe: str = "seed"
    batch_size: int | str | None = None
    epochs: float | None = None
    max_steps: int | None = None
    seed: int = 0
    data_dir: str | None = None
    out: str = "results"
    workers: int | None = None
    eval_every: int | None = None
    lr: float | None = None
    threads: int | None = None
    allow_synthetic: bool = False
    download: bool = True  # try torchvision's (checksummed) download when files are missing
    suite: str | None = None
    repeat: int = 0
    quiet: bool = False
    evaluate: bool = True  # False: throughput only (no test pass, accuracy not recorded)
    write: bool = True


def validate(cfg: RunConfig) -> None:
    """Reject bad flags with one line before any work starts."""
    spec = get_model_spec(cfg.model)
    dataset = cfg.dataset or DEFAULT_DATASET[spec.family]
    ds = get_dataset_spec(dataset)
    if ds.family != spec.family:
        raise BenchError(f"model {cfg.model!r} takes {spec.family}-shaped input; dataset "
                         f"{dataset!r} is {ds.family}")
    if cfg.loader is not None and cfg.loader not in LOADERS:
        raise BenchError(f"unknown loader {cfg.loader!r}; choices: {', '.join(LOADERS)}")
    if cfg.precision is not None and cfg.precision not in PRECISIONS:
        raise BenchError(f"unknown precision {cfg.precision!r}; choices: {', '.join(PRECISIONS)}")
    if cfg.compile is not None and cfg.compile not in COMPILE_MODES:
        raise BenchError(f"unknown compile mode {cfg.compile!r}; "
                         f"choices: {', '.join(COMPILE_MODES)}")
    if isinstance(cfg.batch_size, str) and cfg.batch_size != "auto":
        raise BenchError(f"--batch-size must be a positive integer or 'auto', "
                         f"not {cfg.batch_size!r}")
    if isinstance(cfg.batch_size, int) and cfg.batch_size <= 0:
        raise BenchError(f"--batch-size must be positive, got {cfg.batch_size}")
    if cfg.epochs is not None and not (cfg.epochs > 0 and math.isfinite(cfg.epochs)):
        raise BenchError(f"--epochs must be positive, got {cfg.epochs}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise BenchError(f"--max-steps must be positive, got {cfg.max_steps}")
    if cfg.workers is not None and cfg.workers < 0:
        raise BenchError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.eval_every is not None and cfg.eval_every < 0:
        raise BenchError(f"--eval-every must be >= 0, got {cfg.eval_every}")
    get_recipe(cfg.recipe, cfg.model)
    devmod.resolve_device(cfg.device)


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _summarise(state: TrainState, loader_images: int, flops: float | None, params: int,
               target: float | None, device: torch.device, precision: str,
               intensity: float | None = None) -> dict[str, Any]:
    s: dict[str, Any] = dict(steady_state(state.windows))
    s["arithmetic_intensity"] = intensity
    timed = [e["train_time_s"] for e in state.epochs if e.get("timed")]
    if len(state.epochs) >= 2 and timed:
        s["epoch_time_s"], s["epoch_time_source"] = statistics.median(timed), "median timed epochs"
    elif s.get("images_per_s"):
        s["epoch_time_s"] = loader_images / s["images_per_s"]
        s["epoch_time_source"] = "epoch images / steady-state images/s"
    else:
        s["epoch_time_s"], s["epoch_time_source"] = None, None
    accs = [e["test_acc"] for e in state.evals if e.get("test_acc") is not None]
    s.update({
        "final_test_acc": accs[-1] if accs else None,
        "best_test_acc": max(accs) if accs else None,
        "target_accuracy": target,
        "time_to_accuracy_s": state.time_to_accuracy_s,
        "steps_to_accuracy": state.steps_to_accuracy,
        "steps": state.steps,
        "total_train_time_s": state.train_time_s,
        "total_eval_time_s": state.eval_time_s,
        "warmup_time_s": state.warmup_time_s,
        "params": params,
        "flops_per_image": flops,
    })
    warm = [w for w in state.windows if w.warmup]
    if warm and s.get("images_per_s"):
        # warm-up time beyond what the same images cost in steady state: compile, autotune, JIT
        s["compile_time_s"] = max(0.0, sum(w.seconds for w in warm)
                                  - sum(w.images for w in warm) / s["images_per_s"])
    else:
        s["compile_time_s"] = None
    peak_bytes, kind = devmod.peak_memory_bytes(device)
    s["peak_memory_bytes"], s["peak_memory_kind"] = peak_bytes, kind
    s["achieved_tflops"] = (flops * s["images_per_s"] / 1e12
                            if flops and s.get("images_per_s") else None)
    s["mfu"] = None
    from .peak import cached_peak_flops, load_cached_peak

    peak = cached_peak_flops(device, precision)
    if peak:
        s["peak_tflops"] = peak / 1e12
    if peak and s["achieved_tflops"]:
        s["mfu"] = s["achieved_tflops"] * 1e12 / peak
    bandwidth = (load_cached_peak(device) or {}).get("copy_bytes_per_s")
    s["peak_copy_gbs"] = bandwidth / 1e9 if bandwidth else None
    ai = s.get("arithmetic_intensity")
    if ai and peak and bandwidth:
        # roofline: below the ridge point (peak / bandwidth) memory traffic limits the step
        s["ridge_flops_per_byte"] = peak / bandwidth
        s["roofline_bound"] = "bandwidth" if ai < peak / bandwidth else "compute"
    return s


def run(cfg: RunConfig) -> tuple[Result, Path | None]:
    """Run one configuration; always returns a Result (written unless cfg.write is False)."""
    threads = torch.get_num_threads()
    try:
        return _run(cfg)
    finally:  # a recipe's thread count must not leak into the next run of a suite
        torch.set_num_threads(threads)


def _run(cfg: RunConfig) -> tuple[Result, Path | None]:
    validate(cfg)
    spec = get_model_spec(cfg.model)
    dataset = cfg.dataset or DEFAULT_DATASET[spec.family]
    device = devmod.resolve_device(cfg.device)
    if "WORLD_SIZE" in os.environ:  # started by torchrun: join its process group
        from .distributed import init_from_env

        device = init_from_env(device)
    base = get_recipe(cfg.recipe, cfg.model)
    recipe = with_overrides(
        base, precision=cfg.precision, channels_last=cfg.channels_last, compile=cfg.compile,
        batch_size=cfg.batch_size if isinstance(cfg.batch_size, int) else None,
        epochs=cfg.epochs, loader=cfg.loader, workers=cfg.workers, eval_every=cfg.eval_every,
        lr=cfg.lr, threads=cfg.threads)
    rank, world = _dist_info()
    if device.type == "cpu" and recipe.threads > 0:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(cfg.seed)
    data = load_dataset(dataset, cfg.data_dir, seed=cfg.seed, allow_synthetic=cfg.allow_synthetic,
                        download=cfg.download)
    target = target_accuracy(cfg.model, dataset) if data.real else None

    set_matmul_precision(device, recipe.precision)
    model = spec.build().to(device)
    params = count_params(model)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    autobatch_log = None
    if cfg.batch_size == "auto":
        h, w, c = data.train_x.shape[1:]
        shape = (c, h, w)
        cands = candidate_sizes(device, model, shape, len(data.train_y))
        bs, autobatch_log = find_batch_size(
            probe_step(model, device, shape, lambda: autocast_context(device, recipe.precision),
                       fmt), cands, device)
        recipe = dataclasses.replace(recipe, batch_size=bs)
    per_rank_batch = recipe.batch_size // world if world > 1 else recipe.batch_size
    if per_rank_batch <= 0:
        raise BenchError(f"batch size {recipe.batch_size} is smaller than the world size {world}")
    workers = recipe.workers
    common = dict(device=device, dtype=input_dtype(recipe.precision),
                  channels_last=recipe.channels_last, norm=recipe.norm, seed=cfg.seed,
                  workers=workers, rank=rank, world_size=world)
    train_loader = make_loader(recipe.loader, data, LoaderConfig(
        split="train", batch_size=per_rank_batch, augment=recipe.augment, shuffle=True,
        drop_last=True, **common))
    # Evaluation always covers the full test set on every rank (never a shard).
    test_common = {**common, "rank": 0, "world_size": 1}
    test_loader = make_loader(recipe.loader, data, LoaderConfig(
        split="test", batch_size=recipe.test_batch_size, augment=False, shuffle=False,
        drop_last=False, **test_common))
    if len(train_loader) == 0:
        raise BenchError(f"batch size {per_rank_batch} exceeds the {len(data.train_y)} training "
                         "images: no full batch")

    total_steps = math.ceil(recipe.epochs * len(train_loader))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe, total_steps)
    compiled = maybe_compile(model, recipe.compile)
    if world > 1:
        from .distributed import wrap_ddp

        compiled = wrap_ddp(compiled, device)
    step = make_train_step(compiled, opt, sched, device, recipe.precision,
                           recipe.label_smoothing,
                           cudagraphs=recipe.compile == "reduce-overhead")
    evaluate_fn = None
    if world > 1:  # fault-injection / shard-dump hooks; the step itself when they are off
        from .distributed import instrument_step, rank0_evaluate

        step = instrument_step(step, rank)
        # every rank evaluates, all act on rank 0's figure (the one stored)
        evaluate_fn = rank0_evaluate(compiled, test_loader, device, recipe.precision)
    eng = EngineConfig(epochs=recipe.epochs, max_steps=cfg.max_steps, evaluate=cfg.evaluate,
                       eval_every=recipe.eval_every, target_accuracy=target,
                       stop_at_target=recipe.stop_at_target, batch_size=per_rank_batch)

    try:
        from .flops import arithmetic_intensity, train_flops_per_image

        flops = train_flops_per_image(cfg.model)
        intensity = arithmetic_intensity(cfg.model, per_rank_batch, recipe.precision)
    except Exception:  # FLOP counting is informative only; never fail a run for it
        flops = intensity = None
    config = {
        "model": cfg.model, "dataset": dataset, "loader": recipe.loader,
        "device": str(device), "precision": recipe.precision,
        "compile": recipe.compile, "channels_last": recipe.channels_last,
        "batch_size": recipe.batch_size, "recipe": recipe.name, "epochs": recipe.epochs,
        "max_steps": cfg.max_steps, "seed": cfg.seed, "workers": workers,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "data_dir": cfg.data_dir, "world_size": world, "per_rank_batch_size": per_rank_batch,
    }
    from .peak import load_cached_peak

    env = {**fingerprint(), "peak": load_cached_peak(device)}  # the MFU denominator, as measured
    result = Result(
        config=config, env=env, recipe=dataclasses.asdict(recipe),
        data=data.describe(), loader=train_loader.describe(),
        model={"name": cfg.model, "params": params, "description": spec.description},
        timed_window=TIMED_WINDOW, suite=cfg.suite, repeat=cfg.repeat,
    )
    if autobatch_log is not None:
        result.config["batch_size_search"] = autobatch_log
    state = TrainState()
    progress = Progress(not cfg.quiet and rank == 0,
                        f"{cfg.model}/{dataset}/{recipe.loader}/{recipe.precision}")
    devmod.reset_peak_memory(device)
    try:
        train(step, compiled, train_loader, test_loader, device, recipe.precision, eng, state,
              progress, evaluate_fn=evaluate_fn)
    except KeyboardInterrupt:
        result.status = "interrupted"
        result.message = f"interrupted by the user after {len(state.epochs)} complete epoch(s)"
    except NonFiniteLoss as exc:
        result.status, result.message = "nan", str(exc)
    except Exception as exc:  # recorded, never lost; BENCH_DEBUG=1 shows the traceback
        if devmod.is_oom(exc):
            result.status = "oom"
            result.message = f"out of memory at batch size {recipe.batch_size}"
            devmod.empty_cache(device)
        else:
            first_line = (str(exc).splitlines() or [""])[0][:300]
            result.status, result.message = "error", f"{type(exc).__name__}: {first_line}"
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
    result.epochs = state.epochs
    result.summary = _summarise(state, train_loader.num_samples, flops, params, target, device,
                                recipe.precision, intensity)
    result.evals = state.evals
    result.windows = [dataclasses.asdict(w) for w in state.windows]
    if world > 1:  # rank 0 gathers every rank's report and writes the job's one result
        from .distributed import finish

        return result, finish(result, compiled, rank, world, cfg.out, cfg.write)
    path = write_result(result, cfg.out) if (cfg.write and rank == 0) else None
    return result, path
