"""Drawing helpers the report's figures share: a headless Figure, compact value labels, the
log-or-linear choice, and horizontal bars with their value printed at the end.

Figures are `matplotlib.figure.Figure` objects (Agg, no pyplot state), so the report works
without a display and tests can read the axes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Values spanning this factor or more get a log axis: VGG's 72 images/s next to fc's 229,000
# would be an invisible sliver on a linear one.
LOG_SPAN = 10.0

RECIPE_COLORS = {"seed": "#7f7f7f", "fast": "#d95f02"}
OTHER_COLORS = ["#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def compact(v: float) -> str:
    """3 significant digits, thousands as k and millions as M: 229355 -> '229k', 0.0932 ->
    '0.0932', 7094 -> '7.09k'."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def seconds(v: float) -> str:
    return f"{compact(v)} s"


def wants_log(values: Sequence[float]) -> bool:
    xs = [v for v in values if v and v > 0]
    return bool(xs) and max(xs) / min(xs) >= LOG_SPAN


def color_for(key: str, order: Sequence[str]) -> str:
    """The recipe's fixed colour, else one of a palette by position in `order`."""
    if key in RECIPE_COLORS:
        return RECIPE_COLORS[key]
    return OTHER_COLORS[list(order).index(key) % len(OTHER_COLORS)]


def value_text(ax: Any, x: float, y: float, text: str, **kw: Any) -> Any:
    """A label just right of x (a bar's end or its error bar), vertically centred on y."""
    return ax.annotate(text, (x, y), xytext=(4, 0), textcoords="offset points", va="center",
                       ha="left", fontsize=kw.pop("fontsize", 8), **kw)


def value_axis(ax: Any, lows: Sequence[float], highs: Sequence[float], log: bool,
               room: float = 1.0) -> None:
    """x limits that leave room right of the longest bar for its value label (`room` more
    decades, or that fraction more on a linear axis)."""
    lo = min(v for v in lows if v > 0) if log else 0.0
    hi = max(highs)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, hi * 10 ** room)
    else:
        ax.set_xlim(0, hi * (1 + 0.35 * room))
    ax.grid(axis="x", which="major", alpha=0.3)


def row_ticks(ax: Any, positions: Sequence[float], labels: Sequence[str]) -> None:
    ax.set_yticks(list(positions))
    ax.set_yticklabels(list(labels), fontsize=8)
    ax.invert_yaxis()  # first row on top, as one reads a table
