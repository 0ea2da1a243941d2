"""throughput.png: how many images per second does each configuration train, on each device?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import draw
from bench.report.stats import ConfigStats, config_order


def plot_throughput(summary: Sequence[ConfigStats]) -> Any:
    """One horizontal bar per configuration and device (median images/s, min-max over repeats
    as the error bar), the value printed at its end; a log axis when values span decades."""
    rows = [s for s in summary if s["images_per_s"]]
    configs = config_order(rows)
    devices = sorted({s["device"] for s in rows})
    per = {(s["config"], s["device"]): s for s in rows}
    height = 0.8 / len(devices)
    counts = {s["runs"] for s in rows}  # one count for all: said once, in the axis label
    fig = draw.figure(9.5, 1.2 + 0.32 * len(configs) * len(devices))
    ax = fig.add_subplot()
    log = draw.wants_log([s["images_per_s"] or 0 for s in rows])
    for j, device in enumerate(devices):
        ys, widths, errs, color = [], [], [[], []], draw.OTHER_COLORS[j % 6]
        for i, config in enumerate(configs):
            s = per.get((config, device))
            if s is None:
                continue
            y = i + (j - (len(devices) - 1) / 2) * height
            v = s["images_per_s"] or 0.0
            ys.append(y)
            widths.append(v)
            errs[0].append(v - (s["ips_min"] or v))
            errs[1].append((s["ips_max"] or v) - v)
            end = s["ips_max"] or v
            runs = f"  ({s['runs']} runs)" if len(counts) > 1 else ""
            draw.value_text(ax, end, y, f"{draw.compact(v)}{runs}")
        ax.barh(ys, widths, height * 0.9, xerr=errs, capsize=2, color=color, label=device,
                error_kw={"elinewidth": 0.8, "ecolor": "black"})
    draw.row_ticks(ax, range(len(configs)), configs)
    draw.value_axis(ax, [s["ips_min"] or s["images_per_s"] or 0 for s in rows],
                    [s["ips_max"] or s["images_per_s"] or 0 for s in rows], log)
    n = counts.pop() if len(counts) == 1 else None
    each = "" if n is None else f"{n} run{'s' if n > 1 else ''} each, "
    ax.set_xlabel(f"training images/s ({each}median; error bar: min-max over repeats)"
                  + (", log scale" if log else ""))
    if len(devices) == 1:
        ax.set_title(devices[0], fontsize=9)
    else:
        fig.legend(fontsize=8, loc="outside lower center", ncols=len(devices))
    fig.suptitle("Training throughput per configuration")
    return fig
