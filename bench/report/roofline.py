"""roofline.png: is each run limited by memory bandwidth or by compute, and how far below its
device's roof does it sit?

Points carry a number, not a text label: labels of nearby runs would overlap, and adjustText is
not a dependency. The legend says which run each number is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import draw
from bench.report.stats import clean
from bench.results import RunRow

NEED = ("arithmetic_intensity", "achieved_tflops", "peak_tflops", "peak_copy_gbs")


def roofline_points(runs: Sequence[RunRow]) -> list[dict[str, Any]]:
    """Finished runs that carry what a roofline needs: intensity, achieved and peak FLOP/s,
    bandwidth; numbered in a stable order."""
    pts = []
    for r in (r for r in runs if r.get("status") == "ok"):
        vals = {c: clean(r.get(c)) for c in NEED}
        if all(v is not None and v > 0 for v in vals.values()):  # a log-log plot
            pts.append({**vals, "device": str(r.get("device_label")),
                        "precision": str(r.get("peak_precision") or r.get("precision")),
                        "label": f"{r.get('model')}/{r.get('dataset')} {r.get('recipe')}"
                                 f" {r.get('precision')} bs{r.get('batch_size')}"})
    pts.sort(key=lambda p: (p["device"], p["label"]))
    return _merge_repeats(pts)


def _merge_repeats(pts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Repeats of one configuration become one point (their median achieved FLOP/s)."""
    import statistics

    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for p in pts:
        m = merged.setdefault((p["device"], p["label"]), {**p, "_all": []})
        m["_all"].append(p["achieved_tflops"])
    for m in merged.values():
        m["achieved_tflops"] = statistics.median(m.pop("_all"))
    return list(merged.values())


RING = 16.0  # points between a run's dot and its number when the dot's own spot is taken
GAP = 12.0  # points two numbers keep apart


def place_numbers(ax: Any, xy: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """An offset (points) for each number: on its dot when free, else the first free spot on
    rings around it (greedy, in order), so that no two numbers overlap."""
    import math

    fig = ax.get_figure()
    fig.draw_without_rendering()  # lay out, so data -> display is final
    scale = 72.0 / fig.dpi
    bbox = ax.get_window_extent()
    placed: list[tuple[float, float]] = []
    out = []
    candidates = [(0.0, 0.0)] + [(r * math.cos(a * math.pi / 4), r * math.sin(a * math.pi / 4))
                                 for r in (RING, 2 * RING, 3 * RING) for a in (1, 3, 5, 7, 0,
                                                                               2, 4, 6)]
    for x, y in xy:
        px, py = (v * scale for v in ax.transData.transform((x, y)))
        for dx, dy in candidates:
            cx, cy = px + dx, py + dy
            inside = (bbox.x0 * scale + GAP / 2 < cx < bbox.x1 * scale - GAP / 2
                      and bbox.y0 * scale + GAP / 2 < cy < bbox.y1 * scale - GAP / 2)
            if inside and all(math.hypot(cx - qx, cy - qy) >= GAP for qx, qy in placed):
                break
        placed.append((cx, cy))
        out.append((dx, dy))
    return out


def _roofs(ax: Any, points: Sequence[dict[str, Any]], devices: list[str]) -> None:
    """One roof per device and precision (each run sits under its own precision's peak): the
    device's colour, a line style per precision."""
    import numpy as np

    ridges = [p["peak_tflops"] * 1e3 / p["peak_copy_gbs"] for p in points]  # FLOP per byte
    lo = min(p["arithmetic_intensity"] for p in points) / 3
    hi = max(max(p["arithmetic_intensity"] for p in points), *ridges) * 3  # corner in view
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    styles = ["-", "--", ":", "-."]
    for j, device in enumerate(devices):
        mine = [p for p in points if p["device"] == device]
        bw = max(p["peak_copy_gbs"] for p in mine)
        precisions = sorted({p["precision"] for p in mine})
        for k, precision in enumerate(precisions):
            peak = max(p["peak_tflops"] for p in mine if p["precision"] == precision) * 1e3
            ax.plot(xs, np.minimum(peak, xs * bw), color=draw.OTHER_COLORS[j % 6],
                    linewidth=1.8, linestyle=styles[k % 4],
                    label=f"roof: {device} {precision} ({draw.compact(peak)} GFLOP/s,"
                          f" {draw.compact(bw)} GB/s)")


def plot_roofline(points: Sequence[dict[str, Any]]) -> Any:
    """Achieved GFLOP/s against arithmetic intensity under each device's measured roof;
    each point numbered (moved aside, with a leader line, where points crowd), the numbers
    explained in the legend beside the plot."""
    from matplotlib.lines import Line2D

    fig = draw.figure(11.0, 5.5)
    ax = fig.add_subplot()
    devices = sorted({p["device"] for p in points})
    _roofs(ax, points, devices)
    xy = [(p["arithmetic_intensity"], p["achieved_tflops"] * 1e3) for p in points]
    colors = [draw.OTHER_COLORS[devices.index(p["device"]) % 6] for p in points]
    ax.scatter([x for x, _ in xy], [y for _, y in xy], s=16, c=colors, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity, training FLOP per byte "
                  "(traffic model: bench/measure/flops.py)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Roofline: each run under its device's roof (peak of the run's precision)")
    ax.grid(alpha=0.3, which="both")
    ax.add_artist(ax.legend(fontsize=8, loc="lower right"))
    # the legend first: it takes room from the axes, and the numbers are placed on the final
    # layout
    fig.legend(handles=[Line2D([], [], marker=f"${n}$", color=color, linestyle="none",
                               markersize=8 if n < 10 else 11,
                               label=f"{p['label']} ({p['device']})" if len(devices) > 1
                               else p["label"])
                        for n, (p, color) in enumerate(zip(points, colors, strict=True), 1)],
               loc="outside right upper", fontsize=8, title="runs")
    for n, ((x, y), (dx, dy), color) in enumerate(
            zip(xy, place_numbers(ax, xy), colors, strict=True), start=1):
        ax.annotate(str(n), (x, y), xytext=(dx, dy), textcoords="offset points", ha="center",
                    va="center", fontsize=7, fontweight="bold", zorder=4,
                    bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": color, "lw": 1},
                    arrowprops=None if (dx, dy) == (0, 0) else
                    {"arrowstyle": "-", "color": color, "lw": 0.7, "shrinkB": 0})
    return fig
