"""`bench ci`: measure the "ci" suite and gate it, against a stored baseline or a git ref.

Three ways to gate (docs/ci.md has the measured false-alarm and detection rates of each):
- stored baseline: `results/baselines/<device-slug>.json` (`--record-baseline` writes it,
  `--calibrate` writes it with the runner's measured noise per configuration);
- `--against REF`: REF's code in a temporary git worktree and this checkout's code measured
  alternately in the same job (no stored baseline, no drift between the two sides);
- the suite's runs are interleaved (every configuration once per round), `--repeats` rounds.

A baseline belongs to one device; comparing with another device's is bad input (exit 2).
Exit status: 0 pass; 1 regression or a failed run; 2 bad input; 3 could not gate (no
baseline, or a configuration too noisy for the threshold: the row says what it needs).
Every output (text, $GITHUB_STEP_SUMMARY markdown, `--json`) shows per configuration the ratio,
its bounds, the verdict and the slowdown the gate could detect.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.ci.looks import Caps, run_looks
from bench.ci.metric import METRIC_NAMES, RAW, calibration_df, gate_metric, noise_table
from bench.ci.rounds import RoundSpec, run_round
from bench.defaults import EXIT_UNGATED, MAX_REPEATS, PACKAGE_ROOT
from bench.errors import BenchError
from bench.gate.compare import (
    Comparison,
    add_gate_flags,
    compare_runs,
    format_json,
    format_markdown,
    format_text,
    parse_alpha,
    parse_threshold,
)
from bench.gate.stats import detectable_slowdown, log_sigma, per_config_alpha, repeats_needed
from bench.history.gates import write_verdicts
from bench.history.hooks import add_history_flag, warn_history_flag
from bench.results import (
    BASELINES_SUBDIR,
    DEFAULT_RESULTS_DIR,
    Key,
    ResultDoc,
    atomic_write_text,
    baseline_runs_dir,
    config_label,
    device_slug,
    docs_rows,
    flatten,
    fmt_num,
    markdown_table,
    provenance,
    read_baseline,
    read_docs,
    run_key,
    write_baseline,
)
from bench.results.aggregate import column, group
from bench.results.escape import md, term
from bench.results.schema import new_batch_id
from bench.spec.runspec import add_run_flags

SUITE = "ci"
BASELINE_DIR = Path(DEFAULT_RESULTS_DIR) / BASELINES_SUBDIR
DEFAULT_REPEATS = 4  # rounds before the first look
DEFAULT_MAX_REPEATS = 12  # rounds at most (the undecided configurations only, after the first)
DEFAULT_TIME_CAP_S = 300.0  # no round starts that would end the job later than this
DEFAULT_CALIBRATION_ROUNDS = 16
ONE_PROCESS = False  # the default of --one-process (True in tests whose suite is in-process)


def baseline_path(device_label: str, folder: Path = BASELINE_DIR) -> Path:
    return folder / f"{device_slug(device_label)}.json"


def append_step_summary(markdown: str) -> None:
    """Append to the GitHub Actions job summary when running there (the file is append-only)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        raise BenchError(f"cannot append to $GITHUB_STEP_SUMMARY {path}: {exc}") from None


def device_of(docs: Sequence[ResultDoc]) -> str:
    labels = sorted({flatten(d)["device_label"] for d in docs})
    if len(labels) != 1:
        raise BenchError(term(f"the ci suite ran on {len(labels)} devices "
                              f"({', '.join(labels)}); a baseline belongs to one"))
    return labels[0]


def _failures(docs: Sequence[ResultDoc]) -> list[str]:
    return [f"{config_label(run_key(d.get('config') or {}))}: status {d.get('status')}"
            + (f" ({d['message']})" if d.get("message") else "")
            for d in docs if d.get("status") != "ok"]


def _refuse_failures(docs: Sequence[ResultDoc]) -> None:
    failures = _failures(docs)
    if failures:
        raise BenchError(term(f"{len(failures)} ci run(s) failed, not recording a baseline:"
                              f" {'; '.join(failures)}"))


