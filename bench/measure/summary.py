"""A run's headline figures (`result.summary`) from what the training loop recorded, and the
one line a finished run prints (`run_line`, with `hints` beside it on stderr).

Three parts, each a function: throughput (steady-state images/s and the epoch time), accuracy
(final, best, time to target three ways, images to target) and efficiency (FLOP/s, MFU against
the measured peak and against the vendor's datasheet peak, memory, the roofline position).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from bench.host import device as devmod
from bench.host import load as hostload
from bench.measure.engine import (
    TrainState,
    effective_peak,
    parse_peak_label,
    parts_used,
    peak_label,
    steady_state,
    window_rule,
)
from bench.measure.probe import PROBE_VERSION
from bench.measure.throughput import ESTIMATOR, window_estimates
from bench.results.escape import term
from bench.results.format import checked_mfus
from bench.results.schema import Summary


def _throughput(state: TrainState, loader_images: int) -> Summary:
    """Steady-state images/s; the epoch time as measured over complete epochs, or else (a run
    shorter than an epoch) extrapolated under a name and a source that say so."""
    s = Summary(**steady_state(state.windows))  # type: ignore[typeddict-item]
    complete = [e["train_time_s"] for e in state.epochs if e.get("timed")]
    s["epoch_time_s"], s["epoch_time_extrapolated_s"] = None, None
    s["epoch_time_source"] = None
    if complete:
        s["epoch_time_s"] = statistics.median(complete)
        s["epoch_time_source"] = f"measured: median of {len(complete)} complete epoch(s)"
    elif s.get("images_per_s"):
        s["epoch_time_extrapolated_s"] = loader_images / s["images_per_s"]
        s["epoch_time_source"] = ("extrapolated (no complete epoch ran): epoch images / "
                                  "steady-state images/s")
    return s


def _accuracy_and_clocks(state: TrainState, target: float | None,
                         images_per_step: int | None) -> Summary:
    """Accuracy, the time to target three ways (see engine.TIMED_WINDOW) and the clocks."""
    accs = [e["test_acc"] for e in state.evals if e.get("test_acc") is not None]
    tta, stta = state.time_to_accuracy_s, state.steps_to_accuracy
    return Summary(
        final_test_acc=accs[-1] if accs else None,
        best_test_acc=max(accs) if accs else None,
        target_accuracy=target,
        time_to_accuracy_s=tta,
        time_to_accuracy_cold_s=tta + (state.warmup_time_s or 0.0) if tta is not None else None,
        time_to_accuracy_wall_s=state.time_to_accuracy_wall_s,
        steps_to_accuracy=stta,
        images_to_accuracy=stta * images_per_step if stta is not None and images_per_step
        else None,
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


def _efficiency(s: Summary, flops: float | None, device: torch.device, precision: str,
                split: dict[str, float] | None = None) -> Summary:
    """Achieved FLOP/s, MFU against the measured peak (per kind of FLOP, see
    `engine.effective_peak`), and the roofline position."""
    from bench.measure.peak import cached_peak_flops, load_cached_peak

    out = Summary()
    ips = s.get("images_per_s")
    out["achieved_tflops"] = flops * ips / 1e12 if flops and ips else None
    out["mfu"] = None
    peak = effective_peak(parse_peak_label(precision), split,
                          lambda p: cached_peak_flops(device, p))
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


def _vendor_mfu(s: Summary, device: torch.device, precision: str,
                split: dict[str, float] | None = None) -> Summary:
    """MFU against the vendor's dense datasheet peak, beside the measured one (`mfu`), over
    the same precision(s); None on a CPU or a GPU the table does not know."""
    from bench.host.vendor_peaks import match_gpu

    entry = match_gpu(devmod.gpu_name(device))
    peak = effective_peak(parse_peak_label(precision), split, entry.tflops.get) if entry \
        else None
    achieved = s.get("achieved_tflops")
    return Summary(mfu_basis=MFU_BASIS, vendor_gpu=entry.name if entry else None,
                   vendor_peak_tflops=peak,
                   mfu_vendor=achieved / peak if achieved and peak else None)


def _comparison_estimate(state: TrainState, s: Summary) -> None:
    """Throughput mode: images/s is the gate's estimator over the timed windows long enough to
    time (an upper quantile: interference only slows windows down); the median is kept beside
    it. With no such window images/s stays the training clock's total (`steady_state`)."""
    rates = [w.images_per_s for w in state.windows if not w.warmup and w.timeable]
    if rates:
        estimates = window_estimates(rates)
        s["images_per_s_median"] = s.get("images_per_s")
        s["images_per_s"] = estimates[ESTIMATOR]
        s["estimator"] = ESTIMATOR
        s["window_estimates"] = estimates
        s["images_per_s_source"] = f"{ESTIMATOR} of {len(rates)} timed windows {window_rule()}"
    probes = [w.probe for w in state.windows if not w.warmup and w.probe is not None]
    if probes and s.get("images_per_s"):  # the machine's speed meanwhile
        probe = window_estimates(probes)[ESTIMATOR]  # (bench/measure/probe.py)
        s["probe_rate"], s["probe_version"] = probe, PROBE_VERSION
        s["images_per_probe"] = s["images_per_s"] / probe


