"""`bench sweep`: images/s against batch size for one model, as a table and a PNG plot.

Each batch size is a short `bench run` (no evaluation) written as a normal result, so the sweep
can be compared and reported like any other run; out-of-memory sizes are recorded as `oom`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.measure.runner import run
from bench.results import atomic_write
from bench.spec.runspec import RunConfig, add_run_flags

# Bounds on the counts that multiply a sweep's work, checked before its first run. A point
# measures images/s, which a few hundred steps settle (30 by default): 10,000 steps is over
# 300x that. 32 sizes hold every power of two from 1 to 2^31 (and repeats of a few).
MAX_STEPS = 10_000
MAX_SIZES = 32


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--batch-sizes takes integers like 32,64,128, not {text!r}") from None
    if not sizes or any(b <= 0 for b in sizes):
        raise BenchError(f"--batch-sizes must be positive integers, got {text!r}")
    if len(sizes) > MAX_SIZES:
        raise BenchError(f"--batch-sizes: at most {MAX_SIZES} sizes, got {len(sizes):,}")
    return sizes


def plot_sweep(rows: list[dict[str, Any]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["images_per_s"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar([r["batch_size"] for r in ok], [r["images_per_s"] for r in ok],
                yerr=[[r["images_per_s"] - r["min"] for r in ok],
                      [r["max"] - r["images_per_s"] for r in ok]], marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/s (median of windows, min-max bars)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100), suffix=".png")
    finally:
        plt.close(fig)


def cmd_sweep(args: argparse.Namespace) -> int:
    sizes = parse_sizes(args.batch_sizes)
    if args.steps < 1:
        raise BenchError(f"--steps must be at least 1, got {args.steps}")
    if args.steps > MAX_STEPS:
        raise BenchError(f"--steps must be at most {MAX_STEPS:,}, got {args.steps:,}")
    rows = []
    for b in sizes:
        cfg = RunConfig.from_args(args, batch_size=b, max_steps=args.steps, allow_synthetic=True,
                                  evaluate=False, quiet=True, suite="sweep")
        result, _ = run(cfg)
        s = result.summary
        rows.append({"batch_size": b, "status": result.status,
                     "images_per_s": s.get("images_per_s"), "min": s.get("images_per_s_min"),
                     "max": s.get("images_per_s_max"), "mfu": s.get("mfu")})
        print(f"batch {b}: {result.status} {(s.get('images_per_s') or 0):,.0f} img/s", flush=True)
    out = Path(args.out) / f"sweep-{args.model}.png"
    plot_sweep(rows, f"{args.model}: images/s vs batch size", out)
    print(f"plot: {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("sweep", help="images/s against batch size for one model (table + PNG)")
    add_run_flags(p, include=("model", "dataset"))
    p.add_argument("--batch-sizes", default="32,64,128,256",
                   help="comma-separated batch sizes (default: 32,64,128,256)")
    p.add_argument("--steps", type=int, default=30,
                   help=f"training steps per batch size, 1 to {MAX_STEPS:,} (default: 30)")
    add_run_flags(p, include=("loader", "device", "precision", "channels_last", "compile",
                              "recipe", "data_dir", "out", "warmup_steps", "window_steps"),
                  defaults_={"recipe": "fast"})
    p.set_defaults(func=cmd_sweep)