def record_baseline(docs: Sequence[ResultDoc], path: Path,
                    calibration: dict[str, Any] | None = None) -> None:
    """Replace the baseline atomically; refuse an incomplete one, it would hide configurations."""
    _refuse_failures(docs)
    write_baseline(path, docs, device_of(docs), calibration)


# ----------------------------------------------------------------------------- calibration
def _by_key(docs: Sequence[ResultDoc], metric: str) -> dict[Key, list[float]]:
    """The positive figures of `metric` of the ok runs, per configuration (none: left out)."""
    ok = [d for d in docs if d.get("status") == "ok"]
    groups = group(ok, lambda d: run_key(d.get("config") or {}))
    values = {key: column([d.get("summary") or {} for d in runs], metric, positive=True)
              for key, runs in groups.items()}
    return {key: v for key, v in values.items() if v}


def calibration_of(docs: Sequence[ResultDoc], threshold: float, alpha: float,
                   repeats: int) -> dict[str, Any]:
    """Per configuration: run-to-run noise (sd of the log of the gate's figure over the A/A
    rounds; `sigmas` has it for images/s too, the fallback figure), the slowdown a gate
    with `repeats` runs could detect, and the runs per side it needs for `threshold`."""
    metric = gate_metric(docs)
    groups = {m: _by_key(docs, m) for m in {metric, RAW}}
    per_config = per_config_alpha(alpha, len(groups[metric]))
    rows = []
    for key, values in sorted(groups[metric].items(), key=lambda kv: config_label(kv[0])):
        sigmas = {m: log_sigma(g.get(key, [])) for m, g in groups.items()}
        sigma = sigmas[metric]
        if sigma is None:
            raise BenchError(f"calibration needs 2+ runs of {config_label(key)}")
        detectable = detectable_slowdown(sigma, len(values), repeats, per_config)
        rows.append({"key": list(key), "label": config_label(key), "runs": len(values),
                     "sigma": sigma, "sigmas": sigmas, "detectable": detectable,
                     "needed_repeats": repeats_needed(sigma, threshold, per_config)})
    return {"threshold": threshold, "alpha": alpha, "repeats": repeats, "metric": metric,
            "configs": rows}




def _calibration_markdown(cal: dict[str, Any]) -> str:
    metric = cal.get("metric", RAW)
    extra = metric != RAW  # also show the images/s noise (the figure without the probe)
    rows = [[c["label"], c["runs"], f"±{c['sigma']:.2%}",
             *([f"±{c['sigmas'][RAW]:.2%}"] if extra else []),
             f"{c['detectable']:.1%}", c["needed_repeats"]] for c in cal["configs"]]
    return markdown_table(["configuration", "A/A runs", f"noise (sd) of {METRIC_NAMES[metric]}",
                           *(["noise (sd) of images/s"] if extra else []),
                           f"detectable with {cal['repeats']} runs", "runs needed for "
                           f"{cal['threshold']:.0%}"], rows)


# ----------------------------------------------------------------------------- gating
def _check_same_device(base: Sequence[ResultDoc], label: str, path: Path) -> None:
    base_label = device_of(base)
    if base_label != label:
        raise BenchError(term(f"{path} is the baseline of {base_label}, this job ran on "
                              f"{label}: a gate compares one device with itself (use bench "
                              "compare for two)"))


def _report(cmp: Comparison, json_out: str | None, heading: str) -> int:
    print(format_text(cmp), end="")
    append_step_summary(f"{md(heading)}\n\n" + format_markdown(cmp))
    if json_out:
        atomic_write_text(Path(json_out), format_json(cmp))
    return cmp.exit_code


def _results_markdown(docs: Sequence[ResultDoc], note: str) -> str:
    """The runs as a table under `note` (markdown already: escape what came from results)."""
    rows = [[config_label(run_key(r)), r.get("device_label"), r.get("status"),
             fmt_num(r.get("images_per_s"), ",.1f")]
            for r in (flatten(d) for d in docs)]
    return f"### bench ci\n\n{note}\n\n" + markdown_table(
        ["configuration", "device", "status", "images/s"], rows)


