"""Pilot: does pinning both sides of a round in turns to one CPU make them see the same machine?

    python benchmarks/pin_pilot.py run --out /tmp/pin --pairs 6 --models cnn,fc,lenet
    python benchmarks/pin_pilot.py read /tmp/pin
    python benchmarks/pin_pilot.py read docs/campaigns/pin-pilot-2026-12-03.json

Why: `bench ci --against` rounds in turns read 3-5x noisier than `lockstep_pilot.py`'s A/A
pairs (docs/ci.md). A side's window rate jumps between two levels, and the two sides are often
on different levels at once: the scheduler places each process on one vCPU or the other, and
the VM's two vCPUs run at different speeds (other tenants on their physical cores). Pinned to
one CPU, the two sides of a pair can only ever run where the other just ran.

`run` takes, per (pair, model), interleaved in a shuffled order, three A/A pairs: `harness` (a
round of the real ci suite, `bench suite ci --models M`, two processes of this checkout in
turns via `bench.ci.rounds.run_pair`), `harness-pinned` (the same, both on the last allowed CPU,
`rounds.pair_cpus`), and `pilot-pinned` (`lockstep_pilot`'s pair under the same pinning). `read`
gives per (model, variant) the median over pairs of the sd over turns of log(A / B), and the sd
over pairs of the median over turns of log(A / B) (the figure the gate's verdict is made of).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
VARIANTS = ("harness", "harness-pinned", "pilot-pinned")


def _harness_pair(model: str, where: Path, cpus: frozenset[int] | None) -> tuple[list, float]:
    """One round of the ci suite's `model` as two sides of this checkout in turns; per turn
    log(A / B), and A's median window seconds."""
    from bench.ci.rounds import RoundSpec, Side, run_pair
    from bench.gate.paired import turn_rates

    data = os.environ.get("BENCH_DATA_DIR")
    sides = [Side(ROOT, RoundSpec("ci", "cpu", data, models=(model,)).command(where / s),
                  dict(os.environ), s, where / f"{s}.log") for s in ("a", "b")]
    run_pair(*sides, cpus=cpus)
    docs = [json.loads(next((where / s).glob(f"*-{model}-*.json")).read_text()) for s in "ab"]
    a, b = (turn_rates(d) for d in docs)
    seconds = [w["seconds"] for w in docs[0]["windows"] if not w["warmup"]]
    return [math.log(a[k] / b[k]) for k in sorted(a.keys() & b.keys())], \
        statistics.median(seconds)


def _pilot_pair(model: str, cpus: frozenset[int]) -> tuple[list, float]:
    import lockstep_pilot

    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # the workers inherit it
    try:
        a, b = lockstep_pilot._pair(model, dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        os.sched_setaffinity(0, allowed)
    return [math.log(x / y) for x, y in zip(a, b, strict=True)], 0.1


def run(out: Path, pairs: int, models: list[str]) -> None:
    from bench.ci.rounds import pair_cpus

    out.mkdir(parents=True, exist_ok=True)
    cpus = pair_cpus("cpu")
    if cpus is None:
        raise SystemExit("pin_pilot: this platform cannot pin a process to a CPU")
    for i in range(pairs):
        for model in models:
            order = list(VARIANTS)
            random.Random(f"{i}-{model}").shuffle(order)
            for v in order:
                where = out / f"{v}-{model}-{i:02d}"
                if v == "pilot-pinned":
                    turns, window = _pilot_pair(model, cpus)
                else:
                    turns, window = _harness_pair(model, where,
                                                  cpus if v == "harness-pinned" else None)
                (out / f"{v}-{model}-{i:02d}.json").write_text(json.dumps(
                    {"variant": v, "model": model, "turns": turns, "window_s": window}))
        print(i, time.strftime("%H:%M:%S"), flush=True)


def table(records: list[dict]) -> list[str]:
    """The markdown table `read` prints (pure: tested)."""
    per = collections.defaultdict(list)
    for d in records:
        if len(d["turns"]) > 1:
            per[(d["model"], d["variant"])].append(d)
    lines = ["| model | variant | pairs | turns (median) | window s (median) | sd over turns of"
             " log(A/B), median | sd over pairs of the median over turns |",
             "|---|---|---|---|---|---|---|"]
    for (model, variant), ds in sorted(per.items()):
        within = statistics.median(statistics.stdev(d["turns"]) for d in ds)
        medians = [statistics.median(d["turns"]) for d in ds]
        across = f"{100 * statistics.stdev(medians):.1f}%" if len(medians) > 1 else "-"
        lines.append(f"| {model} | {variant} | {len(ds)} | "
                     f"{statistics.median(len(d['turns']) for d in ds):g} | "
                     f"{statistics.median(d['window_s'] for d in ds):.3f} | "
                     f"{100 * within:.1f}% | {across} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--pairs", type=int, default=6)
    r.add_argument("--models", default="cnn,fc,lenet")
    sub.add_parser("read").add_argument("folder", type=Path)
    args = p.parse_args()
    if args.verb == "run":
        run(args.out, args.pairs, args.models.split(","))
    else:
        from lockstep_pilot import _records  # a run folder or a record file, as there

        print("\n".join(table(_records(args.folder))))


if __name__ == "__main__":
    main()
