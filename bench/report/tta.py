"""time_to_accuracy.png: how long until each experiment reaches its target, the course's seed
loop against the fast recipe, and how many times faster the fast one gets there?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import draw
from bench.report.stats import ConfigStats, config_order

NOT_REACHED = "not reached"


def _miss_text(s: ConfigStats) -> str:
    trained = f" in {draw.seconds(s['train_time_s'])}" if s["train_time_s"] else ""
    if s["max_steps"]:
        trained += f" (capped at {s['max_steps']:,} steps)"
    best = (f", best {s['best_acc']:.1%}" if s["best_acc"] is not None
            else ", no evaluation")
    return f"{NOT_REACHED}{trained}{best}"


def _pair_speedup(group: Sequence[ConfigStats]) -> float | None:
    """seed time / fast time when the experiment has one of each and both reached."""
    by = {s["recipe"]: s for s in group}
    if len(by) != len(group) or not all(by.get(r) and by[r]["tta_s"] for r in ("seed", "fast")):
        return None
    return by["seed"]["tta_s"] / by["fast"]["tta_s"]  # type: ignore[operator]


def _bar(ax: Any, y: float, s: ConfigStats, height: float, miss_width: float) -> None:
    color = draw.RECIPE_COLORS.get(str(s["recipe"]), draw.OTHER_COLORS[0])
    if s["tta_s"]:
        ax.barh(y, s["tta_s"], height, color=color)
        partial = (f" ({s['tta_reached']}/{s['runs']} reached)"
                   if s["tta_reached"] < s["runs"] else "")
        draw.value_text(ax, s["tta_s"], y, draw.seconds(s["tta_s"]) + partial)
    else:  # hatched, outlined, labelled: a miss must not read as a missing or tiny bar
        width = s["train_time_s"] or miss_width
        ax.barh(y, width, height, facecolor="white", edgecolor=color, hatch="///",
                linewidth=1.0)
        draw.value_text(ax, width, y, _miss_text(s), color="#b2182b")


def _panel(ax: Any, rows: Sequence[ConfigStats], experiments: list[str]) -> list[float]:
    """Bars of one device; returns every x the bars reach (for the axis limits)."""
    reached = [s["tta_s"] for s in rows if s["tta_s"]]
    miss_width = max(reached) * 2 if reached else 1.0
    order = config_order(rows)
    xs: list[float] = []
    any_speedup = False
    for i, exp in enumerate(experiments):
        group = sorted((s for s in rows if s["experiment"] == exp),
                       key=lambda s: order.index(s["config"]))
        height = 0.8 / max(1, len(group))
        for j, s in enumerate(group):
            _bar(ax, i + (j - (len(group) - 1) / 2) * height, s, height * 0.9, miss_width)
            xs.append(s["tta_s"] or s["train_time_s"] or miss_width)
        speedup = _pair_speedup(group)
        if speedup:
            any_speedup = True
            text = f"{speedup:.1f}×" if speedup < 100 else f"{speedup:,.0f}×"
            ax.text(1.01, i, text, transform=ax.get_yaxis_transform(), va="center", ha="left",
                    fontsize=10, fontweight="bold")
    if any_speedup:
        ax.text(1.01, -0.6, "fast vs\nseed", transform=ax.get_yaxis_transform(),
                va="bottom", ha="left", fontsize=8)
    return xs


def plot_tta(summary: Sequence[ConfigStats]) -> Any:
    """Per device a panel: per experiment its seed and fast bars side by side (median time over
    the repeats that reached the target), the fast recipe's speed-up to the right, misses
    hatched and labelled 'not reached'. Log time axis when the times span decades."""
    rows = [s for s in summary if s["target_accuracy"] is not None]
    devices = sorted({s["device"] for s in rows})
    experiments = sorted({s["experiment"] for s in rows})
    per_exp = max(len([s for s in rows if s["experiment"] == e and s["device"] == d])
                  for e in experiments for d in devices)
    fig = draw.figure(10.0, max(2.8, 1.4 + 0.3 * len(experiments) * per_exp) * len(devices))
    axes = fig.subplots(len(devices), 1, squeeze=False, sharex=True)[:, 0]
    xs = [x for ax, d in zip(axes, devices, strict=True)
          for x in _panel(ax, [s for s in rows if s["device"] == d], experiments)]
    log = draw.wants_log(xs)
    room = 2.2 if any(not s["tta_s"] for s in rows) else 1.2  # "not reached ..." is long
    for ax, device in zip(axes, devices, strict=True):
        draw.row_ticks(ax, range(len(experiments)), experiments)
        draw.value_axis(ax, xs, xs, log, room=room)
        ax.set_title(device, fontsize=9)
    recipes = sorted({str(s["recipe"]) for s in rows}, key=lambda r: (r != "seed", r))
    from matplotlib.patches import Patch

    handles = [Patch(color=draw.RECIPE_COLORS.get(r, draw.OTHER_COLORS[0]), label=r)
               for r in recipes]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label=NOT_REACHED))
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=len(handles))
    axes[-1].set_xlabel("seconds of training to the target accuracy (median over the repeats"
                        " that reached it)" + (", log scale" if log else ""))
    fig.suptitle("Time to accuracy: course seed loop vs fast recipe")
    return fig
