"""The training engine: one step function, clocks only at window edges, eval off the clock.

Timed window (stored verbatim in every result, see TIMED_WINDOW): from the first batch request
to the device sync after the last optimiser step of a window. Inside: loader iteration (data
loading, host->device copy, augmentation, normalisation), forward, loss, backward, optimiser
and LR-schedule step. Outside: evaluation, model build, dataset reading, loader construction,
result writing. Before the first timed step an untimed warm-up pass runs `warmup_steps` steps
(torch.compile compilation, cuDNN autotuning, loader JIT) and then puts the model, optimiser,
schedule, grad scaler and RNG back as they were: training starts warm, from step 0. Its
duration is warmup_time_s.

Time to accuracy, three ways (each named in TIMED_WINDOW): the training clock after the warm-up
pass (the headline, comparable across machines), the same plus the warm-up pass (start-up
costs), and the wall clock from the first timed step to the end of the evaluation that reached
the target (evaluations included, MLPerf's view). Images to target: images trained on until
the target was first reached (the device does not change it).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.defaults import COMPILE_MODES, PRECISIONS, WARMUP_STEPS, WINDOW_STEPS
from bench.defaults import precision as precision_spec
from bench.host import load as hostload
from bench.host.device import now, synchronize
from bench.host.nvml import open_telemetry
from bench.measure.progress import RunProgress
from bench.results.schema import EpochRow, EvalRow
from bench.spec.recipes import BatchSize, Recipe

# The rule for a timed window to count towards the steady-state images/s (the one home of it;
# bench.measure.throughput sizes its windows by it too). A window pays fixed costs once: the device
# sync that closes it (tens of microseconds) and a first step that starts on a drained device
# (its launch latency exposed, not hidden behind the previous step; after an evaluation, a
# cold loader too). From 20 ms on, those are a percent or so of the window; the fc/cnn
# fast@cuda recipes evaluate every 3 steps, a ~0.5 ms window on a GPU, where they dominate.
# Five steps keep the first step's share small where a single step alone lasts 20 ms; a window
# of LONG_WINDOW_S (five such steps) keeps it as small with fewer steps, so a model with a long
# step (vgg16 on a CPU: 0.17-0.5 s) gets windows of one or two steps, not of five (one window
# per round of `bench ci`'s 2 s budget, too few turns to decide on). A run with no such
# window takes images/s from the training clock's total instead (see `steady_state`), never
# from windows too short to time.
MIN_WINDOW_S = 0.020
MIN_WINDOW_STEPS = 5
LONG_WINDOW_S = MIN_WINDOW_STEPS * MIN_WINDOW_S
# A timed window whose seconds per image exceed STALL_FACTOR times the median of the windows
# that count (`Window.timeable`) is "stalled": the process was stopped (SIGSTOP, a debugger),
# preempted, swapped or throttled while the clock ran, a measurement fault the result names
# (`stalled_windows`). Honest noise stays well inside 3x: interference on a shared runner
# slows windows by tens of percent (docs/ci.md), and the committed reference CPU runs
# (results/reference/, 2 threads) keep their windows within 0.6-1.7x of the median, but for
# two cnn/device runs whose last window took 4.3-4.4x (this rule names those). The excess must
# last MIN_WINDOW_S too: below that it is the fixed costs the window rule above names. Fewer
# than STALL_MIN_WINDOWS windows that count give no median to judge by: nothing is said.
STALL_FACTOR = 3.0
STALL_MIN_WINDOWS = 3

TIMED_WINDOW = {
    "inside": [
        "loader iteration: data loading, host-to-device copy, augmentation, normalisation",
        "forward, loss, backward, optimiser step, LR schedule step",
    ],
    "outside": [
        "evaluation (timed separately as eval_time_s)",
        "the untimed warm-up pass before step 0 (warmup_time_s); the model, optimiser, "
        "schedule, grad scaler and RNG are reset after it",
        "dataset reading/decoding, model build, loader construction, result writing",
    ],
    "clock": "time.perf_counter after device synchronise at window edges (no syncs in between)",
    "steady_state": f"median images/s over the timed windows long enough to time (at least "
                    f"{MIN_WINDOW_S * 1000:g} ms and {MIN_WINDOW_STEPS} steps, or "
                    f"{LONG_WINDOW_S * 1000:g} ms); when none is, "
                    "the training clock's total (images / seconds over all timed windows); "
                    "summary.images_per_s_source says which",
    "time_to_accuracy": "time_to_accuracy_s: training clock from step 0 after the untimed "
                        "warm-up pass until the evaluation that first reached the target "
                        "(evaluation excluded; the headline, comparable across machines)",
    "time_to_accuracy_cold": "time_to_accuracy_cold_s: time_to_accuracy_s plus the warm-up "
                             "pass (start-up costs: compilation, JIT, autotuning, first steps)",
    "time_to_accuracy_wall": "time_to_accuracy_wall_s: wall clock from step 0 to the end of the "
                             "evaluation that first reached the target, evaluations included "
                             "(MLPerf's view)",
    "images_to_accuracy": "images_to_accuracy: training images (all ranks) until the target "
                          "was first reached; no device changes it",
}

__all__ = ["COMPILE_MODES", "FLOP_KINDS", "LONG_WINDOW_S", "MIN_WINDOW_S", "MIN_WINDOW_STEPS",
           "PRECISIONS", "STALL_FACTOR", "STALL_MIN_WINDOWS", "TIMED_WINDOW", "EngineConfig",
           "NonFiniteLoss", "TrainState", "Window",
           "autocast_context", "backend_settings", "build_optimizer", "build_scheduler",
           "effective_peak", "endless", "evaluate", "make_scaler", "make_train_step",
           "maybe_compile", "parse_peak_label", "parts_used", "peak_label", "peak_parts",
           "peak_precision", "set_matmul_precision", "set_tf32", "snapshot", "stalled_windows",
           "steady_state", "tf32_flags", "train", "window_rule"]


class NonFiniteLoss(Exception):
    """Training diverged: the run records status 'nan'."""


@dataclass
class Window:
    epoch: int
    steps: int
    images: int
    seconds: float
    warmup: bool
    host: dict[str, Any] | None = None  # bench.host.load.between: what else ran meanwhile
    probe: float | None = None  # throughput mode: the reference probe's rate right after it
    turn: int | None = None  # taken in turns with another process: its number (measure.turns)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def timeable(self) -> bool:
        """Long enough to time on its own (MIN_WINDOW_S and MIN_WINDOW_STEPS, or
        LONG_WINDOW_S)."""
        return self.seconds >= MIN_WINDOW_S and (self.steps >= MIN_WINDOW_STEPS
                                                 or self.seconds >= LONG_WINDOW_S)


class WindowClock:
    """The one clock of the timed windows, in both the train and the throughput mode: read
    after a device sync at a window's two edges only, with the host's CPU accounting sampled
    just outside them (bench/host/load.py: what else ran meanwhile). A window's images are
    counted from its steps after the clock is read, never inside the window."""

    def __init__(self, device: torch.device, images_per_step: int) -> None:
        self.device, self.images_per_step, self._start, self._host = (
            device, images_per_step, 0.0, None)

    def open(self) -> None:
        self._host = hostload.sample()  # before the clock starts: not inside the window
        self._start = now(self.device)

    def close(self, state: TrainState, epoch: int, steps: int) -> tuple[float, int]:
        """End the window: record it in `state` and sample the GPU (the device has just
        synchronised, so off the clock); returns its seconds and images."""
        seconds = now(self.device) - self._start
        images = steps * self.images_per_step
        host = hostload.between(self._host, hostload.sample())
        state.windows.append(Window(epoch, steps, images, seconds, False, host))
        state.train_time_s += seconds
        if state.telemetry is not None:
            state.telemetry.sample()
        return seconds, images


def record_warmup(state: TrainState, steps: int, images: int, seconds: float) -> None:
    """The untimed warm-up as both modes record it: epoch -1, outside the training clock.
    (How long to warm up is the mode's: a fixed pass in training, until the step time is
    stable in the throughput mode.)"""
    state.warmup_time_s = seconds
    state.windows.append(Window(-1, steps, images, seconds, warmup=True))


@dataclass
class TrainState:
    """What the run has done so far; read by the runner even after an interruption."""

    windows: list[Window] = field(default_factory=list)
    epochs: list[EpochRow] = field(default_factory=list)
    evals: list[EvalRow] = field(default_factory=list)
    steps: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    warmup_time_s: float | None = None
    time_to_accuracy_s: float | None = None
    time_to_accuracy_wall_s: float | None = None
    steps_to_accuracy: int | None = None
    reached_target: bool = False
    telemetry: Any = None  # bench.host.nvml.Telemetry: GPU samples at window edges


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = precision_spec(precision).autocast_dtype
    if dtype is not None:
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def set_tf32(matmul: bool, cudnn: bool) -> None:
    """Switch TensorFloat-32 for fp32 matmuls (cuBLAS) and cuDNN; every TF32 switch in the
    project goes through here, every read through `tf32_flags`.

    Through the two setters that keep torch's legacy state and its per-backend
    `fp32_precision` state (torch >= 2.9) in step: `set_float32_matmul_precision` and
    `cudnn.allow_tf32`. Setting only the new `fp32_precision` attributes leaves the legacy
    state behind, and torch then raises "mix of the legacy and new APIs" at the next legacy
    read, which torch's own inductor and dynamo code still makes (measured on torch 2.11 and
    2.14, CPU builds: tests/test_mfu.py); neither setter warns there."""
    torch.set_float32_matmul_precision("high" if matmul else "highest")
    torch.backends.cudnn.allow_tf32 = cudnn


def tf32_flags() -> tuple[bool, bool]:
    """(matmul, cuDNN convolution) TF32 as torch has them now. After `set_tf32` both APIs
    agree; if other code set only the new API, the legacy read raises and the new one
    answers."""
    try:
        return (torch.get_float32_matmul_precision() != "highest",
                bool(torch.backends.cudnn.allow_tf32))
    except RuntimeError:  # the state was set through the new API only
        conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
        return torch.backends.cuda.matmul.fp32_precision == "tf32", conv == "tf32"


def set_matmul_precision(device: torch.device, precision: str, torch_defaults: bool = False
                         ) -> dict[str, bool]:
    """fp32 means true fp32 (no TF32); tf32 enables TensorFloat-32 on CUDA. `torch_defaults`
    (the seed recipes) keeps PyTorch's own settings instead, as the course ran: TF32 off for
    matmuls, on for cuDNN convolutions, no cuDNN autotuning; they are set, not assumed, since
    an earlier run in this process may have changed them. Returns the settings in force."""
    allow = precision_spec(precision).tf32
    if torch_defaults and not allow:
        matmul, cudnn, autotune = False, True, False
    else:
        # shapes are fixed (drop_last), so cuDNN's autotuner pays off (in the warm-up window)
        matmul, cudnn, autotune = allow, allow, device.type == "cuda"
    set_tf32(matmul, cudnn)
    torch.backends.cudnn.benchmark = autotune
    return backend_settings()


def backend_settings() -> dict[str, bool]:
    """The TF32 and cuDNN-autotune flags as they stand, stored in every result's config (flat
    keys: they stay scalar columns in exported tables)."""
    matmul, cudnn = tf32_flags()
    return {"tf32_matmul": matmul, "tf32_cudnn": cudnn,
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


# The kinds of FLOP a peak is chosen for (bench.measure.flops.train_flop_split counts each): cuDNN
# convolutions and cuBLAS matmuls (Linear layers) have separate TF32 switches.
FLOP_KINDS = ("conv", "matmul")


def peak_parts(precision: str, device: torch.device, settings: dict[str, Any]
               ) -> dict[str, str]:
    """Per kind of FLOP, the precision whose peak bounds it. An fp32 (or tf32) run on CUDA runs
    a kind on TF32 tensor cores exactly when that kind's switch is on: the seed recipes
    (PyTorch's defaults) run convolutions in TF32 but matmuls in true fp32. Elsewhere (CPU,
    autocast precisions) every FLOP runs in the run's precision."""
    if device.type != "cuda" or precision not in ("fp32", "tf32"):
        return dict.fromkeys(FLOP_KINDS, precision)
    return {"conv": "tf32" if settings.get("tf32_cudnn") else "fp32",
            "matmul": "tf32" if settings.get("tf32_matmul") else "fp32"}


