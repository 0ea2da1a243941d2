"""speedup_throughput.png, speedup_time_to_accuracy.png and their table: what does the other
(newer) device buy over the baseline, per configuration and across them (geometric mean)?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import draw
from bench.report.stats import INTERVAL_NOTE, Ratio, geomean
from bench.results import fmt_num, markdown_table
from bench.results.escape import Markup

WHAT = {"throughput": "Throughput: how many times more images/s",
        "time_to_accuracy": "Time to accuracy: how many times sooner the target is reached"}
GEOMEAN = "geometric mean"


def _rows(ratios: Sequence[Ratio], device: str) -> list[tuple[str, float, float, float]]:
    """(label, ratio, low, high) per configuration, then the geometric mean across them."""
    mine = [r for r in ratios if r["device"] == device]
    rows = [(r["config"], r["ratio"], r["low"], r["high"]) for r in mine]
    g = geomean([r["ratio"] for r in mine])
    rows.append((f"{GEOMEAN} ({len(mine)} configurations)", g, g, g))
    return rows


def _ratio_panel(ax: Any, rows: list[tuple[str, float, float, float]], color: str) -> None:
    """Bars growing from 1× (right: better, left: worse), the interval as an error bar."""
    for i, (label, r, lo, hi) in enumerate(rows):
        is_mean = label.startswith(GEOMEAN)
        ax.barh(i, r - 1, 0.7, left=1, color="#333333" if is_mean else color,
                xerr=None if is_mean else [[r - lo], [hi - r]], capsize=3,
                error_kw={"elinewidth": 0.8})
        interval = "" if is_mean or lo == hi else f"  [{lo:.2f}–{hi:.2f}]"
        draw.value_text(ax, max(r, hi, 1.0), i, f"{r:.2f}×{interval}",
                        fontweight="bold" if is_mean else "normal")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axhline(len(rows) - 1.5, color="grey", linewidth=0.6, linestyle=":")
    draw.row_ticks(ax, range(len(rows)), [r[0] for r in rows])
    lows = [min(r[2], 1.0) for r in rows]
    highs = [max(r[3], 1.0) for r in rows]
    ax.set_xscale("log")
    ax.set_xlim(min(lows) / 1.3, max(highs) * 2.5)
    from matplotlib.ticker import LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter("{x:g}×")
    ax.xaxis.set_minor_formatter("")
    ax.grid(axis="x", alpha=0.3)


def plot_ratios(ratios: Sequence[Ratio], baseline: str, metric: str) -> Any:
    """One panel per non-baseline device: per configuration its ratio to the baseline."""
    devices = sorted({r["device"] for r in ratios})
    per = max(len([r for r in ratios if r["device"] == d]) for d in devices) + 1
    fig = draw.figure(10.0, (1.3 + 0.34 * per) * len(devices) + 0.3)
    axes = fig.subplots(len(devices), 1, squeeze=False)[:, 0]
    for j, (ax, device) in enumerate(zip(axes, devices, strict=True)):
        _ratio_panel(ax, _rows(ratios, device), draw.OTHER_COLORS[(j + 1) % 6])
        ax.set_title(f"{device} over {baseline}", fontsize=9)
    axes[-1].set_xlabel(f"× better than {baseline} (log scale)\n{INTERVAL_NOTE}", fontsize=8)
    fig.suptitle(WHAT[metric])
    return fig


def ratio_table(ratios: Sequence[Ratio], baseline: str, device: str, metric: str) -> str:
    """configuration | baseline | device | ×, the geometric mean in the last row."""
    fmt = (lambda v: fmt_num(v, ",.0f")) if metric == "throughput" else draw.seconds
    unit = "images/s" if metric == "throughput" else "s to target"
    mine = [r for r in ratios if r["device"] == device]
    rows = [[r["config"], fmt(r["base"]), fmt(r["value"]),  # the ratio cell: our numbers
             Markup(f"{r['ratio']:.2f}× [{r['low']:.2f}–{r['high']:.2f}]")] for r in mine]
    rows.append([Markup(f"**{GEOMEAN}** of {len(mine)}"), "", "",  # our emphasis, kept
                 Markup(f"**{geomean([r['ratio'] for r in mine]):.2f}×**")])
    return markdown_table(["configuration", f"{baseline} ({unit})", f"{device} ({unit})",
                           "× [min-max over repeat pairs]"], rows)
