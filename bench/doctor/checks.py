"""The checks of `bench doctor`, each a function of the Context returning its one pass line.

Each raises `Skip` when it does not apply here and `Fail` (or anything else) when it finds a
problem; bench/doctor/verb.py runs them under a timeout and turns every outcome into a row. Optional
imports (triton, pynvml, ffcv) are made inside the checks that need them, so a machine without
one gets a precise row, never an ImportError at start-up. docs/doctor.md describes each check.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
from dataclasses import replace
from functools import partial
from typing import Any

from bench.defaults import PACKAGE_ROOT
from bench.doctor.check import Check, Context, Fail, Skip
from bench.errors import BenchError

# A measured tensor-core peak outside this fraction of the vendor's dense figure is wrong:
# above, the table entry or the clock is wrong; far below, the GPU is capped, throttled or
# misconfigured. Checked for every tensor-core precision (fp32 runs on CUDA cores: no band).
VENDOR_BAND = (0.25, 1.05)
BANDED_PRECISIONS = ("tf32", "bf16", "fp16")
STEPS = {"cpu": 4, "cuda": 6}  # training steps per model run: 2 warm-up, then 2-step windows
EVAL_CAP_STEPS = 30  # the eval row on synthetic data (no target to stop at)
# a check's few CPU steps: small batches (the recipes' are for whole epochs, the suites' for
# throughput: suites.policy.CPU_HEAVY_BATCH)
SMOKE_BATCH_CPU, SMOKE_HEAVY_BATCH_CPU = 32, 4  # the VGGs: the heavy ones
KERNEL_BATCHES = (1, 7, 33, 256)  # odd sizes: partial tiles, one-sample grids
EAGER_TIMEOUT_S, COMPILE_TIMEOUT_S = 120.0, 240.0
DDP_TIMEOUT_S = 180.0
# GPU-first: every compile mode x precision on one small and one conv-heavy model comes right
# after the machine checks, before anything a time budget may cut
CORE_MODELS = ("fc", "vgg11")
# Typical seconds per check on one H100/H200-class GPU (docs/doctor.md: the reasoning). A
# budgeted check starts only when its estimate fits what is left of the budget.
ESTIMATE_S = {"eager": 5.0, "compiled": 15.0, "compiled-heavy": 30.0, "loader": 10.0,
              "ffcv": 30.0, "ddp": 40.0, "eval": 20.0}


# ----------------------------------------------------------------------------- machine
def check_device(ctx: Context) -> str:
    """Resolve the device as `bench run` would; on CUDA run one kernel and name the versions."""
    import torch

    from bench.host import device as devmod
    from bench.host.envinfo import fingerprint

    try:
        ctx.device = devmod.resolve_device(ctx.device_name)
    except BenchError as exc:
        raise Fail(str(exc)) from None
    if ctx.device.type == "cpu":
        problem = devmod.unusable_gpu("auto")
        if problem is not None:  # a CPU run on a machine whose GPU is unusable: say so
            raise Fail(problem)
        return (f"cpu: {fingerprint().get('cpu_model')}, torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads; no NVIDIA GPU seen")
    return _cuda_line(ctx.device)


def _cuda_line(dev: Any) -> str:
    import torch

    from bench.host import device as devmod

    devmod.select(dev)
    got = (torch.ones(4, device=dev) + 1).sum().item()  # a kernel runs (no "no kernel image")
    if got != 8:
        raise Fail(f"a trivial CUDA kernel returned {got}, expected 8")
    major, minor = torch.cuda.get_device_capability(dev)
    arch, archs = f"sm_{major}{minor}", torch.cuda.get_arch_list()
    native = "native kernels" if arch in archs else f"no {arch} in the wheel's {archs} (PTX JIT)"
    return (f"{devmod.gpu_name(dev)} ({arch}, {native}); driver "
            f"{devmod.nvidia_driver_version() or 'unknown'}, torch {torch.__version__} "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"{torch.cuda.device_count()} GPU(s) visible")


def check_toolchain(ctx: Context) -> str:
    """Triton's launcher build needs a C compiler and Python.h; on CUDA Triton must import."""
    from bench.host import toolchain

    lacking = toolchain.missing()
    if lacking:
        text = f"{' and '.join(lacking)}; install them: {toolchain.fix_line()}"
        if ctx.cuda:
            raise Fail(f"Triton cannot build its C launcher: {text}")
        raise Skip(f"Triton runs on CUDA only; here {text}")
    line = (f"C compiler {toolchain.c_compiler()}, headers "
            f"{toolchain.python_include_dir() / 'Python.h'}")
    if not ctx.cuda:
        return line
    from kernels import triton_available

    if not triton_available():
        raise Fail("triton cannot be imported (torch.compile and the gpu loader need it)")
    import triton

    return f"{line}, triton {triton.__version__}"