def parts_used(parts: dict[str, str], split: dict[str, float] | None) -> dict[str, str]:
    """The parts that do FLOPs (fc has no convolutions: its cuDNN switch bounds nothing)."""
    if not split:
        return parts
    return {k: v for k, v in parts.items() if split.get(k)} or parts


def peak_label(parts: dict[str, str]) -> str:
    """'fp32' when every part has one precision, else 'tf32 conv + fp32 matmul'."""
    kinds = sorted(set(parts.values()))
    if len(kinds) == 1:
        return kinds[0]
    return " + ".join(f"{parts[k]} {k}" for k in FLOP_KINDS if k in parts)


def parse_peak_label(label: str) -> dict[str, str]:
    """The parts `peak_label` wrote ('tf32 conv + fp32 matmul' -> {'conv': 'tf32', ...})."""
    if " + " not in label:
        return dict.fromkeys(FLOP_KINDS, label)
    return {kind: prec for prec, kind in (p.split(" ", 1) for p in label.split(" + "))}


def peak_precision(precision: str, device: torch.device, settings: dict[str, Any],
                   split: dict[str, float] | None = None) -> str:
    """The precision(s) whose peaks bound this run's FLOP/s (the MFU denominators), as a label
    (`peak_label`); with the model's FLOP split, a kind it has none of does not count."""
    return peak_label(parts_used(peak_parts(precision, device, settings), split))


