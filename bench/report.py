"""`bench report RESULTS... [--out DIR]`: figures and a markdown report across devices.

Runs are grouped by device label (the GPU name, or the CPU model), so results gathered on
different machines - one folder per GPU generation, say - land side by side. Figures are drawn
on `matplotlib.figure.Figure` objects, which render with Agg and never touch a display or the
global pyplot state, so the report works headless and inside tests.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

from .defaults import RESULTS_DIR
from .errors import BenchError
from .results import (
    RunRow,
    add_label_option,
    atomic_write_text,
    config_label,
    docs_epochs,
    docs_frame,
    fmt_num,
    labelled,
    load_docs,
    markdown_table,
    run_key,
    save_figure,
)

FIGURES = {
    "throughput": "throughput.png",
    "speedup": "speedup.png",
    "time_to_accuracy": "time_to_accuracy.png",
    "accuracy_vs_time": "accuracy_vs_time.png",
    "roofline": "roofline.png",
}


class ConfigStats(TypedDict):
    """One configuration on one device, its repeats aggregated (a row of `summarize`)."""

    config: str  # results.config_label
    device: str
    runs: int
    images_per_s: float | None  # median over repeats
    ips_min: float | None
    ips_max: float | None
    epoch_time_s: float | None  # median
    final_acc: float | None  # mean
    final_acc_sd: float | None  # with 2+ repeats
    target_accuracy: float | None
    tta_s: float | None  # median over the repeats that reached the target
    tta_reached: int
    peak_memory_bytes: float | None
    mfu: float | None


def _clean(v: Any) -> float | None:
    """A finite float, or None for missing/NaN cells."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _finite(values: Sequence[Any]) -> list[float]:
    return [x for x in (_clean(v) for v in values) if x is not None]


def _med(values: Sequence[Any]) -> float | None:
    xs = _finite(values)
    return statistics.median(xs) if xs else None


def _column(frame, name: str) -> list[Any]:
    """A column's values, or none when the frame lacks it (no run recorded that figure)."""
    return list(frame[name]) if name in frame else []


def summarize(runs) -> list[ConfigStats]:
    """One row per (configuration, device): repeats aggregated with median and min/max."""
    ok = runs[runs["status"] == "ok"] if len(runs) else runs
    out: list[ConfigStats] = []
    for (label, device), grp in _groups(ok):
        col = partial(_column, grp)
        ips, tta, acc = (_finite(col(c)) for c in ("images_per_s", "time_to_accuracy_s",
                                                   "final_test_acc"))
        out.append({
            "config": label, "device": device, "runs": len(grp),
            "images_per_s": statistics.median(ips) if ips else None,
            "ips_min": min(ips) if ips else None, "ips_max": max(ips) if ips else None,
            "epoch_time_s": _med(col("epoch_time_s")),
            "final_acc": statistics.fmean(acc) if acc else None,
            "final_acc_sd": statistics.stdev(acc) if len(acc) >= 2 else None,
            "target_accuracy": _med(col("target_accuracy")),
            "tta_s": statistics.median(tta) if tta else None, "tta_reached": len(tta),
            "peak_memory_bytes": _med(col("peak_memory_bytes")), "mfu": _med(col("mfu")),
        })
    return out


def _groups(runs):
    """(config label, device) -> rows, in a stable order."""
    if not len(runs):
        return []
    records: list[RunRow] = runs.to_dict("records")
    labels = [config_label(run_key(r)) for r in records]
    runs = runs.assign(_config=labels)
    return [(k, g) for k, g in runs.groupby(["_config", "device_label"], sort=True, dropna=False)]


def choose_baseline_device(devices: Sequence[str], summary: list[ConfigStats],
                           requested: str | None) -> str:
    """The requested device, else the one with the most configurations (ties: by name)."""
    if requested is not None:
        if requested not in devices:
            raise BenchError(f"--baseline-device {requested!r} not among the results' devices:"
                             f" {', '.join(devices) or 'none'}")
        return requested
    counts = {d: sum(1 for s in summary if s["device"] == d) for d in devices}
    return sorted(devices, key=lambda d: (-counts[d], d))[0]


def speedups(summary: list[ConfigStats], baseline: str) -> list[dict[str, Any]]:
    """images/s of every device relative to the baseline device, per configuration."""
    base = {s["config"]: s["images_per_s"] for s in summary if s["device"] == baseline}
    return [{"config": s["config"], "device": s["device"],
             "speedup": s["images_per_s"] / base[s["config"]]}
            for s in summary
            if s["device"] != baseline and base.get(s["config"]) and s["images_per_s"]]


# --------------------------------------------------------------------------- figures