def check_nvml(ctx: Context) -> str:
    """NVML finds this GPU by UUID and reads clocks, power, temperature and throttle reasons."""
    from bench.host.nvml import FIELDS, open_telemetry

    tele = open_telemetry(ctx.device)
    tele.sample()
    tele.sample()
    s = tele.summary()
    if not s["available"]:
        raise Fail(f"no NVML telemetry: {s['reason']}")
    missing = [k for k in FIELDS if s.get(k) is None]
    if missing:
        raise Fail(f"NVML gave no {', '.join(missing)} ({'; '.join(s.get('errors', []))})")
    sm, mem, power, temp = (s[k]["max"] for k in FIELDS)  # type: ignore[literal-required]
    return (f"GPU {s['uuid']}: SM {sm:.0f} MHz, memory {mem:.0f} MHz, {power:.0f} W, "
            f"{temp:.0f} C, clock-event reasons {s['throttle_reasons'] or 'none'}")


def _peak_figures(ctx: Context) -> tuple[dict[str, float], str]:
    """FLOP/s per precision: a fresh quick probe (cached for the runs below), or on a CPU the
    cached one (a CPU probe takes tens of seconds; --full measures)."""
    from bench.measure.peak import load_cached_peak, measure_peak

    if not ctx.cuda and not ctx.full:
        cached = load_cached_peak(ctx.device)
        if cached is None:
            raise Skip("no measured peak cached for this CPU (`bench peak` measures it, or "
                       "--full here); MFU is then unknown")
        return dict(cached["flops"]), "cached"
    doc = measure_peak(ctx.device, quick=True)
    return {p: max(v.values()) for p, v in doc["probes"].items()}, "measured"


def check_peak(ctx: Context) -> str:
    """A quick `bench peak` (cached, so the model runs below get a measured MFU); on CUDA the
    bf16 figure must lie in a plausible band of the vendor's dense datasheet peak."""
    from bench.host.device import gpu_name
    from bench.host.vendor_peaks import match_gpu

    probes, source = _peak_figures(ctx)
    bad = [p for p, v in probes.items() if not (math.isfinite(v) and v > 0)]
    if bad:
        raise Fail(f"peak probes gave no positive figure for {bad}: {probes}")
    figures = f"{source} TFLOP/s: " + ", ".join(f"{p} {v / 1e12:.3g}" for p, v in probes.items())
    if not ctx.cuda:
        return f"{figures} (no vendor figure for a CPU)"
    name = gpu_name(ctx.device)
    entry = match_gpu(name)
    if entry is None:
        return f"{figures}; {name!r} is not in the vendor table (no band to check)"
    ratios = {p: probes[p] / 1e12 / entry.tflops[p] for p in BANDED_PRECISIONS if p in probes}
    low, high = VENDOR_BAND
    where = ", ".join(f"{p} {probes[p] / 1e12:.0f} of {entry.tflops[p]:.0f} ({r:.0%})"
                      for p, r in ratios.items())
    bad = [p for p, r in ratios.items() if not low <= r <= high]
    if bad:
        raise Fail(f"measured TFLOP/s against the {entry.name} datasheet: {where}; "
                   f"{', '.join(bad)} outside the plausible {low:.0%}-{high:.0%} (wrong table "
                   "entry, a power cap, throttling, or another process on the GPU)")
    return f"measured TFLOP/s against the {entry.name} datasheet: {where}; {figures}"


# ----------------------------------------------------------------------------- kernel
def _ulp(x: Any, dtype: Any) -> Any:
    """One rounding step of `dtype` around fp32 `x` (subnormals included)."""
    import torch

    fi = torch.finfo(dtype)
    _, e = torch.frexp(x)
    return torch.clamp(fi.eps * torch.exp2((e - 1).to(torch.float32)),
                       min=fi.smallest_normal * fi.eps)


