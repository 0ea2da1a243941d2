"""Simulate the sequential CI gate (`bench.gate.sequential`, the loop of `bench.ci.looks`) at
given per-round noise levels: A/A false alarms and undecided jobs, and the share of slowdowns
caught, before spending hours of campaigns on a machine.

    python benchmarks/gate_simulation.py --sigmas 2.4,3.8,1.8,4.9 --jobs 2000

Each configuration's rounds are independent normal draws on the log scale (noise `sigma` per
round); the calibration is `--calibration` such rounds, its sample sd the calibrated sigma. A job
runs `--repeats` rounds, then one round at a time of the undecided configurations up to
`--max-repeats` (no time cap: that is the round cap in rounds). A job's outcome is "regression"
when any configuration regressed, else "not gated" when any stayed undecided, else "ok", as
`bench ci`'s exit status. What this cannot show: noise that is not independent from round to
round (a drift within a job, a calibration from a quieter day); the campaigns measure that.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics

from bench.gate.sequential import DECIDED, Looks, decide


def _configuration(rng: random.Random, sigma: float, slowdown: float, args: argparse.Namespace
                   ) -> tuple[str, int]:
    base = [rng.gauss(0.0, sigma) for _ in range(args.calibration)]
    cal = statistics.stdev(base)
    looks = Looks(args.max_repeats - args.repeats + 1, sigma_df=args.calibration - 1)
    shift = math.log1p(-slowdown)
    cand = [rng.gauss(shift, sigma) for _ in range(args.repeats)]
    alpha = args.alpha / len(args.sigmas)
    while True:
        verdict = decide([math.exp(x) for x in base], [math.exp(x) for x in cand],
                         args.threshold, alpha, cal, looks).verdict
        if verdict in DECIDED or len(cand) >= args.max_repeats:
            return verdict, len(cand)
        cand.append(rng.gauss(shift, sigma))


def job(rng: random.Random, slowdowns: list[float], args: argparse.Namespace) -> tuple[str, int]:
    """One job: its outcome (bench ci's) and the rounds it took."""
    results = [_configuration(rng, s, d, args) for s, d in zip(args.sigmas, slowdowns,
                                                              strict=True)]
    verdicts = [v for v, _ in results]
    outcome = ("regression" if "regression" in verdicts else
               "not gated" if "not gated" in verdicts else "ok")
    return outcome, max(n for _, n in results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sigmas", default="2.4,3.8,1.8,4.9",
                   help="per-round noise of each configuration, in %% (sd of log)")
    p.add_argument("--slowdowns", default="2,20,16,14",
                   help="the regression's slowdown of each configuration, in %%")
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--calibration", type=int, default=16)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--max-repeats", type=int, default=12)
    p.add_argument("--threshold", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=26)
    args = p.parse_args()
    args.sigmas = [float(x) / 100 for x in args.sigmas.split(",")]
    regression = [float(x) / 100 for x in args.slowdowns.split(",")]
    rng = random.Random(args.seed)
    print("| jobs | count | regression | not gated | ok | rounds median (max) |")
    print("|---|---|---|---|---|---|")
    for name, slow in (("A/A", [0.0] * len(args.sigmas)), ("regressed", regression),
                       ("threshold exactly", [args.threshold] * len(args.sigmas))):
        out = [job(rng, slow, args) for _ in range(args.jobs)]
        share = {v: sum(o == v for o, _ in out) / len(out) for v in
                 ("regression", "not gated", "ok")}
        rounds = [n for _, n in out]
        print(f"| {name} | {len(out)} | {share['regression']:.1%} | {share['not gated']:.1%} "
              f"| {share['ok']:.1%} | {statistics.median(rounds):g} ({max(rounds)}) |")


if __name__ == "__main__":
    main()
