"""The history page: one static, self-contained HTML file (plotly.js inlined, so it opens offline
and as a CI artifact) with images/s and time-to-accuracy over time for every configuration,
one line per device, error bars over the repeats, regressions marked, and a device filter.

One plotly figure with a row per configuration (images/s left, time to accuracy right), so
that a single dropdown filters every chart by device without any script of ours.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.history.records import Record
from bench.history.series import Series, short_commit
from bench.results import atomic_write_text, num

METRICS = (("images_per_s", "images/s", ",.1f"), ("time_to_accuracy_s", "time to accuracy (s)",
                                                   ",.2f"))
ROW_PX, GAP_PX, TOP_PX, BOTTOM_PX = 300, 90, 110, 50
REGRESSION_COLOUR = "#d62728"


# plotly is one of bench's dependencies, not an extra: a checkout run without installing it (or
# a machine whose Python stack was set up by hand) may lack it.
PLOTLY_MISSING = ("history: drawing the page needs plotly, which is not installed (pip install "
                  "plotly, or pip install -e . in the checkout: it is one of bench's "
                  "dependencies); the runs and the verdicts are kept without it")


def require_plotly() -> None:
    """Import plotly or raise one line saying how to get it: the page is the only part of
    `bench history` that needs it, so the rest must not fail on its absence."""
    try:
        import plotly.graph_objects  # noqa: F401
        import plotly.subplots  # noqa: F401
    except ImportError as exc:
        missing = exc.name or "plotly"
        extra = "" if missing == "plotly" else f" ({missing}, which plotly imports, is missing)"
        raise BenchError(PLOTLY_MISSING + extra) from None


def plot_date(stamp: str) -> str:
    """An ISO 8601 stamp as plotly.js reads dates: UTC, without an offset."""
    try:
        t = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return t.isoformat(sep=" ", timespec="seconds")


def _hover(metric: str, unit: str, fmt: str) -> str:
    return (f"%{{y:{fmt}}} {unit}<br>commit %{{customdata[0]}}<br>%{{customdata[1]}} run(s), "
            "range %{customdata[2]}<br>%{x}<extra>%{fullData.name}</extra>")


def _metric_trace(s: Series, metric: str, colour: str, legend: bool) -> Any | None:
    """A line of one series and metric, error bars from min to max over its runs."""
    import plotly.graph_objects as go

    _, unit, fmt = next(m for m in METRICS if m[0] == metric)
    pts = [p for p in s.points if num(p.get(metric)) is not None]
    if not pts:
        return None
    y = [float(p[metric]) for p in pts]
    lo = [num(p.get(f"{metric}_min")) for p in pts]
    hi = [num(p.get(f"{metric}_max")) for p in pts]
    runs_key = "runs" if metric == "images_per_s" else "reached"
    custom = [[short_commit(p.get("commit")), p.get(runs_key),
               f"{format(v if a is None else a, fmt)} to {format(v if b is None else b, fmt)}"]
              for p, v, a, b in zip(pts, y, lo, hi, strict=True)]
    return go.Scatter(
        x=[plot_date(p["date"]) for p in pts], y=y, mode="lines+markers",
        name=html.escape(s.device),  # plotly renders a subset of HTML in names and labels
        legendgroup=s.device, showlegend=legend, line={"color": colour},
        marker={"color": colour, "size": 7}, customdata=custom,
        error_y={"type": "data", "symmetric": False, "color": colour, "thickness": 1.2,
                 "array": [(b - v) if b is not None else 0 for v, b in zip(y, hi, strict=True)],
                 "arrayminus": [(v - a) if a is not None else 0
                                for v, a in zip(y, lo, strict=True)]},
        hovertemplate=_hover(metric, unit, fmt))


def _regression_trace(s: Series, legend: bool) -> Any:
    import plotly.graph_objects as go

    pts = [p for p, _ in s.regressions]
    return go.Scatter(
        x=[plot_date(p["date"]) for p in pts], y=[num(p.get("images_per_s")) for p in pts],
        mode="markers", name="regression", legendgroup="regression", showlegend=legend,
        marker={"symbol": "x-thin-open", "size": 18, "line": {"width": 3},
                "color": REGRESSION_COLOUR},
        text=[f"{html.escape(s.device)}<br>{html.escape(short_commit(p.get('commit')))}: "
              f"{html.escape(why)}"
              for p, why in s.regressions],
        hovertemplate="REGRESSION<br>%{text}<extra></extra>")


def _device_menu(devices: Sequence[str], trace_devices: Sequence[str], y: float) -> dict:
    """A dropdown showing every device, or one device's traces alone."""
    buttons = [{"label": "all devices", "method": "restyle",
                "args": [{"visible": [True] * len(trace_devices)}]}]
    buttons += [{"label": html.escape(d), "method": "restyle",
                 "args": [{"visible": [t == d for t in trace_devices]}]} for d in devices]
    return {"buttons": buttons, "direction": "down", "showactive": True, "x": 1.0,
            "xanchor": "right", "y": y, "yanchor": "bottom", "active": 0}


