"""The training engine: one step function, clocks only at window edges, eval off the clock.

Timed window (stored verbatim in every result, see TIMED_WINDOW): from the first batch request
to the device sync after the last optimiser step of a window. Inside: loader iteration (data
loading, host->device copy, augmentation, normalisation), forward, loss, backward, optimiser
and LR-schedule step. Outside: evaluation, model build, dataset reading, loader construction,
result writing. The first `warmup_steps` steps (torch.compile compilation, cuDNN autotuning,
loader JIT) form their own window: reported as warmup_time_s, excluded from the steady-state
images/s, included in the training clock used for time-to-accuracy.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .device import now, synchronize
from .recipes import Recipe

TIMED_WINDOW = {
    "inside": [
        "loader iteration: data loading, host-to-device copy, augmentation, normalisation",
        "forward, loss, backward, optimiser step, LR schedule step",
        "the warm-up window (first steps incl. torch.compile and loader JIT) is timed apart",
    ],
    "outside": [
        "evaluation (timed separately as eval_time_s)",
        "dataset reading/decoding, model build, loader construction, result writing",
    ],
    "clock": "time.perf_counter after device synchronise at window edges (no syncs in between)",
    "steady_state": "median images/s over windows after the warm-up window",
    "time_to_accuracy": "training clock incl. warm-up/compile, excl. evaluation",
}

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
COMPILE_MODES = ("none", "default", "max-autotune", "reduce-overhead")


class NonFiniteLoss(Exception):
    """Training diverged: the run records status 'nan'."""


@dataclass
class Window:
    epoch: int
    steps: int
    images: int
    seconds: float
    warmup: bool

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class TrainState:
    """What the run has done so far; read by the runner even after an interruption."""

    windows: list[Window] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    warmup_time_s: float | None = None
    time_to_accuracy_s: float | None = None
    steps_to_accuracy: int | None = None
    reached_target: bool = False


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def input_dtype(precision: str) -> torch.dtype:
    """Loaders hand the model its inputs already in the autocast dtype: half the bytes moved."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def set_matmul_precision(device: torch.device, precision: str) -> None:
    """fp32 means true fp32 (no TF32); tf32 enables TensorFloat-32 on CUDA."""
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    # shapes are fixed (drop_last), so cuDNN's autotuner pays off; it runs in the warm-up window
    torch.backends.cudnn.benchmark = device.type == "cuda"


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
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=max(total_steps, 2),
            pct_start=recipe.warmup_frac, anneal_strategy="linear",
            cycle_momentum=False, div_factor=10.0, final_div_factor=100.0)
    return None


def maybe_compile(model: nn.Module, mode: str) -> nn.Module:
    if mode == "none":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode)  # type: ignore[return-value]


StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_train_step(model: nn.Module, opt: torch.optim.Optimizer, scheduler: Any,
                    device: torch.device, precision: str, label_smoothing: float,
                    cudagraphs: bool = False) -> StepFn:
    """One optimiser step; returns the detached loss on the device (no host sync)."""
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    # CUDA graphs (--compile reduce-overhead): tell cudagraph trees a new iteration starts, so
    # the previous step's outputs may be overwritten by the replay.
    mark_step = (torch.compiler.cudagraph_mark_step_begin
                 if device.type == "cuda" and cudagraphs else None)

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
def evaluate(model: nn.Module, loader: Any, device: torch.device, precision: str
             ) -> tuple[float, float]:
    """Mean test loss and accuracy over the whole test loader; one host read at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    with autocast_context(device, precision):
        for x, y in loader:
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            n += y.numel()
    model.train()
    return (loss_sum / max(n, 1)).item(), correct.item() / max(n, 1)


class Progress:
    """One line per epoch (and per evaluation, at most one a second) on stderr; printed only
    where the engine has synchronised anyway, so it adds no host sync to the step loop."""

    def __init__(self, enabled: bool, label: str, min_interval_s: float = 1.0) -> None:
        self.enabled, self.label = enabled, label
        self.min_interval_s = min_interval_s
        self._last = float("-inf")

    def line(self, text: str, force: bool = True) -> None:
        t = time.monotonic()
        if self.enabled and (force or t - self._last >= self.min_interval_s):
            self._last = t
            print(f"[{self.label}] {text}", file=sys.stderr, flush=True)


@dataclass
class EngineConfig:
    epochs: float
    max_steps: int | None
    eval_every: int
    target_accuracy: float | None
    stop_at_target: bool
    evaluate: bool = True
    warmup_steps: int = 5
    window_steps: int = 50
    batch_size: int = 64


def train(step: StepFn, model: nn.Module, train_loader: Any, test_loader: Any,
          device: torch.device, precision: str, cfg: EngineConfig, state: TrainState,
          progress: Progress, evaluate_fn: Callable[[], tuple[float, float]] | None = None,
          ) -> TrainState:
    """Run the epochs, filling `state` as it goes (so an interruption loses nothing)."""
    evaluate_fn = evaluate_fn or (lambda: evaluate(model, test_loader, device, precision))
    steps_per_epoch = len(train_loader)
    total_steps = math.ceil(cfg.epochs * steps_per_epoch)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    n_epochs = math.ceil(total_steps / max(steps_per_epoch, 1))
    model.train()

    def do_eval(epoch: int) -> tuple[float, float]:
        t = time.perf_counter()
        test_loss, test_acc = evaluate_fn()
        dt = time.perf_counter() - t
        state.eval_time_s += dt
        state.evals.append({"step": state.steps, "epoch": epoch, "test_loss": test_loss,
                            "test_acc": test_acc, "train_time_s": state.train_time_s,
                            "eval_time_s": dt})
        if (cfg.target_accuracy is not None and not state.reached_target
                and test_acc >= cfg.target_accuracy):
            state.reached_target = True
            state.time_to_accuracy_s = state.train_time_s
            state.steps_to_accuracy = state.steps
        return test_loss, test_acc

    for epoch in range(n_epochs):
        train_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device, dtype=torch.float32)
        ep_time = 0.0
        ep_steps = 0
        win_start = now(device)
        win_steps = 0
        stop = False
        last_eval: tuple[float, float] | None = None
        it: Iterator = iter(train_loader)
        while True:
            if state.steps >= total_steps:
                break
            try:
                x, y = next(it)
            except StopIteration:
                break
            loss_sum += step(x, y)
            state.steps += 1
            ep_steps += 1
            win_steps += 1
            warm_edge = state.warmup_time_s is None and state.steps == cfg.warmup_steps
            eval_edge = (cfg.evaluate and cfg.eval_every > 0
                         and state.steps % cfg.eval_every == 0)
            if warm_edge or eval_edge or win_steps >= cfg.window_steps:
                seconds = now(device) - win_start
                # every window that ends by the warm-up edge belongs to the warm-up
                state.windows.append(Window(epoch, win_steps, win_steps * cfg.batch_size,
                                            seconds, warmup=state.warmup_time_s is None))
                state.train_time_s += seconds
                ep_time += seconds
                if warm_edge:
                    state.warmup_time_s = state.train_time_s
                if not math.isfinite(loss_sum.item()):
                    raise NonFiniteLoss(f"non-finite training loss at step {state.steps}")
                if eval_edge:
                    last_eval = do_eval(epoch)
                    progress.line(f"step {state.steps} acc {last_eval[1]:.4f} "
                                  f"train {state.train_time_s:.2f}s", force=False)
                    if state.reached_target and cfg.stop_at_target:
                        stop = True
                        break
                win_steps = 0
                win_start = now(device)
        if win_steps:
            seconds = now(device) - win_start
            state.windows.append(Window(epoch, win_steps, win_steps * cfg.batch_size, seconds,
                                        warmup=state.warmup_time_s is None))
            state.train_time_s += seconds
            ep_time += seconds
            if state.warmup_time_s is None:
                state.warmup_time_s = state.train_time_s
        mean_loss = loss_sum.item() / max(ep_steps, 1)
        if not math.isfinite(mean_loss):
            raise NonFiniteLoss(f"non-finite training loss in epoch {epoch}")
        if cfg.evaluate and (last_eval is None or state.evals[-1]["step"] != state.steps):
            last_eval = do_eval(epoch)
        test_loss, test_acc = last_eval if last_eval else (None, None)
        images = ep_steps * cfg.batch_size
        state.epochs.append({
            "epoch": epoch, "steps": ep_steps, "images": images, "train_time_s": ep_time,
            "images_per_s": images / ep_time if ep_time > 0 else None,
            "train_loss": mean_loss, "cumulative_train_time_s": state.train_time_s,
            "timed": epoch > 0 or n_epochs == 1,
            "test_loss": test_loss, "test_acc": test_acc,
            "eval_time_s": state.evals[-1]["eval_time_s"] if last_eval else None,
        })
        progress.line(f"epoch {epoch + 1}/{n_epochs}: {ep_steps} steps {ep_time:.2f}s "
                      f"{images / max(ep_time, 1e-9):,.0f} img/s loss {mean_loss:.4f} "
                      + (f"test acc {test_acc:.4f}" if test_acc is not None else ""))
        if stop or state.steps >= total_steps:
            break
    synchronize(device)
    return state


def steady_state(windows: list[Window]) -> dict[str, float | None]:
    """Median and spread of images/s over post-warm-up windows (all windows if none remain)."""
    steady = [w for w in windows if not w.warmup and w.steps > 0]
    if not steady:
        steady = [w for w in windows if w.steps > 0]
    rates = sorted(w.images_per_s for w in steady if w.seconds > 0)
    if not rates:
        return {"images_per_s": None}
    q = statistics.quantiles(rates, n=4) if len(rates) >= 2 else [rates[0]] * 3
    return {"images_per_s": statistics.median(rates), "images_per_s_min": rates[0],
            "images_per_s_max": rates[-1], "images_per_s_q1": q[0], "images_per_s_q3": q[2],
            "steady_windows": len(rates)}