def summarise(state: TrainState, loader_images: int, flops: float | None, params: int,
              target: float | None, device: torch.device, precision: str,
              intensity: float | None = None, measure: str = "train",
              images_per_step: int | None = None, wall_time_s: float | None = None,
              flop_split: dict[str, float] | None = None) -> Summary:
    """`precision` names the peaks MFU is taken against (`engine.peak_precision`);
    `flop_split` the training FLOPs per image by kind (`flops.train_flop_split`), which weighs
    the peaks where they differ by kind; `images_per_step` is the global batch (all ranks);
    `wall_time_s` the whole run's."""
    precision = peak_label(parts_used(parse_peak_label(precision), flop_split))
    s = _throughput(state, loader_images)
    if measure == "throughput":
        _comparison_estimate(state, s)
    hosts = [w.host for w in state.windows if not w.warmup and w.host is not None]
    if hosts:  # what else ran on the host meanwhile, in either mode (bench/host/load.py)
        s["host_load"] = hostload.summarise(hosts)
    s["arithmetic_intensity"] = intensity
    s.update(_accuracy_and_clocks(state, target, images_per_step))
    s["wall_time_s"] = wall_time_s
    s["params"], s["flops_per_image"] = params, flops
    s["conv_flops_per_image"] = flop_split.get("conv") if flop_split else None
    s["matmul_flops_per_image"] = flop_split.get("matmul") if flop_split else None
    s["compile_time_s"] = _compile_time(state, s.get("images_per_s"))
    s["peak_memory_bytes"], s["peak_memory_kind"] = devmod.peak_memory_bytes(device)
    s.update(_efficiency(s, flops, device, precision, flop_split))
    s.update(_vendor_mfu(s, device, precision, flop_split))
    s["peak_precision"] = precision
    s["mfu_note"] = None
    s.update(checked_mfus(s))  # an MFU above 100% is no figure: null and the note
    if state.telemetry is not None:
        s["gpu_telemetry"] = state.telemetry.summary()
    return s


def _secs(v: float | None) -> str:
    """Seconds to three significant figures or so: 12.3 s, 1.23 s, 0.12 s."""
    if v is None:
        return "-"
    return f"{v:.1f} s" if v >= 10 else f"{v:.2f} s"


def target_phrase(s: Summary) -> str:
    """'target 98.0% reached in 12.3 s (...)' / 'target 98.0% not reached, best 97.1%'."""
    target, tta = s.get("target_accuracy"), s.get("time_to_accuracy_s")
    if target is None:
        return "no accuracy target (synthetic data, or a throughput measurement)"
    name = f"target {target * 100:.1f}%"
    if tta is None:
        best = s.get("best_test_acc")
        return f"{name} not reached, best {f'{best * 100:.1f}%' if best is not None else '-'}"
    images = s.get("images_to_accuracy")
    return (f"{name} reached in {_secs(tta)} training clock after warm-up "
            f"({_secs(s.get('time_to_accuracy_cold_s'))} with start-up, "
            f"{_secs(s.get('time_to_accuracy_wall_s'))} wall incl. eval"
            + (f", {images:,} images" if images is not None else "") + ")")


def _rate_phrase(s: Summary) -> str:
    """The one images/s figure, named: the epoch lines print each epoch's mean instead."""
    ips = s.get("images_per_s")
    if ips is None:
        return "- img/s"
    what = s.get("images_per_s_source") or (  # results written before the field: as they were
        f"{s['estimator']} of timed windows" if s.get("estimator") else "median of timed windows")
    return f"{ips:,.0f} img/s ({what}" + ("" if s.get("estimator")
                                         else "; epoch lines show epoch means") + ")"


def run_line(result: Any, path: Any = None) -> str:
    """The one stdout line a finished run prints (parseable: `<status>: <label> ...`); one
    line with no control character, whatever its strings hold (`results.escape.term`)."""
    c, s = result.config, result.summary
    acc = s.get("final_test_acc")
    return term(
        f"{result.status}: {c['model']}/{c['dataset']}/{c['loader']}/{c['precision']} "
        f"bs={c['batch_size']}: {_rate_phrase(s)}, "
        f"acc {f'{acc * 100:.2f}%' if acc is not None else '-'}, {target_phrase(s)}; "
        f"wall {_secs(s.get('wall_time_s'))}, train {_secs(s.get('total_train_time_s'))}, "
        f"eval {_secs(s.get('total_eval_time_s'))}, warm-up {_secs(s.get('warmup_time_s'))}"
        + (f" -> {path}" if path else "") + stall_warning(s))


def stall_warning(s: Summary) -> str:
    """'; WARNING: <stall_note>' when timed windows stalled (engine.stalled_windows), else ''.
    At the end of the run line: a figure that kept a stopped process's seconds must say so."""
    return f"; WARNING: {s['stall_note']}" if s.get("stalled_windows") and s.get("stall_note") \
        else ""


def hints(result: Any) -> list[str]:
    """What the user can do about a figure the run could not give (printed on stderr)."""
    s, out = result.summary, []
    if s.get("mfu_note"):  # an MFU above 100%, stored as null: why, and what to do
        out.append(s["mfu_note"])
    elif result.status == "ok" and s.get("mfu") is None and s.get("achieved_tflops"):
        out.append("mfu is unknown: run `bench peak` once to measure this device's peak "
                   "FLOP/s (cached), then runs report MFU")
    if s.get("epoch_time_s") is None and s.get("epoch_time_extrapolated_s") is not None:
        out.append("no complete epoch ran: the epoch time is extrapolated "
                   "(epoch_time_extrapolated_s)")
    return out
