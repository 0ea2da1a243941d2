"""Measure the regression gate's error rates on this machine: A/A false alarms and the share of
real slowdowns caught, for the stored-baseline mode and for `--against REF`.

    python benchmarks/gate_campaign.py stored  --pairs 20 --out results/gate-stored
    python benchmarks/gate_campaign.py against --pairs 20 --out results/gate-against
    python benchmarks/gate_campaign.py stored --neighbour periodic --regression code ...
    python benchmarks/gate_campaign.py estimators results/gate-stored  # which window estimator
    python benchmarks/gate_campaign.py summary results/gate-stored     # re-print the tables

Both modes first run `bench ci --calibrate` once (the runner's noise, on this machine). `stored`:
then `pairs` times an A/A `bench ci` (same code) and a `bench ci` with `BENCH_TEST_SLOWDOWN=0.10`
(every timed iteration made 10% longer with busy work), alternately, against that baseline.
`against`: the same pairs with `bench ci --against HEAD --baseline <calibration>` (the checkout
must be clean). Each job is also gated on raw images/s from its own result files (no probe).
`--regression code` slows the candidate with a real code change instead of the knob: a git
worktree of HEAD whose training step also runs the model forward on a third of its batch
(`REGRESSION_ANCHOR` in bench/measure/engine.py; committed there, so `--against` sees a clean tree).
`--neighbour PROFILE` runs benchmarks/neighbour.py (steady, periodic, random) for the whole
campaign, calibration included, as a CI owner's runner would have it.
A false alarm is an A/A job that exits 1; a catch is a slowed job that exits 1. Exit 3 (could
not gate) is counted apart. Nothing else may run on the machine meanwhile: the figures are this
machine's noise.

`estimators`: from the A/A runs' stored windows, the run-to-run spread (sd of log images/s) of
each candidate estimator per configuration: the evidence behind
`bench.measure.throughput.ESTIMATOR`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOWDOWN = "0.10"
JOB_TIMEOUT_S = 40 * 60
# The real regression: the training step also runs the model forward on a third of its batch.
REGRESSION_FILE = "bench/measure/engine.py"
REGRESSION_ANCHOR = "            out = model(x)\n"
REGRESSION_LINES = ("            with torch.no_grad():  # gate campaign: a real regression\n"
                    "                model(x[: max(1, x.shape[0] // 3)])\n")


def _bench(*args: str, slowdown: str | None = None, cwd: Path = ROOT) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_TEST_SLOWDOWN"}
    if slowdown:
        env["BENCH_TEST_SLOWDOWN"] = slowdown
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          timeout=JOB_TIMEOUT_S, capture_output=True, text=True)
    if proc.returncode not in (0, 1, 3):
        sys.exit(f"bench {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode, time.monotonic() - t


def _raw_gate(out: Path, baseline: Path, against: bool) -> int:
    """The exit status the same job would have had gated on raw images/s (no machine probe),
    from the same result files and calibration: the probe's effect on the same data."""
    from bench.ci.metric import noise_table
    from bench.gate.compare import compare_runs
    from bench.results import docs_rows, expand_paths, read_baseline, read_result

    def docs(folder: Path) -> list[dict]:  # the runs only: not gate.json, nor gates/ verdicts
        return [read_result(p) for p in expand_paths([str(folder)])
                if p.name[:1].isdigit() and p.parent.name != "gates"]

    stored, cal = read_baseline(baseline) if baseline.exists() else ([], None)
    if against:  # one job's rounds: out/against/<stamp>/{baseline,candidate}/
        base = [d for f in out.glob("against/*/baseline") for d in docs(f)]
        cand = [d for f in out.glob("against/*/candidate") for d in docs(f)]
    else:
        base, cand = stored, docs(out)
    cmp = compare_runs(docs_rows(base), docs_rows(cand), 0.05, 0.05,
                         noise_table(cal, "images_per_s"), "images_per_s")
    return cmp.exit_code


