"""report.md and its figures: which figure answers which question, in what order, and the
tables beside them."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.report import curves, devices, roofline, throughput, tta
from bench.report.stats import (
    INTERVAL_NOTE,
    ConfigStats,
    choose_baseline_device,
    cold_tta,
    device_ratios,
    geomean,
    summarize,
)
from bench.results import (
    ResultDoc,
    RunRow,
    atomic_write_text,
    config_label,
    docs_rows,
    flatten,
    fmt_num,
    labelled,
    load_docs,
    markdown_table,
    run_key,
    save_figure,
)
from bench.results.escape import md, term
from bench.results.format import fmt_mfu

FIGURES = {
    "throughput": "throughput.png",
    "time_to_accuracy": "time_to_accuracy.png",
    "accuracy_vs_time": "accuracy_vs_time.png",
    "speedup_throughput": "speedup_throughput.png",
    "speedup_time_to_accuracy": "speedup_time_to_accuracy.png",
    "roofline": "roofline.png",
}


def _summary_md(summary: list[ConfigStats]) -> str:
    rows = [[s["config"], s["device"], s["runs"], fmt_num(s["images_per_s"], ",.1f"),
             f"{fmt_num(s['ips_min'], ',.1f')}–{fmt_num(s['ips_max'], ',.1f')}",
             fmt_num(s["epoch_time_s"], ".2f"),
             fmt_num(s["final_acc"], ".2%") + (f" ± {s['final_acc_sd']:.2%}"
                                               if s["final_acc_sd"] is not None else ""),
             (f"{fmt_num(s['tta_s'], '.3g')} ({s['tta_reached']}/{s['runs']})"
              if s["target_accuracy"] is not None else "-"),
             fmt_num(None if s["peak_memory_bytes"] is None else s["peak_memory_bytes"] / 2**20,
                     ",.0f"),
             fmt_mfu(s, "mfu", ".1f", sign=True)] for s in summary]
    return markdown_table(["configuration", "device", "runs", "images/s", "min–max",
                           "epoch s", "final acc", "time to acc s (reached)", "peak MiB", "MFU"],
                          rows)


class _Report:
    """The markdown lines and files written so far."""

    def __init__(self, out: Path) -> None:
        self.out, self.md, self.written = out, [], []

    def figure(self, key: str, title: str, fig: Any, caption: str = "") -> None:
        path = self.out / FIGURES[key]
        save_figure(fig, path)
        self.written.append(path)
        self.md += [f"## {md(title)}", "", *([md(caption), ""] if caption else []),
                    f"![{md(title)}]({FIGURES[key]})", ""]


QUESTIONS = {
    "throughput": "How many images per second does each configuration train? Median over "
                  "repeats, the error bar their min-max.",
    "time_to_accuracy": "How long until each experiment reaches its target accuracy, the "
                        "course's seed loop against the fast recipe, and how many times faster "
                        "is the fast one? A hatched bar did not reach the target.",
    "accuracy_vs_time": "How does test accuracy climb with training time? Every evaluation of "
                        "every run; the dashed line is the target, a star where a run reached "
                        "it.",
    "roofline": "Is each run limited by memory bandwidth or by compute, and how far below its "
                "device's roof does it sit? Numbers are explained in the legend.",
}


def _device_sections(rep: _Report, summary: list[ConfigStats], base: str) -> None:
    """Per metric: the ratio figure and, per other device, the wide table."""
    for metric, key, title in (("throughput", "speedup_throughput", "throughput"),
                               ("time_to_accuracy", "speedup_time_to_accuracy",
                                "time to accuracy")):
        ratios = device_ratios(summary, base, metric)
        if not ratios:
            continue
        others = sorted({r["device"] for r in ratios})
        which = " that reached the target on both devices" if metric != "throughput" else ""
        rep.figure(key, f"What {' / '.join(others)} buys over {base}: {title}",
                   devices.plot_ratios(ratios, base, metric),
                   f"Per configuration{which}: how many times better than {base} (>1: better);"
                   f" {INTERVAL_NOTE}. The last bar is the geometric mean across"
                   " configurations.")
        for other in others:
            rep.md += [devices.ratio_table(ratios, base, other, metric), ""]


def _headline(summary: list[ConfigStats], base: str) -> list[str]:
    """One line per other device: the geometric means, before any figure."""
    lines = []
    for other in sorted({s["device"] for s in summary} - {base}):
        parts = []
        for metric, says in (("throughput", "{:.2f}× the images/s"),
                             ("time_to_accuracy", "reaches the target {:.2f}× sooner")):
            rs = [r["ratio"] for r in device_ratios(summary, base, metric)
                  if r["device"] == other]
            if rs:
                parts.append(says.format(geomean(rs)) + f" (geometric mean of {len(rs)}"
                             " configurations)")
        if parts:
            lines.append(f"- **{md(other)}** against {md(base)}: " + ", ".join(parts) + ".")
    return [*lines, ""] if lines else []


def _failed_md(runs: Sequence[RunRow]) -> list[str]:
    failed = [r for r in runs if r.get("status") != "ok"]
    if not failed:
        return []
    return ["## Runs that did not finish", "", markdown_table(
        ["configuration", "device", "status", "message"],
        [[config_label(run_key(r)), r.get("device_label"), r.get("status"),
          r.get("message") or ""] for r in failed]), ""]


def _printable(value: Any) -> Any:
    """`value` with every string through `escape.term`: the figures draw device names and
    labels, where a control character is a missing glyph (a warning), never text to show."""
    if isinstance(value, str):
        return term(value)
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _no_throughput(doc: ResultDoc) -> str | None:
    """Why a finished run's images/s cannot be a throughput (infinite, 0 or below), else None
    (a missing figure is no reason: the run shows with a dash)."""
    v = flatten(doc).get("images_per_s")
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if doc.get("status") != "ok" or math.isnan(f) or (math.isfinite(f) and f > 0):
        return None
    return f"images_per_s is {f:g}, not a positive finite number"


def _left_out(docs: Sequence[ResultDoc]) -> tuple[list[ResultDoc], list[list[Any]]]:
    """The runs the report shows, and a row (configuration, device, file, why) per run left
    out; one line on stderr names each file."""
    kept, rows = [], []
    for d in docs:
        why = _no_throughput(d)
        if why is None:
            kept.append(d)
            continue
        r = flatten(d)
        rows.append([config_label(run_key(r)), r.get("device_label"), r.get("path"), why])
        print(term(f"bench: report: left out {r.get('path')}: {why}"), file=sys.stderr)
    return kept, rows


def _left_out_md(rows: list[list[Any]]) -> list[str]:
    if not rows:
        return []
    return ["## Runs left out", "", "Their images/s cannot be a throughput; no figure, table or"
            " count above includes them.", "",
            markdown_table(["configuration", "device", "file", "why"], rows), ""]


def write_report(items: Sequence[str | Path], out_dir: str | Path,
                 baseline_device: str | None = None, labels: Sequence[str] = ()) -> list[Path]:
    """Write the figures and report.md into out_dir; returns the files written. Figures with
    nothing to show are left out. `labels` (`--label DIR=NAME`) name the runs read from DIR as
    a system, grouped apart. Text from the results is escaped (`results.escape.md`), and
    matplotlib's mathtext is off: a '$' in a device name is text, never a formula to parse."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        return _write_report(items, out_dir, baseline_device, labels)


