"""Pilot: would a copy of the model itself track the machine's speed better than the probe?

    python benchmarks/twin_probe.py run --out /tmp/twin --reps 4 --conds quiet,steady
    python benchmarks/twin_probe.py read /tmp/twin

Why: a stored baseline is compared through images/s ÷ probe rate (bench/measure/probe.py), and
on this VM the ci models slow down by more or less than the generic probe when the machine's
speed moves (docs/ci.md: cnn 1.37 times as much, vgg16 0.58). A *twin*, a copy of the model
trained forward and backward on one fixed batch (no optimiser), runs the same kernels at the same
shapes, so it should move as the model does. This measures whether it does, before anyone builds
it into the gate (where it would have to be frozen at calibration time, so that a change in the
model's code is not cancelled too).

`run` starts one fresh process per (repeat, condition, model): the ci suite's configuration of
that model (bench/suites/policy.py), an untimed second of warm-up, then `WINDOWS` times: a
training window (~0.1 s), a probe window and a twin window (~0.025 s each). A condition other
than `quiet` runs `benchmarks/neighbour.py <condition>` beside the process. `read` gives per
model the spread between processes (sd of log, %) of the q90 images/s raw, ÷ probe and ÷ twin,
and how much each moved under each neighbour against `quiet`.
"""

from __future__ import annotations

import argparse
import collections
import copy
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


def measure(model_name: str, out: str) -> None:
    """One process: paired (training, probe, twin) window rates of one ci configuration."""
    import torch
    import torch.nn.functional as F

    from bench.host.device import synchronize
    from bench.measure import runner
    from bench.measure.engine import autocast_context, endless
    from bench.measure.probe import ReferenceProbe
    from bench.suites.policy import suite_configs

    cfg = next(c for c in suite_configs("ci", on_gpu=False)[0] if c.model == model_name)
    plan = runner.resolve(cfg)
    built = runner.build(plan)
    batches = endless(built.train_loader)
    twin = copy.deepcopy(built.model)
    x0, y0 = (t.clone() for t in next(batches))

    def twin_step() -> None:
        with autocast_context(plan.device, built.recipe.precision):
            loss = F.cross_entropy(twin(x0).float(), y0)
        twin.zero_grad(set_to_none=True)
        loss.backward()

    def steps_in(seconds: float, fn) -> int:
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        return n

    def timed(n: int, fn) -> tuple[float, float]:
        """Wall and CPU seconds (every thread of this process) for n calls, the device synced
        at both edges."""
        synchronize(plan.device)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        synchronize(plan.device)
        return time.perf_counter() - start, time.process_time() - cpu

    steps_in(1.0, lambda: (built.step(*next(batches)), twin_step()))  # warm-up, untimed
    train_n = max(3, round(0.1 / (0.3 / steps_in(0.3, lambda: built.step(*next(batches))))))
    twin_n = max(2, round(0.025 / (0.2 / steps_in(0.2, twin_step))))
    probe = ReferenceProbe(plan.device)
    probe.calibrate(0.025)
    rows = []
    for _ in range(WINDOWS):
        wall, cpu = timed(train_n, lambda: built.step(*next(batches)))
        probe_rate = probe.window()
        rows.append((train_n * x0.shape[0] / wall, probe_rate, twin_n / timed(twin_n, twin_step)[0],
                     train_n * x0.shape[0] / max(cpu, 1e-9)))
    Path(out).write_text(json.dumps({"model": model_name, "threads": torch.get_num_threads(),
                                     "rows": rows}))


def run(out: Path, reps: int, conds: list[str]) -> None:
    """Interleaved: every repeat runs every condition, every condition every model."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for rep in range(reps):
        for cond in conds:
            neighbour = None
            if cond != "quiet":
                neighbour = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" /
                                                                  "neighbour.py"), cond,
                                              "--max-s", "600"])
                time.sleep(0.5)
            try:
                for model in MODELS:
                    subprocess.run([sys.executable, __file__, "one", model,
                                    str(out / f"{cond}-{model}-{rep:02d}.json")],
                                   env=env, cwd=ROOT, check=False)
            finally:
                if neighbour is not None:
                    neighbour.send_signal(signal.SIGTERM)
                    neighbour.wait()
            print(rep, cond, time.strftime("%H:%M:%S"), flush=True)


def _q90(xs: list[float]) -> float:
    """The gate's estimator of a run from its windows (bench/measure/throughput.py)."""
    from bench.measure.throughput import window_estimates
    return window_estimates(xs)["q90"]


def read(folder: Path) -> None:
    """Per model: spread between processes of raw, ÷ probe and ÷ twin, and each neighbour's
    shift against quiet (%)."""
    per = collections.defaultdict(list)
    for f in sorted(folder.glob("*.json")):
        d = json.loads(f.read_text())
        ips, probe, twin = (math.log(_q90([r[i] for r in d["rows"]])) for i in range(3))
        row = [f.name.split("-")[0], ips, ips - probe, ips - twin]
        if all(len(r) > 3 for r in d["rows"]):  # images per CPU-second, where recorded
            row.append(math.log(_q90([r[3] for r in d["rows"]])))
        per[d["model"]].append(tuple(row))
    print("| model | processes | figure | sd between processes | shift under neighbour |")
    print("|---|---|---|---|---|")
    for model, rows in sorted(per.items()):
        labels = [(1, "images/s"), (2, "÷ probe"), (3, "÷ twin"), (4, "images/CPU-s")]
        for k, label in labels[:min(len(r) for r in rows) - 1]:
            vals = [r[k] for r in rows]
            means = {c: statistics.fmean(r[k] for r in rows if r[0] == c) for c, *_ in rows}
            shifts = " ".join(f"{c} {100 * (math.exp(m - means['quiet']) - 1):+.1f}%"
                              for c, m in means.items() if c != "quiet" and "quiet" in means)
            sd = 100 * statistics.stdev(vals) if len(vals) > 1 else float("nan")
            print(f"| {model} | {len(rows)} | {label} | {sd:.1f}% | {shifts} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--reps", type=int, default=4)
    r.add_argument("--conds", default="quiet,steady")
    sub.add_parser("read").add_argument("folder", type=Path)
    one = sub.add_parser("one")  # internal: one process
    one.add_argument("model", choices=MODELS)
    one.add_argument("out")
    args = p.parse_args()
    if args.verb == "run":
        run(args.out, args.reps, args.conds.split(","))
    elif args.verb == "read":
        read(args.folder)
    else:
        measure(args.model, args.out)


if __name__ == "__main__":
    main()
