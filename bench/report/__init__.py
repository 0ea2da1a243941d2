"""`bench report RESULTS... [--out DIR]`: figures and a markdown report across devices.

Runs are grouped by device label (the GPU name, or the CPU model), so results gathered on
different machines - one folder per GPU generation, say - land side by side. One module per
figure (`throughput`, `tta`, `curves`, `devices`, `roofline`), the numbers they share in
`stats`, and `document` puts them into report.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.defaults import RESULTS_DIR
from bench.report.document import FIGURES, write_report
from bench.report.stats import summarize
from bench.results import add_label_option

__all__ = ["FIGURES", "register", "summarize", "write_report"]


def handler(args: argparse.Namespace) -> int:
    for path in write_report(args.results, args.out, args.baseline_device, args.label):
        print(path)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="figures and report.md across devices",
                       description="Group runs by device and draw throughput, time-to-accuracy,"
                       " accuracy-vs-time, device-ratio and roofline figures plus report.md.")
    p.add_argument("results", nargs="+", help="result files, baseline files or folders")
    out = f"{RESULTS_DIR}/report"
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--baseline-device", default=None,
                   help="device label the other devices are compared with (default: the device"
                   " with the most configurations)")
    add_label_option(p)
    p.set_defaults(func=handler)