def effective_peak(parts: dict[str, str], split: dict[str, float] | None,
                   peak_of: Callable[[str], float | None]) -> float | None:
    """The run's peak: one precision's peak, or for mixed parts the time-weighted harmonic
    combination total / sum(flops_k / peak_k) (the rate of the whole step if each kind ran at
    its own peak). None when a needed peak is unknown, or parts differ and no split says how
    the FLOPs divide."""
    kinds = sorted(set(parts.values()))
    if len(kinds) == 1:
        return peak_of(kinds[0])
    used = {k: split.get(k, 0.0) for k in parts} if split else {}
    if not used or sum(used.values()) <= 0:
        return None
    seconds_at_peak = 0.0  # the step's FLOPs of each kind at that kind's peak, summed
    for kind, flops in used.items():
        if flops <= 0:
            continue  # a kind the model does not have
        peak = peak_of(parts[kind])
        if not peak:
            return None
        seconds_at_peak += flops / peak
    return sum(used.values()) / seconds_at_peak


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if recipe.fused_optimizer else {}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov and recipe.momentum > 0,
                               weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def build_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    if recipe.schedule == "onecycle":
        # OneCycleLR needs at least 2 steps in each phase (it divides by phase length - 1):
        # a very short run (--max-steps 5) gets a schedule just long enough to be valid.
        shortest = math.ceil(2 / min(recipe.warmup_frac, 1 - recipe.warmup_frac)) + 1
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=max(total_steps, shortest),
            pct_start=recipe.warmup_frac, anneal_strategy="linear",
            cycle_momentum=False, div_factor=10.0, final_div_factor=100.0)
    return None