def _palette() -> list[str]:
    import plotly.colors

    return [c for c in plotly.colors.qualitative.D3 if c.lower() != REGRESSION_COLOUR]


def _titles(configs: Sequence[str]) -> list[str]:
    return [f"{html.escape(c)}: {label}" for c in configs for _, label, _ in METRICS]


def build_figure(series: Sequence[Series]) -> Any:
    """The figure of every series (see the module doc)."""
    require_plotly()
    from plotly.subplots import make_subplots

    configs = sorted({s.config for s in series})
    devices = sorted({s.device for s in series})
    colours = dict(zip(devices, _palette() * (len(devices) // 9 + 1), strict=False))
    plot_px = ROW_PX * len(configs) + GAP_PX * (len(configs) - 1)
    fig = make_subplots(rows=len(configs), cols=2, subplot_titles=_titles(configs),
                        vertical_spacing=GAP_PX / plot_px if len(configs) > 1 else 0.0,
                        horizontal_spacing=0.08)
    trace_devices: list[str] = []
    legend_seen: set[str] = set()
    with_tta: set[str] = set()
    for s in series:
        row = configs.index(s.config) + 1
        for col, (metric, _, _) in enumerate(METRICS, 1):
            trace = _metric_trace(s, metric, colours[s.device], s.device not in legend_seen)
            if trace is not None:
                legend_seen.add(s.device)
                fig.add_trace(trace, row=row, col=col)
                trace_devices.append(s.device)
                with_tta.update([s.config] if col == 2 else [])
        if s.regressions:
            fig.add_trace(_regression_trace(s, "regression" not in legend_seen), row=row, col=1)
            legend_seen.add("regression")
            trace_devices.append(s.device)
    for row, config in enumerate(configs, 1):
        if config not in with_tta:
            # Placed on the page, at the centre of this row's right-hand subplot (axes x2, x4,
            # ...): plotly.js draws no axes for a subplot without traces, and an annotation
            # that refers to them lands on the first subplot instead.
            n = 2 * row
            x0, x1 = fig.layout[f"xaxis{n}"].domain
            y0, y1 = fig.layout[f"yaxis{n}"].domain
            fig.add_annotation(text="no time to accuracy: throughput-only runs, or the target "
                               "was not reached", showarrow=False, xref="paper",
                               yref="paper", x=(x0 + x1) / 2, y=(y0 + y1) / 2,
                               xanchor="center", yanchor="middle")
    fig.update_xaxes(type="date")
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(height=plot_px + TOP_PX + BOTTOM_PX, template="plotly_white",
                      margin={"t": TOP_PX, "b": BOTTOM_PX, "l": 60, "r": 30},
                      legend={"orientation": "h", "x": 0, "y": 1 + 45 / plot_px,
                              "yanchor": "bottom"},
                      updatemenus=[_device_menu(devices, trace_devices, 1 + 45 / plot_px)])
    return fig


def _header(records: Sequence[Record], series: Sequence[Series], source: str) -> str:
    dates = sorted(r["date"] for r in records)
    n_reg = sum(len(s.regressions) for s in series)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return (f"<h1>bench history</h1>\n<p class=\"meta\">{len(records)} record(s), "
            f"{len({s.device for s in series})} device(s), {len({s.config for s in series})} "
            f"configuration(s), {html.escape(plot_date(dates[0]))} to "
            f"{html.escape(plot_date(dates[-1]))}; {n_reg} regression(s) marked. Generated "
            f"{html.escape(now)} from {html.escape(source)}.</p>\n"
            "<p>A point is one commit on one device: the median of its runs, error bars from "
            "the slowest to the fastest run. A red cross marks a regression: the <code>bench "
            "ci</code> gate's verdict when it was recorded, else a significant slowdown from "
            "the previous point (hover for the figures). The menu at the top right filters by "
            "device; the legend hides or shows lines.</p>\n")


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bench history</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
.meta {{ color: #555; }}</style>
</head>
<body>
{header}{figure}
</body>
</html>
"""


def render_page(records: Sequence[Record], series: Sequence[Series], source: str) -> str:
    """The whole page as one string."""
    fig = build_figure(series)
    div = fig.to_html(full_html=False, include_plotlyjs=True,
                      config={"responsive": True, "displaylogo": False})
    return PAGE.format(header=_header(records, series, source), figure=div)


def write_page(out: Path, records: Sequence[Record], series: Sequence[Series],
               source: str) -> Path:
    """Write `out/index.html` atomically (readers see the old page or the new one)."""
    path = out / "index.html"
    atomic_write_text(path, render_page(records, series, source))
    return path


__all__ = ["PLOTLY_MISSING", "build_figure", "plot_date", "render_page", "require_plotly",
           "write_page"]