@contextmanager
def regressed_tree() -> Iterator[Path]:
    """A worktree of HEAD with the real regression committed in it; removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="gate-regression-"))
    tree = tmp / "tree"
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(tree), "HEAD"], check=True,
                   capture_output=True)
    try:
        target = tree / REGRESSION_FILE
        text = target.read_text()
        if text.count(REGRESSION_ANCHOR) != 1:
            sys.exit(f"gate_campaign: {REGRESSION_FILE} no longer has one {REGRESSION_ANCHOR!r}"
                     " line: update REGRESSION_ANCHOR")
        target.write_text(text.replace(REGRESSION_ANCHOR, REGRESSION_ANCHOR + REGRESSION_LINES))
        subprocess.run(["git", "-C", str(tree), "-c", "user.name=gate-campaign", "-c",
                        "user.email=gate-campaign@localhost", "commit", "-qam",
                        "gate campaign: a real regression"], check=True, capture_output=True)
        yield tree
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def neighbour(profile: str | None) -> Iterator[None]:
    """benchmarks/neighbour.py PROFILE for the duration (nothing when profile is None)."""
    if profile is None:
        yield
        return
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "neighbour.py"), profile])
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _job(args: argparse.Namespace, kind: str, i: int, extra: list[str]) -> dict:
    out = Path(args.out) / f"{kind}-{i:02d}"
    code_slow = kind == "slow" and args.tree is not None  # the regressed tree's own checkout
    code, seconds = _bench("ci", "--out", str(out), "--json", str(out / "gate.json"), *extra,
                           *args.bench_args, cwd=args.tree if code_slow else ROOT,
                           slowdown=SLOWDOWN if kind == "slow" and not code_slow else None)
    gate = json.loads((out / "gate.json").read_text()) if (out / "gate.json").exists() else {}
    rows = [{"config": r["label"], "ratio": r["ips_ratio"], "verdict": r["verdict"],
             "raw_ratio": r["cand"]["images_per_s"] / r["base"]["images_per_s"],
             "detectable": r["gate"]["detectable"],
             "noisy": (r["base"].get("noisy", 0), r["cand"].get("noisy", 0)),
             "n": (r["gate"]["n_base"], r["gate"]["n_cand"])} for r in gate.get("rows", [])]
    raw_exit = _raw_gate(out, Path(args.out) / "baseline.json", "--against" in extra)
    rounds = max((r["n"][1] for r in rows), default=0)
    print(f"{kind} {i:2d}: exit {code} (raw images/s: {raw_exit}) in {seconds:.0f}s, "
          f"{rounds} rounds  "
          + "  ".join(f"{r['ratio']:.3f}{'!' if r['verdict'] == 'regression' else ''}"
                      f"/{r['raw_ratio']:.3f}" for r in rows), flush=True)
    return {"kind": kind, "job": i, "exit": code, "raw_exit": raw_exit, "seconds": seconds,
            "rounds": rounds, "metric": gate.get("metric"), "rows": rows}


def campaign(args: argparse.Namespace) -> None:
    args.out = str(Path(args.out).resolve())  # jobs of the regressed tree run from its folder
    Path(args.out).mkdir(parents=True, exist_ok=True)
    args.head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                               capture_output=True, text=True).stdout.strip()
    with neighbour(args.neighbour):
        if args.regression == "code":
            with regressed_tree() as tree:
                args.tree = tree
                _campaign(args)
        else:
            args.tree = None
            _campaign(args)


def _campaign(args: argparse.Namespace) -> None:
    baseline = str(Path(args.out) / "baseline.json")  # the runner's calibration, both modes
    rounds = ["--rounds", str(args.rounds)] if args.rounds else []
    if args.keep_calibration and Path(baseline).exists():
        print(f"calibration: kept {baseline}", flush=True)
    elif args.no_calibration:
        print("calibration: none (--no-calibration)", flush=True)
    else:
        code, seconds = _bench("ci", "--calibrate", *rounds, "--baseline", baseline, "--out",
                               str(Path(args.out) / "calibration"), *args.bench_args)
        print(f"calibration: exit {code} in {seconds:.0f}s", flush=True)
    # --against the commit the campaign started from: HEAD here, the regressed tree's parent there
    extra = ([] if args.no_calibration else ["--baseline", baseline]) + (
        ["--against", args.head] if args.mode == "against" else [])
    jobs = []
    for i in range(args.pairs):
        for kind in ("aa", "slow") if i % 2 == 0 else ("slow", "aa"):
            jobs.append(_job(args, kind, i, extra))
            (Path(args.out) / "jobs.json").write_text(json.dumps(jobs, indent=1))
    print(summary(jobs, args.mode))
    print(per_config(jobs, Path(baseline), args.mode))


def summary(jobs: list[dict], mode: str) -> str:
    aa = [j for j in jobs if j["kind"] == "aa"]
    slow = [j for j in jobs if j["kind"] == "slow"]
    count = lambda js, code: sum(j["exit"] == code for j in js)  # noqa: E731
    ratios = lambda js: [r["ratio"] for j in js for r in j["rows"]]  # noqa: E731
    raw = lambda js: [r["raw_ratio"] for j in js for r in j["rows"]]  # noqa: E731
    raw_exits = lambda js, code: sum(j.get("raw_exit") == code for j in js)  # noqa: E731
    metric = next((j.get("metric") for j in jobs if j.get("metric")), "images_per_s")
    lines = [f"## gate campaign: {mode} (gated on {metric})", "",
             "| jobs | count | exit 1 (regression) | exit 3 (not gated) | exit 0 | "
             "gate ratio median (min-max) | raw images/s ratio median (min-max) | "
             "raw-images/s gate: exit 1 / 3 / 0 | job s median (max) | rounds median (max) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, js in (("A/A", aa), ("slowed", slow)):
        rs, rr = sorted(ratios(js)) or [math.nan], sorted(raw(js)) or [math.nan]
        lines.append(f"| {name} | {len(js)} | {count(js, 1)} | {count(js, 3)} | {count(js, 0)} "
                     f"| {statistics.median(rs):.3f} ({rs[0]:.3f}-{rs[-1]:.3f}) "
                     f"| {statistics.median(rr):.3f} ({rr[0]:.3f}-{rr[-1]:.3f}) "
                     f"| {raw_exits(js, 1)} / {raw_exits(js, 3)} / {raw_exits(js, 0)} "
                     f"| {statistics.median(j['seconds'] for j in js):.0f} "
                     f"({max(j['seconds'] for j in js):.0f}) "
                     f"| {statistics.median(j.get('rounds', 0) for j in js):g} "
                     f"({max(j.get('rounds', 0) for j in js)}) |")
    return "\n".join(lines)


def per_config(jobs: list[dict], baseline: Path, mode: str) -> str:
    """Per configuration: verdicts, and the A/A jobs' spread of the gate's ratio next to the
    spread the calibration in `baseline` predicts for it (its sd of one run x sqrt(1/n_base +
    1/n_cand); n_base is the calibration's runs in stored mode, the rounds with --against)."""
    from bench.ci.metric import noise_table
    from bench.results import config_label, read_baseline

    _, cal = read_baseline(baseline) if baseline.exists() else ([], {"configs": [],
                                                                      "repeats": 0})
    metric = next((j.get("metric") for j in jobs if j.get("metric")), "images_per_s")
    sigma = {config_label(k): v for k, v in noise_table(cal, metric).items()}
    runs = {c["label"]: c["runs"] for c in cal["configs"]}
    n = {r["config"]: r.get("n") or ((runs.get(r["config"], 8) if mode == "stored"
                                      else cal["repeats"]), cal["repeats"])
         for j in jobs for r in j["rows"]}
    lines = ["| configuration | A/A verdicts | slowed verdicts | A/A sd of log ratio | "
             "calibration predicts |", "|---|---|---|---|---|"]
    for label in sorted({r["config"] for j in jobs for r in j["rows"]}):
        def rows(kind: str, label: str = label) -> list[dict]:
            return [r for j in jobs if j["kind"] == kind for r in j["rows"]
                    if r["config"] == label]

        def verdicts(kind: str) -> str:
            names = [r["verdict"] for r in rows(kind)]
            return ", ".join(f"{v} {names.count(v)}" for v in sorted(set(names)))

        logs = [math.log(r["ratio"]) for r in rows("aa")]
        spread = f"{statistics.stdev(logs):.2%}" if len(logs) > 1 else "-"
        nb, nc = n[label]
        predicted = (f"{sigma[label] * math.sqrt(1 / nb + 1 / nc):.2%}"
                     if label in sigma else "-")
        lines.append(f"| {label} | {verdicts('aa')} | {verdicts('slow')} | {spread} | "
                     f"{predicted} |")
    return "\n".join(lines)


def estimators(folder: str) -> None:
    """Run-to-run sd of log images/s per estimator and configuration, over A/A runs."""
    from bench.measure.throughput import window_estimates
    from bench.results import config_label, expand_paths, read_result, run_key

    per: dict[tuple[str, str], list[float]] = {}
    paths = [p for p in expand_paths([folder])  # the runs: not gate.json, jobs.json, gates/
             if p.name[:1].isdigit() and p.parent.name != "gates"]
    for doc in map(read_result, paths):
        if doc.get("status") != "ok" or (doc.get("config") or {}).get("measure") != "throughput":
            continue
        if "/slow-" in str(doc.get("_path")):
            continue
        rates = [w["images"] / w["seconds"] for w in doc["windows"]
                 if not w["warmup"] and w["seconds"] > 0]
        label = config_label(run_key(doc["config"]))
        for name, value in window_estimates(rates).items():
            per.setdefault((label, name), []).append(math.log(value))
    names = ["median", "q75", "q90", "max", "trimmed_mean"]
    labels = sorted({k[0] for k in per})
    print("| configuration | runs | " + " | ".join(f"sd {n}" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for label in labels:
        cells = [f"{statistics.stdev(per[(label, n)]):.2%}" for n in names]
        print(f"| {label} | {len(per[(label, names[0])])} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("stored", "against", "estimators", "summary"))
    p.add_argument("folder", nargs="?", help="estimators, summary: a campaign's --out folder")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=None,
                   help="calibration rounds (default: bench ci's)")
    p.add_argument("--out", default="results/gate-campaign")
    p.add_argument("--keep-calibration", action="store_true",
                   help="reuse the calibration already in --out (an interrupted campaign)")
    p.add_argument("--no-calibration", action="store_true",
                   help="against: no `bench ci --calibrate` first (rounds in turns are gated "
                        "on their own pairs; the calibration only feeds the raw-figure gate)")
    p.add_argument("--regression", choices=("knob", "code"), default="knob",
                   help="knob: BENCH_TEST_SLOWDOWN=0.10; code: a real change in a worktree")
    p.add_argument("--neighbour", choices=("steady", "periodic", "random"), default=None,
                   help="a CPU-bound neighbour for the whole campaign (benchmarks/neighbour.py)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.bench_args = argv[cut + 1:]  # after --: more `bench ci` flags (--device cpu ...)
    if args.mode == "estimators":
        estimators(args.folder or args.out)
    elif args.mode == "summary":  # re-print a finished (or stopped) campaign's tables
        folder = Path(args.folder or args.out)
        jobs = json.loads((folder / "jobs.json").read_text())
        mode = "against" if any(folder.glob("*/against")) else "stored"
        print(summary(jobs, mode))
        print(per_config(jobs, folder / "baseline.json", mode))
    else:
        campaign(args)


if __name__ == "__main__":
    main()