def _figure(n_groups: int, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(max(6.0, 1.1 * n_groups + 2), height))


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, dict[str, tuple]]) -> None:
    """Bars per group, one per series; values are (height, low, high) or absent."""
    import numpy as np

    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        h, lo, hi = [], [], []
        for g in groups:
            v, vmin, vmax = values.get(g, (float("nan"), None, None))
            h.append(v)
            lo.append(max(0.0, v - vmin) if vmin is not None else 0.0)
            hi.append(max(0.0, vmax - v) if vmax is not None else 0.0)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, h, width,
               yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=3, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=25, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_throughput(summary: list[ConfigStats], path: Path) -> None:
    groups = sorted({s["config"] for s in summary})
    series: dict[str, dict[str, tuple]] = {}
    for s in summary:
        if s["images_per_s"] is not None:
            series.setdefault(s["device"], {})[s["config"]] = (
                s["images_per_s"], s["ips_min"], s["ips_max"])
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    _grouped_bars(ax, groups, series)
    ax.set_ylabel("images/s (median; bars: min-max over repeats)")
    ax.set_title("Training throughput per configuration and device")
    save_figure(fig, path)


def plot_speedup(rows: list[dict[str, Any]], baseline: str, path: Path) -> None:
    groups = sorted({r["config"] for r in rows})
    series: dict[str, dict[str, tuple]] = {}
    for r in rows:
        series.setdefault(r["device"], {})[r["config"]] = (r["speedup"], None, None)
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    _grouped_bars(ax, groups, series)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"speed-up vs {baseline}")
    ax.set_title(f"Throughput relative to {baseline}")
    save_figure(fig, path)


def plot_tta(summary: list[ConfigStats], path: Path) -> None:
    rows = [s for s in summary if s["target_accuracy"] is not None]
    groups = sorted({s["config"] for s in rows})
    series: dict[str, dict[str, tuple]] = {}
    for s in rows:
        if s["tta_s"] is not None:
            series.setdefault(s["device"], {})[s["config"]] = (s["tta_s"], None, None)
    fig = _figure(len(groups))
    ax = fig.add_subplot()
    _grouped_bars(ax, groups, series)
    ax.set_ylabel("time to target accuracy, s (median; missing bar: not reached)")
    ax.set_title("Time to accuracy")
    save_figure(fig, path)


def roofline_points(runs) -> list[dict[str, Any]]:
    """Runs that carry what a roofline needs: intensity, achieved and peak FLOP/s, bandwidth."""
    need = ("arithmetic_intensity", "achieved_tflops", "peak_tflops", "peak_copy_gbs")
    if len(runs) == 0 or any(c not in runs for c in need):
        return []
    pts = []
    records: list[RunRow] = runs[runs["status"] == "ok"].to_dict("records")
    for r in records:
        vals = {c: _clean(r.get(c)) for c in need}
        if all(v for v in vals.values()):
            pts.append({**vals, "device": r.get("device_label"),
                        "label": f"{r.get('model')} {r.get('precision')} {r.get('recipe')}"})
    return pts