def _write_report(items: Sequence[str | Path], out_dir: str | Path,
                  baseline_device: str | None, labels: Sequence[str]) -> list[Path]:
    docs = labelled(load_docs(items), labels)
    if not docs:
        raise BenchError("no result files found in " + ", ".join(map(str, items)))
    docs, left_out = _left_out([_printable(d) for d in docs])
    if not docs:
        raise BenchError(f"no run to report: all {len(left_out)} have an images/s that cannot be"
                         " a throughput (listed above)")
    runs = docs_rows(docs)  # flat rows, as the gate reads them: no DataFrame and back
    summary = summarize(runs)
    devs = sorted({s["device"] for s in summary})
    base = choose_baseline_device(sorted({str(r["device_label"]) for r in runs}), summary,
                                  baseline_device)
    rep = _Report(Path(out_dir))
    more = (f" {len(left_out)} more left out: their images/s cannot be a throughput (see Runs"
            " left out)." if left_out else "")
    rep.md += ["# Benchmark report", "",
               f"{len(runs)} runs from {len(devs)} device(s): "
               f"{', '.join(md(d) for d in devs) or 'none'}.{more}", ""]
    if len(devs) >= 2:
        rep.md += _headline(summary, base)
    if summary:
        rep.figure("throughput", "Throughput", throughput.plot_throughput(summary),
                   QUESTIONS["throughput"])
    if any(s["target_accuracy"] is not None for s in summary):
        rep.figure("time_to_accuracy", "Time to accuracy", tta.plot_tta(summary),
                   QUESTIONS["time_to_accuracy"])
        cold = sum(map(cold_tta, runs))
        if cold:
            rep.md += [f"{cold} run(s) are results of schema 1, whose time to accuracy includes "
                       "the warm-up steps (`time_to_accuracy_cold_s`); newer runs exclude "
                       "them (an untimed warm-up pass).", ""]
    lines = curves.curves(docs)
    if lines:
        rep.figure("accuracy_vs_time", "Accuracy vs training time",
                   curves.plot_accuracy_curves(lines), QUESTIONS["accuracy_vs_time"])
    if len(devs) >= 2:
        _device_sections(rep, summary, base)
    points = roofline.roofline_points(runs)
    if points:
        rep.figure("roofline", "Roofline", roofline.plot_roofline(points), QUESTIONS["roofline"])
    if summary:
        rep.md += ["## Every configuration", "", _summary_md(summary), ""]
    rep.md += _failed_md(runs) + _left_out_md(left_out)
    report = rep.out / "report.md"
    atomic_write_text(report, "\n".join(rep.md))
    return [*rep.written, report]