def maybe_compile(model: nn.Module, mode: str) -> nn.Module:
    if mode == "none":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode)  # type: ignore[return-value]


StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler (enabled for fp16 only); its state is part of what `snapshot` keeps."""
    return torch.amp.GradScaler(device.type, enabled=precision_spec(precision).grad_scaler)


def _cudagraph_step_marker(device: torch.device, cudagraphs: bool) -> Callable[[], None] | None:
    """Under CUDA graphs (--compile reduce-overhead), what tells cudagraph trees a new
    iteration starts, so the previous call's outputs may be overwritten by the replay; None
    otherwise."""
    return (torch.compiler.cudagraph_mark_step_begin
            if device.type == "cuda" and cudagraphs else None)


def make_train_step(model: nn.Module, opt: torch.optim.Optimizer, scheduler: Any,
                    device: torch.device, precision: str, label_smoothing: float,
                    cudagraphs: bool = False, scaler: torch.amp.GradScaler | None = None
                    ) -> StepFn:
    """One optimiser step; returns the detached loss on the device (no host sync)."""
    scaler = scaler if scaler is not None else make_scaler(device, precision)
    mark_step = _cudagraph_step_marker(device, cudagraphs)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if mark_step is not None:
            mark_step()
        with autocast_context(device, precision):
            out = model(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if scheduler is not None:
            scheduler.step()
        return loss.detach()

    return step


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, device: torch.device, precision: str,
             cudagraphs: bool = False) -> tuple[float, float]:
    """Mean test loss and accuracy over the whole test loader; one host read at the end.
    Under CUDA graphs every batch is a new iteration for cudagraph trees (inference has no
    backward to mark the end of one), as between training steps."""
    mark_step = _cudagraph_step_marker(device, cudagraphs)
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    with autocast_context(device, precision):
        for x, y in loader:
            if mark_step is not None:
                mark_step()
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            n += y.numel()
    model.train()
    return (loss_sum / max(n, 1)).item(), correct.item() / max(n, 1)


class _Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def snapshot(*objects: _Stateful | None) -> Callable[[], None]:
    """Keep the state of the model, optimiser, schedule and scaler (and the RNGs) now; the
    returned function puts it back, in place (compiled graphs and CUDA graphs keep their
    buffers). Taken before the warm-up pass, so that training starts from step 0."""
    kept = [(o, copy.deepcopy(o.state_dict())) for o in objects if o is not None]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore() -> None:
        for obj, state in kept:
            obj.load_state_dict(copy.deepcopy(state))
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

    return restore


def endless(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches epoch after epoch (each epoch reshuffled as the loader does)."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


@dataclass
class EngineConfig:
    total_steps: int  # the runner computes it once: epochs x steps per epoch, capped by max_steps
    eval_every: int
    target_accuracy: float | None
    stop_at_target: bool
    batch: BatchSize  # the run's (spec.recipes): no default, none would be right
    evaluate: bool = True
    warmup_steps: int = WARMUP_STEPS
    window_steps: int = WINDOW_STEPS
    cudagraphs: bool = False  # the model runs under CUDA graphs (compile reduce-overhead)


EvaluateFn = Callable[[], tuple[float, float]]


@dataclass
class _Epoch:
    """Tallies of the epoch in progress."""

    index: int
    loss_sum: torch.Tensor
    steps: int = 0
    seconds: float = 0.0
    last_eval: tuple[float, float] | None = None


class _Trainer:
    """The loop of `train`, in steps small enough to read: warm-up, epochs, windows,
    evaluations. Window edges (the only clock reads in the loop) happen in `_close_window`."""

    def __init__(self, step: StepFn, train_loader: Any, device: torch.device, cfg: EngineConfig,
                 state: TrainState, progress: RunProgress, evaluate_fn: EvaluateFn) -> None:
        self.step, self.loader, self.device = step, train_loader, device
        self.cfg, self.state, self.progress, self.evaluate_fn = cfg, state, progress, evaluate_fn
        self.n_epochs = math.ceil(cfg.total_steps / max(len(train_loader), 1))
        self.wall_start = 0.0  # perf_counter at step 0 (after the warm-up pass)

    def warm_up(self, reset: Callable[[], None]) -> None:
        """The untimed warm-up pass: `warmup_steps` steps (compilation, autotuning, loader JIT),
        then `reset` puts the run back to step 0. Recorded as a warm-up window of epoch -1."""
        cfg, state = self.cfg, self.state
        start = now(self.device)
        batches = endless(self.loader)
        for _ in range(cfg.warmup_steps):
            self.step(*next(batches))
        seconds = now(self.device) - start
        record_warmup(state, cfg.warmup_steps, cfg.warmup_steps * cfg.batch.per_rank, seconds)
        reset()
        self.progress.line(f"warm-up pass: {cfg.warmup_steps} steps {seconds:.2f}s (untimed)")

    def run(self) -> None:
        self.wall_start = time.perf_counter()
        for index in range(self.n_epochs):
            stopped = self._epoch(index)
            if stopped or self.state.steps >= self.cfg.total_steps:
                break

    def _epoch(self, index: int) -> bool:
        """Train one epoch; True when the target was reached and the run should stop."""
        self.loader.set_epoch(index)
        ep = _Epoch(index, torch.zeros((), device=self.device, dtype=torch.float32))
        stop = self._steps(ep, iter(self.loader))
        mean_loss = ep.loss_sum.item() / max(ep.steps, 1)
        if not math.isfinite(mean_loss):
            raise NonFiniteLoss(f"non-finite training loss in epoch {index}")
        evals = self.state.evals
        if self.cfg.evaluate and (ep.last_eval is None or evals[-1]["step"] != self.state.steps):
            ep.last_eval = self._evaluate(index)
        self._record_epoch(ep, mean_loss)
        return stop

    def _steps(self, ep: _Epoch, batches: Iterator) -> bool:
        """The step loop of one epoch; the clock is read only at window edges."""
        cfg, state = self.cfg, self.state
        clock, win_steps = WindowClock(self.device, cfg.batch.per_rank), 0
        clock.open()
        for x, y in itertools.islice(batches, max(cfg.total_steps - state.steps, 0)):
            ep.loss_sum += self.step(x, y)
            state.steps += 1
            ep.steps += 1
            win_steps += 1
            eval_edge = cfg.evaluate and cfg.eval_every > 0 and state.steps % cfg.eval_every == 0
            if not (eval_edge or win_steps >= cfg.window_steps):
                continue
            self._close_window(ep, win_steps, clock)
            if not math.isfinite(ep.loss_sum.item()):
                raise NonFiniteLoss(f"non-finite training loss at step {state.steps}")
            if eval_edge:
                ep.last_eval = self._evaluate(ep.index)
                self.progress.line(f"step {state.steps} acc {ep.last_eval[1]:.4f} "
                                   f"train {state.train_time_s:.2f}s", force=False)
                if state.reached_target and cfg.stop_at_target:
                    return True
            clock.open()
            win_steps = 0
        if win_steps:  # the epoch's last, partial window
            self._close_window(ep, win_steps, clock)
        return False

    def _close_window(self, ep: _Epoch, steps: int, clock: WindowClock) -> None:
        """A window edge: the clock records the window, then the epoch and the progress bar
        are advanced (off the clock)."""
        seconds, images = clock.close(self.state, ep.index, steps)
        ep.seconds += seconds
        self.progress.window(self.state.steps, images, seconds)

    def _evaluate(self, epoch: int) -> tuple[float, float]:
        """Evaluate off the training clock; note the first time the target is reached."""
        state, target = self.state, self.cfg.target_accuracy
        t = time.perf_counter()
        test_loss, test_acc = self.evaluate_fn()
        end = time.perf_counter()
        state.eval_time_s += end - t
        state.evals.append(EvalRow(step=state.steps, epoch=epoch, test_loss=test_loss,
                                   test_acc=test_acc, train_time_s=state.train_time_s,
                                   eval_time_s=end - t))
        if target is not None and not state.reached_target and test_acc >= target:
            state.reached_target = True
            state.time_to_accuracy_s = state.train_time_s
            state.time_to_accuracy_wall_s = end - self.wall_start
            state.steps_to_accuracy = state.steps
        return test_loss, test_acc

    def _record_epoch(self, ep: _Epoch, mean_loss: float) -> None:
        test_loss, test_acc = ep.last_eval if ep.last_eval else (None, None)
        images = ep.steps * self.cfg.batch.per_rank
        self.state.epochs.append(EpochRow(
            epoch=ep.index, steps=ep.steps, images=images, train_time_s=ep.seconds,
            images_per_s=images / ep.seconds if ep.seconds > 0 else None,
            train_loss=mean_loss, cumulative_train_time_s=self.state.train_time_s,
            timed=ep.steps == len(self.loader), test_loss=test_loss, test_acc=test_acc,
            eval_time_s=self.state.evals[-1]["eval_time_s"] if ep.last_eval else None))
        self.progress.line(
            f"epoch {ep.index + 1}/{self.n_epochs}: {ep.steps} steps {ep.seconds:.2f}s "
            f"{images / max(ep.seconds, 1e-9):,.0f} img/s (epoch mean) loss {mean_loss:.4f} "
            + (f"test acc {test_acc:.4f}" if test_acc is not None else ""))


def train(step: StepFn, model: nn.Module, train_loader: Any, test_loader: Any,
          device: torch.device, precision: str, cfg: EngineConfig, state: TrainState,
          progress: RunProgress, evaluate_fn: EvaluateFn | None = None,
          reset: Callable[[], None] | None = None) -> TrainState:
    """Run the epochs, filling `state` as it goes (so an interruption loses nothing). With
    `reset` (see `snapshot`), an untimed warm-up pass comes first."""
    evaluate_fn = evaluate_fn or (lambda: evaluate(model, test_loader, device, precision,
                                                   cfg.cudagraphs))
    model.train()
    if state.telemetry is None:
        state.telemetry = open_telemetry(device)
    trainer = _Trainer(step, train_loader, device, cfg, state, progress, evaluate_fn)
    if reset is not None and cfg.warmup_steps > 0:
        trainer.warm_up(reset)
    trainer.run()
    synchronize(device)
    return state


def window_rule() -> str:
    """The short-window rule in words, as the results quote it."""
    return (f">= {MIN_WINDOW_S * 1000:g} ms and >= {MIN_WINDOW_STEPS} steps, or >= "
            f"{LONG_WINDOW_S * 1000:g} ms")


def steady_state(windows: list[Window]) -> dict[str, Any]:
    """images/s: the median (and spread) over the timed (non-warm-up) windows long enough to
    time (`Window.timeable`); when none is, the training clock's total (images / seconds over
    them all), one measurement, so its spread is that one value (no window's own rate is
    quoted). All windows stand in when no timed one exists. `images_per_s_source` says which,
    in words."""
    pool = [w for w in windows if not w.warmup and w.steps > 0 and w.seconds > 0]
    what = "timed"
    if not pool:
        pool, what = [w for w in windows if w.steps > 0 and w.seconds > 0], "warm-up"
    if not pool:
        return {"images_per_s": None, "images_per_s_source": None}

    def windows_(n: int) -> str:
        return f"{n} {what} window{'s' if n != 1 else ''}"

    rates = sorted(w.images_per_s for w in pool if w.timeable)
    used, source = len(rates), f"median of {windows_(len(rates))} {window_rule()}"
    if not rates:
        rates = [sum(w.images for w in pool) / sum(w.seconds for w in pool)]
        used, source = len(pool), f"training clock total: {windows_(len(pool))}, none " \
                                  f"{window_rule()}"
    # inclusive: the quartiles lie within the windows' rates (the default extrapolates past
    # the extremes, below 0 for a few widely spread windows on a busy machine)
    q = statistics.quantiles(rates, n=4, method="inclusive") if len(rates) >= 2 else [rates[0]] * 3
    return {"images_per_s": statistics.median(rates), "images_per_s_min": rates[0],
            "images_per_s_max": rates[-1], "images_per_s_q1": q[0], "images_per_s_q3": q[2],
            "steady_windows": used,
            "images_per_s_source": source, **stalled_windows(windows)}


def stalled_windows(windows: list[Window]) -> dict[str, Any]:
    """The timed windows stalled far beyond the others (STALL_FACTOR, the rule's one home; in
    every result through `steady_state`: a run, throughput mode, the distributed merge).
    `stalled_windows` is their count (None: too few windows that count to judge),
    `stall_ratio` the worst one's time over what the median rate gives its images, and
    `stall_note` says which, by how much, and what the figures make of it. Every window is
    kept: the median images/s gives a stall one window's weight, and min and max show it."""
    counted = [w.seconds / w.images for w in windows
               if not w.warmup and w.timeable and w.images > 0]
    if len(counted) < STALL_MIN_WINDOWS:
        return {"stalled_windows": None, "stall_ratio": None, "stall_note": None}
    per_image = statistics.median(counted)
    timed = [(i, w) for i, w in enumerate(windows) if not w.warmup and w.images > 0]
    stalled = [(w.seconds / (w.images * per_image), i, w.seconds, w.images * per_image)
               for i, w in timed if w.seconds > STALL_FACTOR * w.images * per_image
               and w.seconds - w.images * per_image >= MIN_WINDOW_S]
    if not stalled:
        return {"stalled_windows": 0, "stall_ratio": None, "stall_note": None}
    ratio, index, seconds, expected = max(stalled, key=lambda t: t[0])
    return {"stalled_windows": len(stalled), "stall_ratio": ratio, "stall_note": (
        f"{len(stalled)} of {len(timed)} timed windows took over {STALL_FACTOR:g}x the median "
        f"time per image (worst: windows[{index}], {seconds:.3g} s against {expected:.3g} s, "
        f"{ratio:.1f}x): the process was stopped, preempted or throttled while timed; "
        "images/s (a median; in throughput mode an upper quantile) gives it one window's "
        "weight, images_per_s_min includes it")}