def _kernel_inputs(dev: Any, shape: tuple[int, int, int], b: int, seed: int) -> dict[str, Any]:
    """One batch's inputs: cifar-shaped with crop and flip, mnist-shaped with a permutation."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w, c = shape
    args: dict[str, Any] = {
        "data": torch.randint(0, 256, (64, h, w, c), dtype=torch.uint8, generator=g).to(dev),
        "indices": torch.randint(0, 64, (b,), generator=g).to(dev),
        "mean": torch.rand(c, generator=g) * 0.5 + 0.25,
        "std": torch.rand(c, generator=g) * 0.2 + 0.2,
    }
    if c == 3:
        args.update(crop_offsets=torch.randint(0, 9, (b, 2), generator=g).to(dev),
                    flips=(torch.rand(b, generator=g) < 0.5).to(dev), pad=4)
    else:
        args["perm"] = torch.randperm(h * w, generator=g).to(dev)
    return args


def _compare_kernel(args: dict[str, Any], dtype: Any, where: str) -> None:
    import torch

    from kernels.reference import prepare_batch_reference
    from kernels.triton_batch import prepare_batch_triton

    ref = prepare_batch_reference(**args, out_dtype=torch.float32)
    got = prepare_batch_triton(**args, out_dtype=dtype)
    if got.shape != ref.shape or got.dtype != dtype or got.device != args["data"].device:
        raise Fail(f"{where}: got {tuple(got.shape)} {got.dtype} on {got.device}, expected "
                   f"{tuple(ref.shape)} on {args['data'].device}")
    if dtype == torch.float32:
        if not torch.equal(got, ref):
            diff = (got - ref).abs()
            raise Fail(f"{where}: {int((diff != 0).sum())} elements differ from the reference "
                       f"(fp32 must be exact), max |diff| {diff.max().item():.3g}")
        return
    err = (got.float() - ref).abs()
    bad = int((err > _ulp(ref, dtype)).sum())
    if bad:
        raise Fail(f"{where}: {bad} elements more than one rounding step off, max |diff| "
                   f"{err.max().item():.3g}")


def _kernel_devices(ctx: Context) -> list[Any]:
    import torch

    n = torch.cuda.device_count()
    last = torch.device(f"cuda:{n - 1}")
    return [ctx.device] + ([last] if n > 1 and last != ctx.device else [])


def check_kernel(ctx: Context) -> str:
    """The gpu loader's Triton kernel against its pure-torch reference, on the device."""
    import torch

    from bench.host import device as devmod
    from kernels import triton_available
    if not triton_available():
        raise Fail("triton cannot be imported: the gpu loader would fall back to the reference")
    devices, cases = _kernel_devices(ctx), 0
    for dev in devices:
        devmod.select(dev)
        for shape in ((28, 28, 1), (32, 32, 3)):
            for b in KERNEL_BATCHES:
                args = _kernel_inputs(dev, shape, b, seed=b)
                for dtype in (torch.float32, torch.bfloat16, torch.float16):
                    _compare_kernel(args, dtype, f"{dev} HWC={shape} B={b} {dtype}")
                    cases += 1
        torch.cuda.synchronize(dev)
    devmod.select(ctx.device)
    return (f"{cases} cases on {', '.join(map(str, devices))}: fp32 exact, bf16/fp16 within "
            f"one rounding step, batches {KERNEL_BATCHES}")


# ----------------------------------------------------------------------------- runs
def check_result(result: Any, ctx: Context, dev: Any, expect: dict[str, Any]) -> str:
    """Every result: status ok, the config as asked, the environment naming the device, the
    steps done, a positive images/s and 0 < MFU < 1 where an MFU is known."""
    if result.status != "ok":
        raise Fail(f"status {result.status}: {result.message}")
    wrong = {k: (result.config.get(k), v) for k, v in expect.items() if result.config.get(k) != v}
    if wrong:
        raise Fail(f"the result's config differs from the run asked for: {wrong} (got, asked)")
    _check_env_names_device(result.env, dev)
    s = result.summary
    asked = result.config.get("max_steps")
    if asked and s.get("steps") != asked:
        raise Fail(f"{s.get('steps')} steps done, {asked} asked")
    ips = s.get("images_per_s")
    if not (isinstance(ips, (int, float)) and math.isfinite(ips) and ips > 0):
        raise Fail(f"images/s is {ips!r}")
    for key in ("mfu", "mfu_vendor"):
        value = s.get(key)
        if value is not None and not 0 < value < 1:
            raise Fail(f"{key} {value!r} is outside (0, 1)")
    return (f"{s.get('steps')} steps, {ips:,.0f} img/s ({s.get('images_per_s_source') or '?'}),"
            f" warm-up {s.get('warmup_time_s') or 0:.1f}s, {_mfu_phrase(s)}")


