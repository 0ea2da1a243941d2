"""`bench compare BASELINE CANDIDATE`: match runs across two result sets and gate regressions.

Each side is a result file, a baseline file (a JSON list of result docs, as `bench ci` records),
a folder of those (recursive, skipping `baselines/` and `reference/` subfolders), or a suite
name. A suite name means the newest run of that suite under `--results-dir` (default
`results/`); loading is the results library's (`results.load_side`). `--label DIR=NAME` names
the runs read from DIR as a system (`results.labels`), so two folders of one device compare.

Runs are matched on `results.CONFIG_KEYS` (never on the device: comparing GPU generations is the
point; the run's budget and measurement mode are part of the key). Each configuration's runs are
compared by `bench.gate.stats.gate`: a regression is a slowdown beyond the threshold that is also
significant at the stated false-alarm rate (Bonferroni over the configurations); a configuration
whose noise hides slowdowns of the threshold's size is "not gated", never a pass.

Exit status: 0 pass, 1 regression or a configuration that stopped working, 2 bad input, 3 some
configuration could not be gated (too noisy or too few runs; the row says how many it needs).

The text output fits 120 columns and opens with each side's provenance (commit, dates, torch
and CUDA versions, device: `results.provenance`). The core, `compare_runs`, is a pure function
of two lists of flat rows (as `results.flatten` makes them), so it is tested without files.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.defaults import EXIT_BAD_INPUT, EXIT_UNGATED
from bench.errors import BenchError
from bench.gate.sequential import Looks, decide, decide_paired
from bench.gate.stats import GateResult, gate, per_config_alpha
from bench.host import load as hostload
from bench.results import (
    CONFIG_KEYS,
    DEFAULT_RESULTS_DIR,
    Key,
    Provenance,
    RunRow,
    add_label_option,
    config_label,
    docs_rows,
    fmt_ips,
    labelled,
    load_side,
    markdown_escape,
    markdown_table,
    norm,
    num,
    provenance,
    run_key,
    text_table,
    wrap_lines,
)
from bench.results.aggregate import column, group, spread_of
from bench.results.escape import Markup, term
from bench.results.schema import json_safe
from bench.results.version import row_changes

FORMATS = ("text", "md", "json")
TURNS_METRIC = "images_per_s_in_turns"  # a Comparison's metric when rounds ran in turns
EXIT_HELP = (f"Exit status: 0 pass; 1 regression, or a configuration that stopped working; "
             f"{EXIT_BAD_INPUT} bad input; {EXIT_UNGATED} could not gate (too noisy or too few"
             " runs: the row says how many it needs; or no configuration on both sides).")


# --------------------------------------------------------------------------- the pure core


@dataclass
class SideStats:
    """One configuration on one side, aggregated over its repeats."""

    n: int
    images_per_s: float  # median over repeats
    ips_min: float
    ips_max: float
    spread: float | None  # relative: (max-min)/median over repeats (None with one run)
    epoch_time_s: float | None
    acc: list[float]
    devices: list[str]
    noisy: int = 0  # runs that ran beside foreign work (bench/host/load.py: noisy_run)


@dataclass
class MatchRow:
    key: Key
    label: str
    base: SideStats
    cand: SideStats
    ips_ratio: float  # candidate / baseline of the metric (images/s, or per probe), geometric
    # means of the runs (>1: faster)
    epoch_ratio: float | None  # candidate / baseline epoch time (<1: faster)
    acc_delta: float | None  # mean candidate - mean baseline final_test_acc (fraction)
    acc_delta_std: float | None  # sqrt(sd_b^2 + sd_c^2) when either side has repeats
    gate: GateResult
    verdict: str  # regression | faster | ok | not gated


@dataclass
class Skipped:
    side: str
    label: str
    status: str
    reason: str
    path: str | None


@dataclass
class Comparison:
    threshold: float
    alpha: float = 0.05  # false-alarm rate of the whole comparison (all configurations)
    metric: str = "images_per_s"  # the per-run figure the verdicts are on (compare_runs)
    rows: list[MatchRow] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_cand: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # ok in baseline, every candidate run failed
    base_devices: list[str] = field(default_factory=list)
    cand_devices: list[str] = field(default_factory=list)
    # "baseline"/"candidate" -> what each side ran with (set where the runs were loaded)
    provenance: dict[str, Provenance] = field(default_factory=dict)

    @property
    def regressions(self) -> list[MatchRow]:
        return [r for r in self.rows if r.verdict == "regression"]

    @property
    def ungated(self) -> list[MatchRow]:
        return [r for r in self.rows if r.verdict == "not gated"]

    @property
    def exit_code(self) -> int:
        """1: a regression or a configuration that stopped working; 3: could not gate; 0."""
        if self.regressions or self.failed:
            return 1
        return EXIT_UNGATED if self.ungated or not self.rows else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["regressions"] = len(self.regressions)
        d["exit_code"] = self.exit_code
        for row in d["rows"]:
            row["key"] = dict(zip(CONFIG_KEYS, row["key"], strict=True))
        return d


def _side_stats(rows: list[RunRow]) -> SideStats:
    ips = spread_of(rows, "images_per_s")  # rows with a positive figure only (_split)
    devices = sorted({str(r.get("device_label")) for r in rows})
    noisy = sum(hostload.noisy_run(r.get("host_load")) for r in rows)
    return SideStats(ips.n, ips.median, ips.min, ips.max, ips.rel_range,
                     spread_of(rows, "epoch_time_s").median, column(rows, "final_test_acc"),
                     devices, noisy)


def _acc_delta(b: list[float], c: list[float]) -> tuple[float | None, float | None]:
    if not b or not c:
        return None, None
    delta = statistics.fmean(c) - statistics.fmean(b)
    if len(b) < 2 and len(c) < 2:
        return delta, None

    def sd(xs: list[float]) -> float:
        return statistics.stdev(xs) if len(xs) >= 2 else 0.0

    return delta, math.hypot(sd(b), sd(c))


def _no_figure(r: RunRow, metric: str) -> str | None:
    """Why an ok run has no figure to gate on (none, or one that cannot be a throughput: not
    finite, or not above 0), else None. Such a run is skipped, never fed to the gate."""
    for name in dict.fromkeys(("images_per_s", metric)):
        v = num(r.get(name))
        if v is None:
            return f"no {name} in summary"
        if not (math.isfinite(v) and v > 0):
            return f"{name} is {v:g}, not a positive finite number"
    return None


def _skip_reason(r: RunRow, metric: str) -> str | None:
    """Why a run cannot be compared (it did not finish, or has no figure), else None."""
    status = str(norm(r.get("status")) or "?")
    if status != "ok":
        msg = norm(r.get("message"))
        return f"status {status}" + (f": {msg}" if msg else "")
    return _no_figure(r, metric)


def _skipped(side: str, r: RunRow, reason: str) -> Skipped:
    return Skipped(side, config_label(run_key(r)), str(norm(r.get("status")) or "?"), reason,
                   norm(r.get("path")))


def _split(records: Sequence[RunRow], side: str, metric: str = "images_per_s"
           ) -> tuple[dict[Key, list[RunRow]], dict[Key, list[Skipped]]]:
    """Group the usable runs of one side by configuration; the rest become Skipped entries."""
    marked = [(r, _skip_reason(r, metric)) for r in records]
    groups = group((r for r, why in marked if why is None), run_key)
    skipped = {key: [_skipped(side, r, why) for r, why in pairs] for key, pairs in
               group(((r, why) for r, why in marked if why is not None),
                     lambda pair: run_key(pair[0])).items()}
    for key, rows in groups.items():
        devices = sorted({str(r.get("device_label")) for r in rows})
        if len(devices) > 1:
            raise BenchError(term(
                f"{side}: runs of {config_label(key)} come from {len(devices)} devices"
                f" ({', '.join(devices)}); give each side one device's results"
            ))
    return groups, skipped


def _values(rows: list[RunRow], metric: str) -> list[float]:
    return column(rows, metric, positive=True)


def _check_same_work(key: Key, base: list[RunRow], cand: list[RunRow]) -> None:
    """Refuse a configuration whose runs measured different work (a changed model, recipe,
    dataset or measurement: results.version), on either side or between them."""
    rows = [("baseline", r) for r in base] + [("candidate", r) for r in cand]
    versioned = [(side, r) for side, r in rows if isinstance(r.get("benchmark_version"), str)]
    if not versioned:
        return
    first_side, first = versioned[0]
    for side, r in versioned[1:]:
        changed = row_changes(first, r)
        if changed:
            which = f"{side}'s runs" if side == first_side else f"{first_side} and the {side}"
            raise BenchError(term(
                f"{config_label(key)}: the {which} measured different work ({', '.join(changed)}"
                f" changed: benchmark {first['benchmark_version']} vs {r['benchmark_version']});"
                " compare runs of one benchmark version (for a stored baseline, record it again)"))


def _match(key: Key, base: list[RunRow], cand: list[RunRow], threshold: float, alpha: float,
           sigma: float | None, metric: str, looks: Looks | None = None,
           pairs: list[float] | None = None) -> MatchRow:
    b, c = _side_stats(base), _side_stats(cand)
    bv, cv = _values(base, metric), _values(cand, metric)
    try:
        if pairs is not None:
            g = decide_paired(pairs, threshold, alpha, looks or Looks(1))
        elif looks:
            g = decide(bv, cv, threshold, alpha, sigma, looks)
        else:
            g = gate(bv, cv, threshold, alpha, sigma)
    except OverflowError:  # finite figures hundreds of orders of magnitude apart
        raise BenchError(term(f"{config_label(key)}: the two sides' {metric} differ by more "
                              "than a float can hold; a damaged or edited file?")) from None
    epoch_ratio = (c.epoch_time_s / b.epoch_time_s
                   if c.epoch_time_s is not None and b.epoch_time_s else None)
    delta, delta_sd = _acc_delta(b.acc, c.acc)
    return MatchRow(key, config_label(key), b, c, g.ratio, epoch_ratio, delta, delta_sd, g,
                    g.verdict)


def compare_runs(base_rows: Sequence[RunRow], cand_rows: Sequence[RunRow], threshold: float,
                 alpha: float = 0.05,
                 noise: Mapping[Key, float] | None = None,
                 metric: str = "images_per_s", looks: Looks | None = None,
                 paired: Mapping[Key, Sequence[float]] | None = None) -> Comparison:
    """Compare two sets of runs (flat rows, `results.flatten`). Pure: no I/O.

    `alpha` is the false-alarm rate of the whole comparison; `noise` maps a configuration key
    to its calibrated run-to-run sigma (log scale) of `metric`, where `bench ci --calibrate`
    measured one. `metric` is the per-run figure the verdict is on: images/s, or for a stored
    baseline `images_per_probe` (images/s over the machine's speed, bench/measure/probe.py).
    `looks`: one look of a sequential job (`bench.gate.sequential`), else the fixed test.
    `paired`: the job ran its rounds in turns (`--against`): per configuration, each round's
    log(candidate / baseline) (`gate.paired`), which the verdict is on instead of the runs.
    """
    base, base_skip = _split(base_rows, "baseline", metric)
    cand, cand_skip = _split(cand_rows, "candidate", metric)
    out = Comparison(threshold=threshold, alpha=alpha,
                     metric=TURNS_METRIC if paired is not None else metric)
    for skips in (*base_skip.values(), *cand_skip.values()):
        out.skipped.extend(skips)
    matched = sorted(base.keys() & cand.keys(), key=config_label)
    per_config = per_config_alpha(alpha, len(matched))
    for key in matched:
        _check_same_work(key, base[key], cand[key])
        pairs = None if paired is None else list(paired.get(key, ()))
        out.rows.append(_match(key, base[key], cand[key], threshold, per_config,
                               (noise or {}).get(key), metric, looks, pairs))
    out.only_base = sorted(config_label(k) for k in base.keys() - cand.keys())
    out.only_cand = sorted(config_label(k) for k in cand.keys() - base.keys())
    out.failed = sorted(config_label(k) for k in base.keys() & (cand_skip.keys() - cand.keys()))
    out.base_devices = sorted({str(r.get("device_label")) for g in base.values() for r in g})
    out.cand_devices = sorted({str(r.get("device_label")) for g in cand.values() for r in g})
    return out


# --------------------------------------------------------------------------- formatting


def add_gate_flags(p: Any, threshold_help: str, alpha_help: str) -> None:
    """--threshold and --alpha (both 5%, read by `parse_threshold` and `parse_alpha`) for the
    verbs that gate."""
    p.add_argument("--threshold", default="5%", help=f"{threshold_help} (default 5%%)")
    p.add_argument("--alpha", default="5%", help=f"{alpha_help} (default 5%%)")


def parse_threshold(text: str, flag: str = "--threshold") -> float:
    """'5%' or '0.05' -> 0.05. A bare number must be a fraction, so '5' is not silently 500%.
    A bad value is one line naming `flag`, the option it came from."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise BenchError(f"{flag} {text!r}: expected e.g. 5% or 0.05") from None
    if not 0 < value < 1:
        raise BenchError(f"{flag} {text!r}: must lie between 0% and 100% (e.g. 5% or 0.05)")
    return value


def parse_alpha(text: str) -> float:
    """--alpha: a fraction read like --threshold, its errors naming --alpha."""
    return parse_threshold(text, "--alpha")


def _fmt_side(s: SideStats) -> str:
    if s.spread is not None:
        return f"{fmt_ips(s.images_per_s)} ({s.n} runs, spread {s.spread:.1%})"
    return f"{fmt_ips(s.images_per_s)} (1 run)"


def _fmt_side_short(s: SideStats) -> str:
    """'12,345 n=3 ±1.0%': median images/s, runs, and half their spread ((max-min)/median)."""
    spread = f" ±{s.spread / 2:.1%}" if s.spread is not None else ""
    return f"{fmt_ips(s.images_per_s)} n={s.n}{spread}"


def _fmt_acc(delta: float | None, sd: float | None, short: bool = False) -> str:
    if delta is None:
        return "-"
    if short:
        return f"{delta * 100:+.2f}" + (f"±{sd * 100:.2f}" if sd is not None else "")
    return f"{delta * 100:+.2f} pp" + (f" ± {sd * 100:.2f}" if sd is not None else "")


def _fmt_ratio(g: GateResult) -> str:
    if g.low is None or g.high is None:
        return f"{g.ratio:.3f}"
    return f"{g.ratio:.3f} [{g.low:.3f}, {g.high:.3f}]"


def _fmt_detectable(g: GateResult) -> str:
    return f"{g.detectable:.1%}" if g.detectable is not None else "-"


def _why_not_gated(r: MatchRow) -> str:
    """What keeps a 'not gated' row from a verdict, and what would make it gateable."""
    g = r.gate
    if g.noise is None:
        return "1 run per side; needs --repeats 2+ or a calibrated baseline"
    return f"noise ±{g.noise:.1%}, needs {g.needed_repeats} runs per side"


def fmt_verdict(r: MatchRow) -> str:
    """The verdict, and for 'not gated' why and what would make it gateable."""
    if r.verdict == "regression":
        return "REGRESSION"
    if r.verdict != "not gated":
        return r.verdict
    return f"not gated: {_why_not_gated(r)}"


_HEADERS = ("configuration", "baseline img/s", "candidate img/s", "ratio [bounds]",
            "detectable", "acc Δ", "verdict")
# the terminal table: compact cells, verdict reasons below it (see format_text)
_TEXT_HEADERS = ("configuration", "baseline img/s", "candidate img/s", "ratio [bounds]",
                 "detect", "acc Δ pp", "verdict")
TEXT_WIDTH = 120  # columns the text rendering fits in


def table_rows(cmp: Comparison) -> list[list[str]]:
    """The comparison table as strings, for markdown (cells spelt out; the label is escaped by
    `markdown_table`, the ratio and its bounds are our numbers)."""
    return [[r.label, _fmt_side(r.base), _fmt_side(r.cand), Markup(_fmt_ratio(r.gate)),
             _fmt_detectable(r.gate), _fmt_acc(r.acc_delta, r.acc_delta_std), fmt_verdict(r)]
            for r in cmp.rows]


def text_rows(cmp: Comparison) -> list[list[str]]:
    """The comparison table for a terminal: the same figures in compact cells."""
    return [[r.label, _fmt_side_short(r.base), _fmt_side_short(r.cand), _fmt_ratio(r.gate),
             _fmt_detectable(r.gate), _fmt_acc(r.acc_delta, r.acc_delta_std, short=True),
             "REGRESSION" if r.verdict == "regression" else r.verdict] for r in cmp.rows]


def _summary_line(cmp: Comparison) -> str:
    n = len(cmp.regressions)
    parts = [f"{n} regression{'s' if n != 1 else ''} in {len(cmp.rows)} matched configuration"
             f"{'s' if len(cmp.rows) != 1 else ''}"]
    if cmp.failed:
        parts.append(f"{len(cmp.failed)} configuration(s) failed in the candidate")
    if cmp.ungated:
        parts.append(f"{len(cmp.ungated)} could not be gated")
    if not cmp.rows:
        parts.append("nothing to gate: no configuration is on both sides")
    if noisy := noisy_rows(cmp):
        parts.append(f"{len(noisy)} verdict{'s' if len(noisy) != 1 else ''} from noisy runs")
    return "; ".join(parts)


METRIC_NOTES = {"images_per_probe": "images/s divided by the machine's speed at the time (a "
                "fixed reference workload timed between the windows, bench/measure/probe.py); "
                "the images/s columns are raw",
                TURNS_METRIC: "each round's candidate ÷ baseline images/s over the turns both "
                "sides took (the median; bench/gate/paired.py); the images/s columns are raw"}


NOISY_HEADING = (f"Verdicts from noisy runs (other processes or steal took >= "
                 f"{hostload.FOREIGN_SHARE_LIMIT:.0%} of the CPUs in >= "
                 f"{hostload.NOISY_RUN_SHARE:.0%} of a run's timed windows)")


def noisy_rows(cmp: Comparison) -> list[str]:
    """One line per configuration whose verdict rests on runs taken beside foreign work."""
    return [f"{r.label}: {r.verdict}; noisy runs: baseline {r.base.noisy} of {r.base.n}, "
            f"candidate {r.cand.noisy} of {r.cand.n}"
            for r in cmp.rows if r.base.noisy or r.cand.noisy]


def _extras(cmp: Comparison) -> list[tuple[str, list[str]]]:
    """Everything not in the table, so that nothing is dropped silently."""
    return [
        ("Ratios and verdicts are on", [METRIC_NOTES.get(cmp.metric, cmp.metric)]
         if cmp.metric != "images_per_s" else []),
        (NOISY_HEADING, noisy_rows(cmp)),
        ("Failed in candidate (ok in baseline)", cmp.failed),
        ("Only in baseline", cmp.only_base),
        ("Only in candidate", cmp.only_cand),
        ("Skipped runs", [f"{s.side}: {s.label}: {s.reason}" + (f" ({s.path})" if s.path else "")
                          for s in cmp.skipped]),
    ]


def _devices(names: list[str]) -> str:
    return ", ".join(names) if names else "?"


def _sides(cmp: Comparison) -> list[str]:
    """One line per side: its provenance when loaded from files, else its devices."""
    return [f"{side + ':':<10} " + (cmp.provenance[side].line() if side in cmp.provenance
                                     else _devices(devices))
            for side, devices in (("baseline", cmp.base_devices),
                                  ("candidate", cmp.cand_devices))]


def _settings(cmp: Comparison) -> list[str]:
    return [f"threshold {cmp.threshold:.1%}, false-alarm rate {cmp.alpha:.0%} over all"
            " configurations together",
            "img/s: median of n runs ± half their spread (max-min); ratio: candidate/baseline"
            " img/s [one-sided confidence bounds]"]


def _ungated_by_reason(cmp: Comparison) -> list[str]:
    """'REASON: label, label' per distinct reason ('all N configurations' when it is all)."""
    by = {reason: [r.label for r in rows]
          for reason, rows in group(cmp.ungated, _why_not_gated).items()}
    if len(by) == 1 and len(cmp.ungated) == len(cmp.rows) > 1:
        return [f"{reason}: all {len(cmp.rows)} configurations" for reason in by]
    return [f"{reason}: {'; '.join(labels)}" for reason, labels in by.items()]


def format_text(cmp: Comparison) -> str:
    """For a terminal: every line fits TEXT_WIDTH columns (long names wrap)."""
    out = [line for text in [*_sides(cmp), *_settings(cmp)]
           for line in wrap_lines(text, TEXT_WIDTH, indent=" " * 11)]
    if cmp.rows:
        out.append(text_table(_TEXT_HEADERS, text_rows(cmp), width=TEXT_WIDTH, wrap=0))
    ungated = _ungated_by_reason(cmp)
    for title, items in [("Not gated (why, and what would gate it)", ungated), *_extras(cmp)]:
        if items:
            out.append(f"{title}:")
            out.extend(line for i in items for line in wrap_lines(f"  {i}", TEXT_WIDTH))
    out.extend(wrap_lines("result: " + _summary_line(cmp), TEXT_WIDTH))
    return "\n".join(out) + "\n"


def format_markdown(cmp: Comparison) -> str:
    """A block for a GitHub job summary or PR comment."""
    icon = {0: "✅", 1: "❌"}.get(cmp.exit_code, "⚠️")
    out = [f"### {icon} bench compare: {_summary_line(cmp)}", ""]
    out += [f"- {markdown_escape(line)}" for line in _sides(cmp)] + [""]
    out += [f"Threshold {cmp.threshold:.1%}. A regression is a slowdown beyond the threshold"
            f" that is also significant (false-alarm rate {cmp.alpha:.0%} over all"
            " configurations); bounds: one-sided confidence bounds of the ratio; detectable: the"
            " smallest slowdown this comparison catches 80% of the time.", ""]
    if cmp.rows:
        out += [markdown_table(_HEADERS, table_rows(cmp)), ""]
    for title, items in _extras(cmp):
        if items:
            out.append(f"**{title}** ({len(items)}):")
            out += [f"- {markdown_escape(i)}" for i in items] + [""]
    return "\n".join(out)


def format_json(cmp: Comparison) -> str:
    """The comparison as strict JSON; a non-finite figure is null, listed under "notes"."""
    notes: list[str] = []
    d = json_safe(cmp.to_dict(), notes)
    if notes:
        d["notes"] = notes
    return json.dumps(d, indent=1, allow_nan=False) + "\n"


def render(cmp: Comparison, fmt: str) -> str:
    return {"text": format_text, "md": format_markdown, "json": format_json}[fmt](cmp)


# --------------------------------------------------------------------------- CLI


def compare_paths(baseline: str, candidate: str, threshold: float,
                  results_dir: str | Path = DEFAULT_RESULTS_DIR,
                  labels: Sequence[str] = ()) -> Comparison:
    """Load both sides (paths or suite names), name systems by `labels` (`--label DIR=NAME`)
    and compare them; the comparison carries each side's provenance for its header."""
    base = load_side(baseline, "baseline", results_dir)
    cand = load_side(candidate, "candidate", results_dir)
    both = labelled([*base, *cand], labels)
    base, cand = both[:len(base)], both[len(base):]
    cmp = compare_runs(docs_rows(base), docs_rows(cand), threshold)
    cmp.provenance = {"baseline": provenance(base), "candidate": provenance(cand)}
    return cmp


def handler(args: argparse.Namespace) -> int:
    cmp = compare_paths(args.baseline, args.candidate, parse_threshold(args.threshold),
                        args.results_dir, args.label)
    sys.stdout.write(render(cmp, args.format))
    return cmp.exit_code


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="compare two result sets (e.g. two GPUs, or a run against a baseline)",
        description="Match runs on their configuration and report throughput ratios, accuracy"
        " deltas and regressions. " + EXIT_HELP,
    )
    p.add_argument("baseline", help="result file, baseline file, folder, or suite name")
    p.add_argument("candidate", help="result file, baseline file, folder, or suite name")
    p.add_argument("--threshold", default="5%",
                   help="slowdown that counts as a regression, e.g. 5%% or 0.05 (default 5%%)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR,
                   help="where suite names are looked up (default results/)")
    add_label_option(p)
    p.set_defaults(func=handler)


def run_verb(register_fn: Any, argv: Sequence[str] | None) -> int:
    """Run one verb like the CLI does: BenchError -> one line on stderr, exit 2."""
    parser = argparse.ArgumentParser(prog="bench")
    register_fn(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BenchError as exc:
        print(f"bench: error: {term(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.gate.compare BASELINE CANDIDATE ...` without the full CLI."""
    return run_verb(register, ["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