def _keep_verdicts(store: str | None, docs: Sequence[ResultDoc], cmp: Comparison) -> None:
    """The verdicts beside the runs, for the history (one job: one batch id)."""
    batches = {d.get("batch_id") for d in docs}
    if not store or len(batches) != 1:
        return
    batch = batches.pop()
    if isinstance(batch, str):
        write_verdicts(store, batch, cmp)


def report_no_baseline(docs: Sequence[ResultDoc], path: Path) -> int:
    """A job with no baseline at `path` (the device's default; a named one must exist): its
    runs are printed and it could not gate (exit 3; 1 when runs failed), never a pass."""
    label = device_of(docs)
    msg = ("no baseline for {} at {}: could not gate (record one with "
           "`bench ci --calibrate` or `make bench-baseline`)")
    print(term(msg.format(label, path)))
    for f in _failures(docs):
        print(term(f"failed: {f}"))
    append_step_summary(_results_markdown(docs, msg.format(md(label), md(path))))
    return 1 if _failures(docs) else EXIT_UNGATED


def caps_of(args: argparse.Namespace) -> Caps:
    """The job's round and time caps, from its flags."""
    return Caps(first=args.repeats, most=max(args.repeats, args.max_repeats),
                time_cap_s=args.time_cap_s)


def gate_sequential(args: argparse.Namespace, path: Path, threshold: float, alpha: float,
                    first: Sequence[ResultDoc] = ()) -> int:
    """The stored-baseline job: rounds until each configuration is decided or a cap is
    reached (`ci.looks`), gated against the baseline at `path`. `first`: the first rounds,
    when they ran already (their device's baseline was found only from their results)."""
    base, calibration = read_baseline(path)
    base_rows = docs_rows(base)
    caps = caps_of(args)
    batch = next((d["batch_id"] for d in first if isinstance(d.get("batch_id"), str)),
                 new_batch_id())
    looks = caps.looks(calibration_df(calibration))
    docs: list[ResultDoc] = list(first)

    def measure(rounds: int, models: Sequence[str]) -> None:
        if docs and not models:  # the first rounds, measured before the baseline was known
            return
        docs.extend(_run_suite(args, rounds, batch, models))

    def look() -> Comparison:
        _check_same_device(base, device_of(docs), path)
        metric = gate_metric(base, docs)
        return compare_runs(base_rows, docs_rows(docs), threshold, alpha,
                            noise_table(calibration, metric), metric, looks)

    outcome = run_looks(measure, look, caps)
    print(outcome.line())
    cmp = outcome.comparison
    cmp.provenance = {"baseline": provenance(base), "candidate": provenance(docs)}
    _keep_verdicts(args.out, docs, cmp)
    return _report(cmp, args.json, f"bench ci against {path}")


def _baseline_file(args: argparse.Namespace) -> Path:
    """The named --baseline (which must exist), else this device's own file."""
    if args.baseline:
        path = Path(args.baseline)
        if not path.exists() and not (args.record_baseline or args.calibrate):
            raise BenchError(f"--baseline {path}: no such file")
        return path
    from bench.host.device import resolve_device
    from bench.host.envinfo import device_label, fingerprint

    return baseline_path(device_label(fingerprint(), resolve_device(args.device).type),
                         _baseline_folder(args))


def _baseline_folder(args: argparse.Namespace) -> Path:
    """Where this device's baseline lives: another suite's (--suite) in a folder named by it
    (a suite file's stem), so that it never replaces the ci suite's."""
    from bench.suites.catalogue import suite_label

    return BASELINE_DIR / suite_label(args.suite) if args.suite else BASELINE_DIR


def _runner_calibration(path: Path) -> dict[str, Any] | None:
    """This runner's calibration (noise per configuration), when the baseline file has one."""
    return read_baseline(path)[1] if path.exists() else None


