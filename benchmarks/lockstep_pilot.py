"""Pilot: do two processes that take turns window by window see the same machine?

    python benchmarks/lockstep_pilot.py run --out /tmp/lockstep --pairs 8 --cond quiet
    python benchmarks/lockstep_pilot.py read /tmp/lockstep
    python benchmarks/lockstep_pilot.py read docs/campaigns/lockstep-pilot-2026-12-03.json

Why: `bench ci --against` alternates whole rounds (a fresh process each, seconds apart) between
baseline and candidate, and on this VM the gate's figure moves 10-30% between processes
(docs/ci.md), so a job needs more rounds than 5 minutes hold. If that movement is the machine's
speed drifting in time, two live processes, one per side, that run their timed windows in turns
(A B B A ..., ~0.1 s each) see the same drift, and the ratio of their rates keeps little of it.
If instead each process has a speed of its own (where its memory landed), turns do not help.

`run` starts, per (pair, model), two fresh processes of the same code (an A/A pair) with the ci
suite's configuration of that model, warms both up, then asks them in turns for `WINDOWS`
windows each. `read` gives per model the sd over pairs of log(q90 A / q90 B) and of the median
over turns of log(A / B) (what `bench.gate.paired` adopted), against the sd of log(q90 A / q90 B)
across pairs (A of pair i against B of pair i+1: processes seconds apart, as rounds were).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("cnn", "fc", "lenet", "vgg16")
WINDOWS = 20


def worker(model_name: str) -> None:
    """One side: warm up, say `ready`, then time one training window per `w` line read."""
    from bench.host.device import synchronize
    from bench.measure import runner
    from bench.measure.engine import endless
    from bench.suites.policy import suite_configs

    cfg = next(c for c in suite_configs("ci", on_gpu=False)[0] if c.model == model_name)
    plan = runner.resolve(cfg)
    built = runner.build(plan)
    batches = endless(built.train_loader)
    per_batch = next(batches)[0].shape[0]

    def timed(n: int) -> float:
        synchronize(plan.device)
        start = time.perf_counter()
        for _ in range(n):
            built.step(*next(batches))
        synchronize(plan.device)
        return time.perf_counter() - start

    timed(3)
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:  # untimed warm-up
        timed(1)
    n = max(3, round(0.1 / (timed(5) / 5)))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "w":
            break
        print(n * per_batch / timed(n), flush=True)


def _pair(model: str, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """An A/A pair in turns, ABBA order; each side's window rates."""
    sides = [subprocess.Popen([sys.executable, __file__, "worker", model], env=env, cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in sides:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"a {model} worker did not start")
        rates: list[list[float]] = [[], []]
        for i in range(WINDOWS):
            for s in ((0, 1) if i % 2 == 0 else (1, 0)):
                sides[s].stdin.write("w\n")
                sides[s].stdin.flush()
                rates[s].append(float(sides[s].stdout.readline()))
        return rates[0], rates[1]
    finally:
        for p in sides:
            p.kill()
            p.wait()


def run(out: Path, pairs: int, cond: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    neighbour = None
    if cond != "quiet":
        neighbour = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "neighbour.py"),
                                      cond, "--max-s", "3600"])
        time.sleep(0.5)
    try:
        for i in range(pairs):
            for model in MODELS:
                a, b = _pair(model, env)
                (out / f"{cond}-{model}-{i:02d}.json").write_text(
                    json.dumps({"model": model, "cond": cond, "a": a, "b": b}))
            print(i, time.strftime("%H:%M:%S"), flush=True)
    finally:
        if neighbour is not None:
            neighbour.send_signal(signal.SIGTERM)
            neighbour.wait()


def _q90(xs: list[float]) -> float:
    from bench.measure.throughput import window_estimates
    return window_estimates(xs)["q90"]


def _records(where: Path) -> list[dict]:
    """A `run` folder's files, or one JSON file of them by name (docs/campaigns/)."""
    if where.is_file():
        return [d for _, d in sorted(json.loads(where.read_text()).items())]
    return [json.loads(f.read_text()) for f in sorted(where.glob("*.json"))]


def read(folder: Path) -> None:
    per = collections.defaultdict(list)
    for d in _records(folder):
        turns = statistics.median(math.log(a / b) for a, b in zip(d["a"], d["b"], strict=True))
        per[(d["cond"], d["model"])].append((math.log(_q90(d["a"])), math.log(_q90(d["b"])),
                                             turns))
    print("| condition | model | pairs | sd log(q90 A / q90 B), in turns | sd median over turns"
          " of log(A / B) | sd log(q90 A / q90 B), across pairs |")
    print("|---|---|---|---|---|---|")
    for (cond, model), rows in sorted(per.items()):
        within = [a - b for a, b, _ in rows]
        across = [rows[i][0] - rows[i + 1][1] for i in range(len(rows) - 1)]

        def sd(xs: list[float]) -> str:
            return f"{100 * statistics.stdev(xs):.1f}%" if len(xs) > 1 else "-"

        print(f"| {cond} | {model} | {len(rows)} | {sd(within)} | {sd([t for *_, t in rows])} "
              f"| {sd(across)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--pairs", type=int, default=8)
    r.add_argument("--cond", default="quiet")
    sub.add_parser("read").add_argument("folder", type=Path)
    sub.add_parser("worker").add_argument("model", choices=MODELS)  # internal: one side
    args = p.parse_args()
    if args.verb == "run":
        run(args.out, args.pairs, args.cond)
    elif args.verb == "read":
        read(args.folder)
    else:
        worker(args.model)


if __name__ == "__main__":
    main()