def _mfu_phrase(s: dict[str, Any]) -> str:
    """Both MFUs as printed everywhere (`fmt_mfu`); one above 100% was dropped by the run and
    is explained by its note (a Winograd/FFT convolution, a peak measured under load), which
    is a pass with the note, not a figure."""
    from bench.results.format import fmt_mfu

    shown = [f"{k} {fmt_mfu(s, k, '.2f', sign=True)}" for k in ("mfu", "mfu_vendor")
             if s.get(k) is not None or fmt_mfu(s, k) != "-"]
    if not shown:
        return "MFU unknown (no peak)"
    note = f" ({s['mfu_note']})" if s.get("mfu_note") else ""
    return ", ".join(shown) + note


def _check_env_names_device(env: dict[str, Any], dev: Any) -> None:
    if dev.type != "cuda":
        if not env.get("cpu_model"):
            raise Fail("the result's environment names no CPU model")
        return
    import torch

    name = torch.cuda.get_device_name(dev)
    if name not in [g.get("name") for g in env.get("gpus") or []]:
        raise Fail(f"the result's environment does not name {name!r}: {env.get('gpus')}")


def _run_config(ctx: Context, dev: Any, model: str, **over: Any) -> Any:
    from bench.spec.models import get_model_spec
    from bench.spec.runspec import RunConfig

    spec = get_model_spec(model)
    family = spec.family
    base: dict[str, Any] = dict(
        model=model, dataset=f"synthetic-{family}", device=str(dev), recipe="fast",
        max_steps=STEPS[dev.type], warmup_steps=2, window_steps=2, evaluate=False,
        quiet=True, write=False, out=str(ctx.work_dir), data_dir=ctx.data_dir)
    if dev.type == "cpu":
        base["batch_size"] = SMOKE_HEAVY_BATCH_CPU if spec.heavy_on_cpu else SMOKE_BATCH_CPU
    return RunConfig(**{**base, **over})


def train_run(ctx: Context, model: str, dev: Any = None, **over: Any) -> str:
    """A few steps of `model` through the runner (after the suite's isolation reset)."""
    from bench.host.device import isolate
    from bench.measure.runner import run

    dev = dev if dev is not None else ctx.device
    isolate(dev)
    cfg = _run_config(ctx, dev, model, **over)
    result, _ = run(cfg)
    expect = {k: over[k] for k in ("precision", "compile", "loader") if k in over}
    return check_result(result, ctx, dev, {**expect, "device": str(dev)})


def check_loader(name: str, ctx: Context) -> str:
    """One loader feeding a few training steps (ffcv skipped, with why, when not installed)."""
    if name == "ffcv" and importlib.util.find_spec("ffcv") is None:
        raise Skip("ffcv is not installed (pip install -e '.[ffcv]'; needs libopencv-dev and "
                   "libturbojpeg0-dev)")
    model = "fc" if name == "ffcv" else "lenet"
    return train_run(ctx, model, loader=name, precision="bf16" if ctx.cuda else "fp32",
                     compile="none")


def check_autobatch(ctx: Context) -> str:
    """`--batch-size auto`: the search runs and the run trains at the size it chose."""
    from bench.host.device import isolate
    from bench.measure.runner import run

    isolate(ctx.device)
    result, _ = run(_run_config(ctx, ctx.device, "fc", batch_size="auto", compile="none"))
    line = check_result(result, ctx, ctx.device, {})
    search = result.config.get("batch_size_search") or []
    chosen = [t["batch_size"] for t in search if t.get("ok")]
    if chosen != [result.config.get("batch_size")]:
        raise Fail(f"the search {search} does not end at the batch size run "
                   f"({result.config.get('batch_size')})")
    return f"chose batch {chosen[0]} (tried {[t['batch_size'] for t in search]}); {line}"