def _check_gateable(args: argparse.Namespace, noise: dict[Key, float]) -> None:
    """Without a calibration the noise comes from the runs: one run a side cannot gate."""
    if args.repeats < 2 and not noise:
        raise BenchError(f"--repeats {args.repeats} cannot be gated without a calibrated "
                         "baseline (the noise is estimated from the runs): use --repeats 2 "
                         f"or more (default {DEFAULT_REPEATS}), or record one with --calibrate")


def _run_suite(args: argparse.Namespace, rounds: int, batch: str | None = None,
               models: Sequence[str] = ()) -> list[ResultDoc]:
    """`rounds` rounds of the suite (only `models`' runs, when given), all with the batch id
    `batch` (default: a new one): each in a fresh process (`ci.rounds` says why), or all in
    this one with `--one-process`; returns their result docs."""
    batch = batch or new_batch_id()
    if args.one_process:
        return _run_suite_here(args, rounds, batch, models)
    suite = str(Path(args.suite).resolve()) if args.suite else SUITE
    spec = RoundSpec(suite, args.device, args.data_dir, args.budget_s, gate=bool(args.suite),
                     batch_id=batch, models=tuple(models))
    out = Path(args.out)
    before = set(out.glob("*.json"))
    for r in range(rounds):
        run_round(PACKAGE_ROOT, spec.command(out), dict(os.environ),
                  f"round {r + 1} of {rounds}", cwd=Path.cwd())
    new = sorted(set(out.glob("*.json")) - before)
    docs = [d for p in new for d in read_docs(p) if d.get("batch_id") == spec.batch_id]
    if not docs:
        raise BenchError(f"suite {args.suite or SUITE!r} wrote no results")
    return docs


def _run_suite_here(args: argparse.Namespace, rounds: int, batch: str,
                    models: Sequence[str] = ()) -> list[ResultDoc]:
    from bench.suites.policy import run_suite

    overrides = {"budget_s": args.budget_s} if args.budget_s else None
    suite = args.suite or SUITE
    extra: dict[str, Any] = {"batch": batch, "gate": bool(args.suite)}  # FILE: its gated runs
    if models:
        extra["models"] = tuple(models)
    paths = run_suite(suite, data_dir=args.data_dir, out_dir=args.out, device=args.device,
                      repeats=rounds, overrides=overrides, **extra)
    docs = [d for p in paths for d in read_docs(p)]
    if not docs:
        raise BenchError(f"suite {suite!r} wrote no results")
    return docs


def _calibrate(args: argparse.Namespace, threshold: float, alpha: float) -> int:
    docs = _run_suite(args, args.rounds)
    _refuse_failures(docs)
    cal = calibration_of(docs, threshold, alpha, args.repeats)
    path = Path(args.baseline) if args.baseline else baseline_path(device_of(docs),
                                                                   _baseline_folder(args))
    record_baseline(docs, path, cal)
    table = _calibration_markdown(cal)  # escaped markdown: terminal-safe too
    print(term(f"calibrated {len(cal['configs'])} configuration(s) on {device_of(docs)} from "
               f"{args.rounds} A/A rounds: {path}") + f"\n{table}")
    append_step_summary(f"### bench ci --calibrate\n\n{table}")
    return 0


