"""`bench ci`: run the short "ci" suite and gate it against this device's recorded baseline.

The baseline is one JSON file per device, `results/baselines/<device-slug>.json`, holding a
list of result docs: one file can be replaced atomically (`--record-baseline`), reviewed in a
pull request, and read by `bench compare` / `bench report` like any result file.
Exit status: 0 pass (or no baseline yet), 1 regression or a failed run, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .compare import compare_frames, format_markdown, format_text, parse_threshold
from .errors import BenchError
from .results import (
    BASELINES_SUBDIR,
    DEFAULT_RESULTS_DIR,
    ResultDoc,
    atomic_write_text,
    config_label,
    device_slug,
    docs_frame,
    flatten,
    fmt_num,
    load_docs,
    markdown_table,
    read_docs,
    run_key,
)
from .runspec import add_run_flags

SUITE = "ci"
BASELINE_DIR = Path(DEFAULT_RESULTS_DIR) / BASELINES_SUBDIR


def baseline_path(device_label: str, folder: Path = BASELINE_DIR) -> Path:
    return folder / f"{device_slug(device_label)}.json"


def append_step_summary(markdown: str) -> None:
    """Append to the GitHub Actions job summary when running there (the file is append-only)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown.rstrip("\n") + "\n\n")


def _device_of(docs: Sequence[ResultDoc]) -> str:
    labels = sorted({flatten(d)["device_label"] for d in docs})
    if len(labels) != 1:
        raise BenchError(f"the ci suite ran on {len(labels)} devices ({', '.join(labels)});"
                         " a baseline belongs to one")
    return labels[0]


def _failures(docs: Sequence[ResultDoc]) -> list[str]:
    return [f"{config_label(run_key(d.get('config') or {}))}: status {d.get('status')}"
            + (f" ({d['message']})" if d.get("message") else "")
            for d in docs if d.get("status") != "ok"]


def record_baseline(docs: Sequence[ResultDoc], path: Path) -> None:
    """Replace the baseline atomically; refuse an incomplete one, it would hide configurations."""
    failures = _failures(docs)
    if failures:
        raise BenchError(f"{len(failures)} ci run(s) failed, not recording a baseline:"
                         f" {'; '.join(failures)}")
    clean = [{k: v for k, v in d.items() if not k.startswith("_")} for d in docs]
    atomic_write_text(path, json.dumps(clean, indent=1) + "\n")


def _results_markdown(docs: Sequence[ResultDoc], note: str) -> str:
    rows = [[config_label(run_key(r)), r.get("device_label"), r.get("status"),
             fmt_num(r.get("images_per_s"), ",.1f")]
            for r in (flatten(d) for d in docs)]
    return f"### bench ci\n\n{note}\n\n" + markdown_table(
        ["configuration", "device", "status", "images/s"], rows)


def run_ci(*, data_dir: str | None, out_dir: str, device: str, repeats: int, threshold: float,
           baseline: str | None, record: bool) -> int:
    """Run the suite, then record or compare; returns the exit status."""
    from .suites import run_suite

    paths = run_suite(SUITE, data_dir=data_dir, out_dir=out_dir, device=device, repeats=repeats)
    docs = [d for p in paths for d in read_docs(p)]
    if not docs:
        raise BenchError(f"suite {SUITE!r} wrote no results")
    label = _device_of(docs)
    path = Path(baseline) if baseline else baseline_path(label)
    if record:
        record_baseline(docs, path)
        msg = f"recorded baseline of {len(docs)} run(s) on {label}: {path}"
        print(msg)
        append_step_summary(_results_markdown(docs, msg))
        return 0
    failures = _failures(docs)
    if not path.exists():
        msg = (f"no baseline for {label} at {path}: nothing to compare against"
               " (record one with `make bench-baseline`)")
        print(msg)
        for f in failures:
            print(f"failed: {f}")
        append_step_summary(_results_markdown(docs, msg))
        return 1 if failures else 0
    cmp = compare_frames(docs_frame(load_docs([path])), docs_frame(docs), threshold)
    print(format_text(cmp), end="")
    append_step_summary(format_markdown(cmp))
    return cmp.exit_code


def handler(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise BenchError(f"--repeats {args.repeats}: must be at least 1")
    return run_ci(data_dir=args.data_dir, out_dir=args.out, device=args.device,
                  repeats=args.repeats, threshold=parse_threshold(args.threshold),
                  baseline=args.baseline, record=args.record_baseline)


def register(sub: Any) -> None:
    p = sub.add_parser("ci", help="run the ci suite and compare it with this device's baseline",
                       description="Exit status: 0 pass or no baseline, 1 regression or failed"
                       " run, 2 bad input. Writes a markdown summary to $GITHUB_STEP_SUMMARY.")
    add_run_flags(p, include=("data_dir", "out", "device"))
    p.add_argument("--repeats", type=int, default=1,
                   help="repeats per configuration; 2+ let the noise rule apply (default 1)")
    p.add_argument("--threshold", default="5%", help="regression threshold (default 5%%)")
    p.add_argument("--baseline", default=None,
                   help="baseline file (default results/baselines/<device-slug>.json)")
    p.add_argument("--record-baseline", action="store_true",
                   help="write/replace the baseline with this run instead of comparing")
    p.set_defaults(func=handler)
