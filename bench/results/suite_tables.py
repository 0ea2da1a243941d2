"""The markdown tables `bench suite` prints and saves: per experiment (the course's seed loop
beside the fast recipe), per run, and per configuration over its repeats.

They read result docs only, so they live with the results library, away from the runner and
torch; `bench.suites.policy` runs the suite and calls `suite_table` on the files it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.results.aggregate import column, group, spread, spread_of
from bench.results.format import fmt_mfu, fmt_num, fmt_percent, markdown_table
from bench.results.rows import CONFIG_KEYS, Key, run_key
from bench.results.schema import ResultDoc, Summary
from bench.results.store import StrPath, read_result

_RUNS_HEADERS = ("model", "dataset", "recipe", "loader", "precision", "CL", "compile", "bs",
                 "status", "images/s", "epoch s", "accuracy %", "time to target s", "warm-up s",
                 "MFU %")
_EXPERIMENTS_HEADERS = ("experiment", "target %", "seed TTA s", "fast TTA s", "TTA speed-up",
                        "seed img/s", "fast img/s", "img/s speed-up", "seed acc %", "fast acc %",
                        "fast MFU %")
_REPEATS_HEADERS = ("configuration", "repeats", "images/s median (min-max)",
                    "epoch s median (min-max)", "accuracy % mean +- std")
# What a row says of a run on synthetic data that was not evaluated (the default suite caps
# such runs, bench.suites.policy.throughput_on_synthetic): its images/s count, nothing else does.
THROUGHPUT_ONLY_SYNTHETIC = "throughput only (synthetic data)"


def _synthetic_note(docs: Sequence[ResultDoc]) -> str:
    """' (synthetic)' after the dataset when a run had no real data, or the throughput-only
    note when none of those runs was evaluated either."""
    synthetic = [d for d in docs if not (d.get("data") or {}).get("real")]
    if not synthetic:
        return ""
    if all(d["config"].get("evaluate") is False for d in synthetic):
        return f": {THROUGHPUT_ONLY_SYNTHETIC}"
    return " (synthetic)"


def runs_table(docs: Sequence[ResultDoc]) -> str:
    """One row per run."""
    rows = []
    for d in docs:
        c = d["config"]
        s: Summary = d.get("summary") or {}
        rows.append([
            c["model"], f"{c['dataset']}{_synthetic_note([d])}", c["recipe"], c["loader"],
            c["precision"], "y" if c.get("channels_last") else "n", c.get("compile"),
            c["batch_size"], d["status"], fmt_num(s.get("images_per_s"), ",.0f"),
            fmt_num(s.get("epoch_time_s"), ".2f"), fmt_percent(s.get("final_test_acc")),
            fmt_num(s.get("time_to_accuracy_s"), ".2f"), fmt_num(s.get("warmup_time_s"), ".2f"),
            fmt_mfu(s, "mfu", ".1f"),
        ])
    return markdown_table(_RUNS_HEADERS, rows)


def _ratio(num: float | None, den: float | None) -> float | None:
    """num/den when both are there and non-zero, else None."""
    return num / den if num and den else None


def experiments_table(docs: Sequence[ResultDoc]) -> str:
    """Per experiment: the seed loop beside the fast recipe, ratios measured in this run."""
    by_exp: dict[tuple[str, str], dict[str, ResultDoc]] = {}
    for d in docs:
        c = d["config"]
        by_exp.setdefault((c["model"], c["dataset"]), {})[c["recipe"]] = d
    rows = []
    for (model, dataset), runs in by_exp.items():
        seed: Summary = (runs.get("seed") or {}).get("summary") or {}
        fast: Summary = (runs.get("fast") or {}).get("summary") or {}
        tta = _ratio(seed.get("time_to_accuracy_s"), fast.get("time_to_accuracy_s"))
        ips = _ratio(fast.get("images_per_s"), seed.get("images_per_s"))
        target = fast.get("target_accuracy") or seed.get("target_accuracy")
        rows.append([
            f"{model} on {dataset}{_synthetic_note(list(runs.values()))}", fmt_percent(target),
            fmt_num(seed.get("time_to_accuracy_s"), ".2f"),
            fmt_num(fast.get("time_to_accuracy_s"), ".3f"), f"{fmt_num(tta, '.1f')}x",
            fmt_num(seed.get("images_per_s"), ",.0f"), fmt_num(fast.get("images_per_s"), ",.0f"),
            f"{fmt_num(ips, '.1f')}x", fmt_percent(seed.get("best_test_acc")),
            fmt_percent(fast.get("best_test_acc")), fmt_mfu(fast, "mfu", ".1f"),
        ])
    return markdown_table(_EXPERIMENTS_HEADERS, rows)


def _median_range(runs: Sequence[Summary], field: str, spec: str) -> str:
    """'median (min-max)' of one summary field over repeats, '-' when no repeat has it."""
    s = spread_of(runs, field)
    if not s.n:
        return "-"
    return f"{fmt_num(s.median, spec)} ({fmt_num(s.min, spec)}-{fmt_num(s.max, spec)})"


def _repeat_name(key: Key) -> str:
    """e.g. 'fc/mnist/gpu/fp32 bs64 fast'."""
    c = dict(zip(CONFIG_KEYS, map(str, key), strict=True))
    return (f"{c['model']}/{c['dataset']}/{c['loader']}/{c['precision']}"
            f" bs{c['batch_size']} {c['recipe']}")


def repeats_table(docs: Sequence[ResultDoc]) -> str:
    """Per configuration over its repeats: median and min-max of images/s and epoch time,
    accuracy as mean +- std (each repeat has its own seed)."""
    groups = group((d for d in docs if d["status"] == "ok"), lambda d: run_key(d["config"]))
    rows = []
    for key, members in groups.items():
        runs: list[Summary] = [d.get("summary") or {} for d in members]
        accs = spread(100 * a for a in column(runs, "final_test_acc"))
        acc = f"{accs.mean:.2f} +- {accs.sd or 0.0:.2f}" if accs.n else "-"
        rows.append([_repeat_name(key), len(runs), _median_range(runs, "images_per_s", ",.0f"),
                     _median_range(runs, "epoch_time_s", ".2f"), acc])
    return markdown_table(_REPEATS_HEADERS, rows)


def suite_table(paths: Sequence[StrPath]) -> str:
    """Markdown tables of a suite run: per experiment (seed vs fast), per run, and the
    spread over repeats when there are any."""
    docs = [read_result(p) for p in paths]
    out = experiments_table(docs) + "\n\n" + runs_table(docs)
    if any(d.get("repeat", 0) > 0 for d in docs):
        out += "\n\n" + repeats_table(docs)
    return out