def check_ddp(ctx: Context) -> str:
    """One 1-process DistributedDataParallel run through torchrun, its result checked."""
    from types import SimpleNamespace

    from bench.measure.distributed import torchrun_command
    from bench.results import read_result

    if not ctx.cuda and not ctx.full:
        raise Skip("on a CPU only with --full (two torch start-ups; tests/test_distributed.py "
                   "runs DDP over gloo)")
    out = ctx.work_dir / "ddp"
    argv = ["run", "--model", "fc", "--dataset", "synthetic-mnist", "--device",
            str(ctx.device), "--max-steps", str(STEPS[ctx.device.type]), "--warmup-steps", "2",
            "--window-steps", "2", "--batch-size", "64", "--no-eval", "--quiet",
            "--recipe", "fast", "--compile", "none", "--out", str(out)]
    root = str(PACKAGE_ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(torchrun_command(argv, 1), capture_output=True, text=True, env=env,
                          timeout=DDP_TIMEOUT_S - 10)
    files = sorted(out.glob("*.json")) if out.is_dir() else []
    if proc.returncode != 0 or not files:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise Fail(f"torchrun exited {proc.returncode} with {len(files)} result(s): {tail}")
    doc = read_result(files[-1])
    if (doc.get("config") or {}).get("world_size") != 1:
        raise Fail(f"the result's world_size is {doc.get('config', {}).get('world_size')}")
    result = SimpleNamespace(**{k: doc.get(k) for k in ("status", "message", "config", "env",
                                                        "summary")})
    return "torchrun, 1 process: " + check_result(result, ctx, ctx.device, {})


def check_cuda_n(ctx: Context) -> str:
    """With several GPUs: a run on the last one (the Triton kernel and CUDA graphs must launch
    there, not on GPU 0)."""
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        raise Skip("one GPU visible: cuda:N (N>0) is not exercised")
    dev = torch.device(f"cuda:{n - 1}")
    return f"{dev}: " + train_run(ctx, "lenet", dev, loader="device", precision="bf16",
                                  compile="reduce-overhead")


def check_eval_to_target(ctx: Context) -> str:
    """fc's fast recipe as it runs (on CUDA: reduce-overhead, evaluation every few steps, stop
    at target): train -> eval (another batch size: a second compilation, more CUDA-graph
    generations) -> train, to the target on real MNIST, or a capped run on synthetic data."""
    from bench.host.device import isolate
    from bench.measure.runner import run
    from bench.spec.datasets import load_dataset

    try:
        load_dataset("mnist", ctx.data_dir, download=False)
        dataset, cap = "mnist", None
    except BenchError:
        dataset, cap = "synthetic-mnist", EVAL_CAP_STEPS
    from bench.spec.runspec import RunConfig

    isolate(ctx.device)
    cfg = RunConfig(model="fc", dataset=dataset, device=str(ctx.device), recipe="fast",
                    max_steps=cap, quiet=True, write=False, out=str(ctx.work_dir),
                    data_dir=ctx.data_dir)
    result, _ = run(cfg)
    line = check_result(result, ctx, ctx.device, {"dataset": dataset})
    evals = len(result.evals)
    if evals < 2:
        raise Fail(f"{evals} evaluation(s) ran; the recipe evaluates every "
                   f"{result.config.get('eval_every')} steps")
    s = result.summary
    reached = s.get("steps_to_accuracy") is not None  # the summary's mark of a target reached
    if dataset == "mnist" and not reached:
        raise Fail(f"target {s.get('target_accuracy')} not reached in {s.get('steps')} steps "
                   f"(best {s.get('best_test_acc')}): {line}")
    where = (f"target {s['target_accuracy']:.0%} at step {s['steps_to_accuracy']}"
             if reached else "synthetic data: no target, capped")
    return (f"{dataset}, compile {result.config.get('compile')}, {evals} evaluations, "
            f"{where}; {line}")


# ----------------------------------------------------------------------------- the list
def _model_run(model: str, compile_mode: str, precision: str, ctx: Context) -> str:
    return train_run(ctx, model, compile=compile_mode, precision=precision)


def _model_check(model: str, compile_mode: str, precision: str, cuda: bool) -> Check:
    from bench.spec.models import get_model_spec

    label = "eager" if compile_mode == "none" else compile_mode
    fn = partial(_model_run, model, compile_mode, precision)
    timeout = EAGER_TIMEOUT_S if compile_mode == "none" else COMPILE_TIMEOUT_S
    kind = ("eager" if compile_mode == "none" else
            "compiled-heavy" if get_model_spec(model).heavy_on_cpu else "compiled")
    return Check(f"model:{model}:{label}:{precision}", fn, timeout, needs_cuda=cuda,
                 estimate_s=ESTIMATE_S[kind])


def _gpu_order(models: list[str]) -> list[Check]:
    """Every eager run of `models` first, then the compiled ones, bf16 before fp16 and fp32."""
    order = [("none", p) for p in ("bf16", "fp16", "fp32")] + [
        (c, p) for p in ("bf16", "fp16", "fp32") for c in ("reduce-overhead", "default")]
    return [_model_check(m, c, p, True) for c, p in order for m in models]


def core_matrix() -> list[Check]:
    """Every compile mode x precision on the small and the conv-heavy model, model by model,
    with the fast recipe's evaluation row after the small one (it reuses its compilation):
    what the first minutes on a GPU must show works."""
    small, heavy = CORE_MODELS
    return [*_gpu_order([small]), eval_check(), *_gpu_order([heavy])]


def _rest_of_matrix() -> list[Check]:
    """On a GPU, every model outside the core matrix, eager first."""
    from bench.spec.models import MODELS

    return _gpu_order([m for m in sorted(MODELS) if m not in CORE_MODELS])


def model_matrix(gpu: bool, full: bool) -> list[Check]:
    """Every model under eager, `default` and `reduce-overhead` in bf16, fp16 and fp32 (on a
    GPU the core models first, see `core_matrix`); on a CPU (unless --full) eager fp32 for
    every model and bf16/fp16 for fc (compiling on a CPU takes long and is not what a GPU
    machine needs checked)."""
    from bench.spec.models import MODELS

    models = sorted(MODELS)
    if gpu:
        return _gpu_order(list(CORE_MODELS)[:1]) + _gpu_order(list(CORE_MODELS)[1:]) + \
            _rest_of_matrix()
    if full:
        return [replace(c, needs_cuda=False) for c in _gpu_order(models)]
    return ([_model_check(m, "none", "fp32", False) for m in models]
            + [_model_check("fc", "none", p, False) for p in ("bf16", "fp16")])


def _wants_gpu(ctx: Context) -> bool:
    if ctx.device_name == "cpu":
        return False
    if ctx.device_name.startswith("cuda"):
        return True
    import torch

    return torch.cuda.is_available()


def machine_checks() -> list[Check]:
    """Essential: never skipped for the budget (they come first, and are quick)."""
    return [
        Check("device", check_device, 30.0, needs_device=False, budgeted=False),
        Check("toolchain", check_toolchain, 30.0, budgeted=False),
        Check("nvml", check_nvml, 30.0, needs_cuda=True, budgeted=False),
        Check("peak", check_peak, 120.0, budgeted=False),
        Check("kernel", check_kernel, 120.0, needs_cuda=True, budgeted=False),
    ]


def eval_check() -> Check:
    return Check("fast:fc:eval-to-target", check_eval_to_target, COMPILE_TIMEOUT_S,
                 estimate_s=ESTIMATE_S["eval"])


def first_contact_checks() -> list[Check]:
    """The GPU-first subset `--first-contact` runs: the machine, the core matrix (with a fast
    recipe's evaluation row)."""
    return [*machine_checks(), *core_matrix()]


def checks(ctx: Context) -> list[Check]:
    """The doctor's checks in order: the machine; on a GPU every compile mode x precision of
    the core models; a fast recipe with evaluation; the paths; the rest of the matrix."""
    from bench.data.loaders import LOADERS

    gpu = _wants_gpu(ctx)
    first = core_matrix() if gpu else [eval_check()]  # the core matrix holds the eval row
    rest = _rest_of_matrix() if gpu else model_matrix(False, ctx.full)
    return [
        *machine_checks(),
        *first,
        Check("cuda:N", check_cuda_n, COMPILE_TIMEOUT_S, needs_cuda=True,
              estimate_s=ESTIMATE_S["compiled"]),
        *(Check(f"loader:{name}", partial(check_loader, name), EAGER_TIMEOUT_S,
                estimate_s=ESTIMATE_S["ffcv" if name == "ffcv" else "loader"])
          for name in LOADERS),
        Check("batch-size-auto", check_autobatch, EAGER_TIMEOUT_S,
              estimate_s=ESTIMATE_S["loader"]),
        Check("ddp", check_ddp, DDP_TIMEOUT_S, estimate_s=ESTIMATE_S["ddp"]),
        *rest,
    ]


__all__ = ["VENDOR_BAND", "check_result", "checks", "first_contact_checks", "model_matrix",
           "train_run"]