def plot_roofline(points: list[dict[str, Any]], path: Path) -> None:
    """Achieved FLOP/s against arithmetic intensity under each device's measured roofs."""
    import numpy as np

    fig = _figure(6, height=5.0)
    ax = fig.add_subplot()
    xs = np.logspace(-1, 3.5, 200)
    for device in sorted({p["device"] for p in points}):
        mine = [p for p in points if p["device"] == device]
        peak = max(p["peak_tflops"] for p in mine) * 1e3  # GFLOP/s
        bw = max(p["peak_copy_gbs"] for p in mine)
        line = ax.plot(xs, np.minimum(peak, xs * bw), label=f"{device} roof "
                       f"({peak:,.0f} GFLOP/s, {bw:,.0f} GB/s)")[0]
        for p in mine:
            ax.scatter(p["arithmetic_intensity"], p["achieved_tflops"] * 1e3,
                       color=line.get_color(), s=18)
            ax.annotate(p["label"], (p["arithmetic_intensity"], p["achieved_tflops"] * 1e3),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity, training FLOP per byte (traffic model: bench/flops.py)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Roofline (peak of each run's precision)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_accuracy_curves(epochs, path: Path) -> None:
    """Test accuracy against cumulative training time; one panel per configuration."""
    rows = epochs[epochs["test_acc"].notna()]
    rows = rows.assign(_config=[config_label(run_key(r)) for r in rows.to_dict("records")])
    configs = sorted(rows["_config"].unique())
    devices = sorted(rows["device_label"].astype(str).unique())
    colors = {d: f"C{i % 10}" for i, d in enumerate(devices)}
    ncols = min(3, len(configs))
    nrows = -(-len(configs) // ncols)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * ncols, 3.4 * nrows))
    for i, config in enumerate(configs):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        seen: set[str] = set()
        for _, run in rows[rows["_config"] == config].groupby("run_id", sort=True):
            run = run.sort_values("cumulative_train_time_s")
            dev = str(run["device_label"].iloc[0])
            ax.plot(run["cumulative_train_time_s"], run["test_acc"], marker=".", linewidth=1,
                    color=colors[dev], label=None if dev in seen else dev)
            seen.add(dev)
        ax.set_title(config, fontsize=8)
        ax.set_xlabel("training time, s")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


# --------------------------------------------------------------------------- markdown


def _summary_md(summary: list[ConfigStats]) -> str:
    rows = [[s["config"], s["device"], s["runs"], fmt_num(s["images_per_s"], ",.1f"),
             f"{fmt_num(s['ips_min'], ',.1f')}–{fmt_num(s['ips_max'], ',.1f')}",
             fmt_num(s["epoch_time_s"], ".2f"),
             fmt_num(s["final_acc"], ".2%") + (f" ± {s['final_acc_sd']:.2%}"
                                               if s["final_acc_sd"] is not None else ""),
             (f"{fmt_num(s['tta_s'], '.1f')} ({s['tta_reached']}/{s['runs']})"
              if s["target_accuracy"] is not None else "-"),
             fmt_num(None if s["peak_memory_bytes"] is None else s["peak_memory_bytes"] / 2**20,
                     ",.0f"),
             fmt_num(s["mfu"], ".1%")] for s in summary]
    return markdown_table(["configuration", "device", "runs", "images/s", "min–max",
                           "epoch s", "final acc", "time to acc s (reached)", "peak MiB", "MFU"],
                          rows)


def write_report(items: Sequence[str | Path], out_dir: str | Path,
                 baseline_device: str | None = None, labels: Sequence[str] = ()) -> list[Path]:
    """Write the figures and report.md into out_dir; returns the files written. `labels`
    (`--label DIR=NAME`) name the runs read from DIR as a system, grouped apart."""
    docs = labelled(load_docs(items), labels)
    if not docs:
        raise BenchError("no result files found in " + ", ".join(map(str, items)))
    runs, epochs = docs_frame(docs), docs_epochs(docs)
    out = Path(out_dir)
    summary = summarize(runs)
    devices = sorted({s["device"] for s in summary})
    written: list[Path] = []
    md = ["# Benchmark report", "",
          f"{len(runs)} runs from {len(devices)} device(s): {', '.join(devices) or 'none'}.", ""]

    def figure(key: str, title: str, draw: Any, *args: Any) -> None:
        path = out / FIGURES[key]
        draw(*args, path)
        written.append(path)
        md.extend([f"## {title}", "", f"![{title}]({FIGURES[key]})", ""])

    if summary:
        md += ["## Summary", "", _summary_md(summary), ""]
        figure("throughput", "Throughput", plot_throughput, summary)
    if len(devices) >= 2:
        base = choose_baseline_device(devices, summary, baseline_device)
        rows = speedups(summary, base)
        if rows:
            figure("speedup", f"Speed-up relative to {base}", plot_speedup, rows, base)
            md += [markdown_table(["configuration", "device", f"speed-up vs {base}"],
                                  [[r["config"], r["device"], f"{r['speedup']:.2f}×"]
                                   for r in rows]), ""]
    elif baseline_device is not None:
        choose_baseline_device(devices, summary, baseline_device)  # validates the name
    if any(s["tta_reached"] for s in summary):
        figure("time_to_accuracy", "Time to accuracy", plot_tta, summary)
    ok_epochs = epochs[epochs["status"] == "ok"] if len(epochs) else epochs
    if len(ok_epochs) and "test_acc" in ok_epochs and ok_epochs["test_acc"].notna().any():
        figure("accuracy_vs_time", "Accuracy vs training time", plot_accuracy_curves, ok_epochs)
    points = roofline_points(runs)
    if points:
        figure("roofline", "Roofline", plot_roofline, points)
    failed = runs[runs["status"] != "ok"] if len(runs) else runs
    if len(failed):
        md += ["## Runs that did not finish", "", markdown_table(
            ["configuration", "device", "status", "message"],
            [[config_label(run_key(r)), r.get("device_label"), r.get("status"),
              r.get("message") or ""] for r in failed.to_dict("records")]), ""]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(md))
    return [*written, report]


def handler(args: argparse.Namespace) -> int:
    for path in write_report(args.results, args.out, args.baseline_device, args.label):
        print(path)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="figures and report.md across devices",
                       description="Group runs by device and draw throughput, speed-up,"
                       " time-to-accuracy and accuracy-vs-time figures plus report.md.")
    p.add_argument("results", nargs="+", help="result files, baseline files or folders")
    out = f"{RESULTS_DIR}/report"
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--baseline-device", default=None,
                   help="device label the speed-ups are relative to (default: the device with"
                   " the most configurations)")
    add_label_option(p)
    p.set_defaults(func=handler)