def handler(args: argparse.Namespace) -> int:
    threshold, alpha = parse_threshold(args.threshold), parse_alpha(args.alpha)
    modes = [m for m in ("record_baseline", "calibrate", "against") if getattr(args, m)]
    if len(modes) > 1:
        raise BenchError("--record-baseline, --calibrate and --against exclude each other")
    if args.suite and args.against:
        raise BenchError("--suite and --against exclude each other (--against measures the ci "
                         "suite)")
    warn_history_flag(args.history)
    path = _baseline_file(args)
    if args.calibrate:
        return _calibrate(args, threshold, alpha)
    calibration = None if args.record_baseline else _runner_calibration(path)
    if not args.record_baseline:
        _check_gateable(args, noise_table(calibration))
    if args.against:
        from bench.ci.against import gate_against

        cmp = gate_against(args, threshold, alpha, calibration, caps_of(args))
        return _report(cmp, args.json, f"bench ci --against {args.against}")
    if not args.record_baseline and path.exists():
        return gate_sequential(args, path, threshold, alpha)
    docs = _run_suite(args, args.repeats)
    if not args.baseline:
        path = baseline_path(device_of(docs), _baseline_folder(args))
    if args.record_baseline:
        record_baseline(docs, path)
        msg = "recorded baseline of {} run(s) on {}: {} (the runs moved into {}/)"
        runs = baseline_runs_dir(path)
        print(term(msg.format(len(docs), device_of(docs), path, runs)))
        append_step_summary(_results_markdown(docs, msg.format(len(docs), md(device_of(docs)),
                                                               md(path), md(runs))))
        return 0
    if path.exists():  # the runs' device has a baseline after all: gate them on it
        return gate_sequential(args, path, threshold, alpha, first=docs)
    return report_no_baseline(docs, path)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _run_count(text: str) -> int:
    """--repeats and --rounds: 1 to MAX_REPEATS runs per configuration (bench.cli says why),
    checked as the flags are parsed, before any run."""

    value = _positive_int(text)
    if value > MAX_REPEATS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_REPEATS:,}, got {value:,}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("ci", help="run the ci suite and compare it with this device's baseline",
                       description=__doc__.split("\n\n")[0])
    add_run_flags(p, include=("data_dir", "out", "device", "budget_s"))
    p.add_argument("--repeats", type=_run_count, default=DEFAULT_REPEATS,
                   help=f"rounds of the suite before the gate first looks (runs per "
                   f"configuration; default {DEFAULT_REPEATS})")
    p.add_argument("--max-repeats", type=_run_count, default=DEFAULT_MAX_REPEATS,
                   help="rounds at most (with --against: pairs); after --repeats, one round at "
                   "a time of the configurations still undecided (default "
                   f"{DEFAULT_MAX_REPEATS}; docs/ci.md)")
    p.add_argument("--time-cap-s", type=_positive_seconds, default=DEFAULT_TIME_CAP_S,
                   help="start no further round that would end the job "
                   f"later than this (default {DEFAULT_TIME_CAP_S:g}; --repeats rounds always "
                   "run)")
    add_gate_flags(p, "slowdown that counts as a regression",
                   "false-alarm rate of one gate run, over all its configurations")
    p.add_argument("--baseline", default=None,
                   help="baseline file (default results/baselines/<device-slug>.json)")
    p.add_argument("--record-baseline", action="store_true",
                   help="write/replace the baseline with this run instead of comparing")
    p.add_argument("--calibrate", action="store_true", help="run --rounds A/A rounds, store "
                   "the measured noise per configuration in the baseline (and the runs)")
    p.add_argument("--rounds", type=_run_count, default=DEFAULT_CALIBRATION_ROUNDS,
                   help=f"A/A rounds for --calibrate (default {DEFAULT_CALIBRATION_ROUNDS})")
    p.add_argument("--suite", metavar="FILE", default=None, help="gate a suite file's runs "
                   "(FILE.toml: those not marked gate = false, docs/plugins.md) instead of the "
                   "ci suite; its default baseline is results/baselines/<file stem>/"
                   "<device-slug>.json")
    p.add_argument("--against", metavar="REF", default=None, help="measure git REF (in a "
                   "temporary worktree) and this checkout alternately, then gate")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the comparison "
                   "as JSON")
    p.add_argument("--one-process", action="store_true", help="run every round in this "
                   "process, not each in a fresh one (saves a process start and, on a GPU, a "
                   "compilation per round; the rounds then share one process's speed, which "
                   "a calibration cannot see: docs/ci.md)")
    add_history_flag(p)
    p.set_defaults(func=handler, one_process=ONE_PROCESS)


__all__ = ["baseline_path", "calibration_of", "gate_sequential", "handler", "noise_table",
           "record_baseline", "register", "report_no_baseline"]
