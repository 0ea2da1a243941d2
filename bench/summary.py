"""A run's headline figures (`result.summary`) from what the training loop recorded.

Three parts, each a function: throughput (steady-state images/s and the epoch time), accuracy
(final, best, time to target) and efficiency (FLOP/s, MFU against the measured peak and against
the vendor's datasheet peak, memory, the roofline position).
"""

from __future__ import annotations

import statistics

import torch

from . import device as devmod
from .engine import TrainState, steady_state
from .results.schema import Summary
from .throughput import ESTIMATOR, window_estimates


def _throughput(state: TrainState, loader_images: int) -> Summary:
    s = Summary(**steady_state(state.windows))  # type: ignore[typeddict-item]
    timed = [e["train_time_s"] for e in state.epochs if e.get("timed")]
    if len(state.epochs) >= 2 and timed:
        s["epoch_time_s"], s["epoch_time_source"] = statistics.median(timed), "median timed epochs"
    elif s.get("images_per_s"):
        s["epoch_time_s"] = loader_images / s["images_per_s"]
        s["epoch_time_source"] = "epoch images / steady-state images/s"
    else:
        s["epoch_time_s"], s["epoch_time_source"] = None, None
    return s


def _accuracy_and_clocks(state: TrainState, target: float | None) -> Summary:
    accs = [e["test_acc"] for e in state.evals if e.get("test_acc") is not None]
    return Summary(
        final_test_acc=accs[-1] if accs else None,
        best_test_acc=max(accs) if accs else None,
        target_accuracy=target,
        time_to_accuracy_s=state.time_to_accuracy_s,
        steps_to_accuracy=state.steps_to_accuracy,
        steps=state.steps,
        total_train_time_s=state.train_time_s,
        total_eval_time_s=state.eval_time_s,
        warmup_time_s=state.warmup_time_s,
    )


def _compile_time(state: TrainState, images_per_s: float | None) -> float | None:
    """Warm-up time beyond what the same images cost in steady state: compile, autotune, JIT."""
    warm = [w for w in state.windows if w.warmup]
    if not warm or not images_per_s:
        return None
    return max(0.0, sum(w.seconds for w in warm) - sum(w.images for w in warm) / images_per_s)


def _efficiency(s: Summary, flops: float | None, device: torch.device,
                precision: str) -> Summary:
    """Achieved FLOP/s, MFU against the measured peak, and the roofline position."""
    from .peak import cached_peak_flops, load_cached_peak

    out = Summary()
    ips = s.get("images_per_s")
    out["achieved_tflops"] = flops * ips / 1e12 if flops and ips else None
    out["mfu"] = None
    peak = cached_peak_flops(device, precision)
    if peak:
        out["peak_tflops"] = peak / 1e12
        if out["achieved_tflops"]:
            out["mfu"] = out["achieved_tflops"] * 1e12 / peak
    bandwidth = (load_cached_peak(device) or {}).get("copy_bytes_per_s")
    out["peak_copy_gbs"] = bandwidth / 1e9 if bandwidth else None
    ai = s.get("arithmetic_intensity")
    if ai and peak and bandwidth:
        # roofline: below the ridge point (peak / bandwidth) memory traffic limits the step
        out["ridge_flops_per_byte"] = peak / bandwidth
        out["roofline_bound"] = "bandwidth" if ai < peak / bandwidth else "compute"
    return out


MFU_BASIS = "measured peak (bench peak)"


def _vendor_mfu(s: Summary, device: torch.device, precision: str) -> Summary:
    """MFU against the vendor's dense datasheet peak, beside the measured one (`mfu`); None on
    a CPU or a GPU the table does not know."""
    from .vendor_peaks import match_gpu

    entry = match_gpu(devmod.gpu_name(device))
    peak = entry.tflops.get(precision) if entry else None
    achieved = s.get("achieved_tflops")
    return Summary(mfu_basis=MFU_BASIS, vendor_gpu=entry.name if entry else None,
                   vendor_peak_tflops=peak,
                   mfu_vendor=achieved / peak if achieved and peak else None)


def _comparison_estimate(state: TrainState, s: Summary) -> None:
    """Throughput mode: images/s is the gate's estimator over the timed windows (an upper
    quantile: interference only slows windows down); the median is kept beside it."""
    rates = [w.images_per_s for w in state.windows if not w.warmup and w.seconds > 0]
    if not rates:
        return
    estimates = window_estimates(rates)
    s["images_per_s_median"] = s.get("images_per_s")
    s["images_per_s"] = estimates[ESTIMATOR]
    s["estimator"] = ESTIMATOR
    s["window_estimates"] = estimates


def summarise(state: TrainState, loader_images: int, flops: float | None, params: int,
              target: float | None, device: torch.device, precision: str,
              intensity: float | None = None, measure: str = "train") -> Summary:
    """`precision` names the peaks MFU is taken against (`engine.peak_precision`)."""
    s = _throughput(state, loader_images)
    if measure == "throughput":
        _comparison_estimate(state, s)
    s["arithmetic_intensity"] = intensity
    s.update(_accuracy_and_clocks(state, target))
    s["params"], s["flops_per_image"] = params, flops
    s["compile_time_s"] = _compile_time(state, s.get("images_per_s"))
    s["peak_memory_bytes"], s["peak_memory_kind"] = devmod.peak_memory_bytes(device)
    s.update(_efficiency(s, flops, device, precision))
    s.update(_vendor_mfu(s, device, precision))
    s["peak_precision"] = precision
    if state.telemetry is not None:
        s["gpu_telemetry"] = state.telemetry.summary()
    return s
