"""accuracy_vs_time.png: how does test accuracy climb with training time - does the fast recipe
get to the target sooner than the seed loop, and where does each flatten out?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from bench.report import draw
from bench.report.stats import RECIPE_ORDER, clean, experiment_of
from bench.results import ResultDoc, flatten


class Curve(TypedDict):
    """Test accuracy of one run against its training clock."""

    experiment: str
    recipe: str
    device: str
    times: list[float]
    accs: list[float]
    target: float | None
    tta: float | None


def _points(doc: ResultDoc) -> list[tuple[float, float]]:
    """(training time, test accuracy) from every evaluation (a point every few steps), else
    from the epochs (a seed loop that evaluates once per epoch)."""
    pts = [(clean(e.get("train_time_s")), clean(e.get("test_acc")))
           for e in doc.get("evals") or []]
    if not any(t is not None and a is not None for t, a in pts):
        pts = [(clean(e.get("cumulative_train_time_s")), clean(e.get("test_acc")))
               for e in doc.get("epochs") or []]
    return sorted((t, a) for t, a in pts if t is not None and t > 0 and a is not None)


def curves(docs: Sequence[ResultDoc]) -> list[Curve]:
    """One curve per finished run that evaluated at least once."""
    out: list[Curve] = []
    for d in docs:
        pts = _points(d)
        if d.get("status") != "ok" or not pts:
            continue
        row = flatten(d)
        out.append({"experiment": experiment_of(row), "recipe": str(row.get("recipe")),
                    "device": str(row.get("device_label")),
                    "times": [t for t, _ in pts], "accs": [a for _, a in pts],
                    "target": clean(row.get("target_accuracy")),
                    "tta": clean(row.get("time_to_accuracy_s"))})
    return out


LINESTYLES = ["-", "--", ":", "-."]


def _panel(ax: Any, mine: Sequence[Curve], devices: list[str], recipes: list[str]) -> None:
    seen: set[tuple[str, str]] = set()
    for c in sorted(mine, key=lambda c: (RECIPE_ORDER.get(c["recipe"], 2), c["recipe"])):
        key = (c["recipe"], c["device"])
        label = c["recipe"] + (f" · {c['device']}" if len(devices) > 1 else "")
        color = draw.color_for(c["recipe"], recipes)
        ax.plot(c["times"], c["accs"], marker="o", linewidth=1.2, color=color,
                markersize=3 if len(c["times"]) > 3 else 6,  # an epoch-only seed run: bigger
                linestyle=LINESTYLES[devices.index(c["device"]) % 4],
                label=None if key in seen else label, alpha=0.9)
        seen.add(key)
        if c["tta"] and c["target"] is not None:
            ax.plot([c["tta"]], [c["target"]], marker="*", markersize=11, color=color,
                    markeredgecolor="black", linestyle="none")
    targets = {c["target"] for c in mine if c["target"] is not None}
    for t in sorted(targets):
        ax.axhline(t, color="black", linestyle="--", linewidth=1, label=f"target {t:.0%}")
    times = [t for c in mine for t in c["times"]]
    if draw.wants_log(times):
        ax.set_xscale("log")
    ax.set_xlabel("training time, s" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=7, loc="lower right")


def plot_accuracy_curves(all_curves: Sequence[Curve]) -> Any:
    """One panel per experiment, seed and fast overlaid (a line style per device, repeats
    drawn alike), the target as a dashed line and a star where each run reached it."""
    experiments = sorted({c["experiment"] for c in all_curves})
    devices = sorted({c["device"] for c in all_curves})
    recipes = sorted({c["recipe"] for c in all_curves})
    ncols = min(3, len(experiments))
    nrows = -(-len(experiments) // ncols)
    fig = draw.figure(4.6 * ncols, 3.3 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, exp in zip(axes, experiments, strict=False):
        _panel(ax, [c for c in all_curves if c["experiment"] == exp], devices, recipes)
        ax.set_title(exp, fontsize=10)
    for ax in axes[len(experiments):]:
        ax.set_visible(False)
    fig.suptitle("Test accuracy vs training time (★: target reached)"
                 + (f" - {devices[0]}" if len(devices) == 1 else ""))
    return fig
