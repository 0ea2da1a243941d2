"""Named suites: lists of run configurations, run one after another; a failing configuration
(OOM, NaN, error) is recorded and the suite goes on with the next."""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .datasets import load_dataset
from .errors import BenchError
from .results import CONFIG_KEYS, read_result
from .runner import RunConfig, run

SUITES = ("default", "ci", "smoke", "vgg-ablation")
COURSE = [("fc", "mnist"), ("cnn", "mnist"), ("fc", "mnist-perm"), ("cnn", "mnist-perm"),
          ("lenet", "cifar10"), ("vgg16", "cifar10")]


def _pairs(models: list[tuple[str, str]], **kw: Any) -> list[RunConfig]:
    """For each experiment: the course's seed loop, then the harness's fast recipe."""
    out = []
    for model, dataset in models:
        out.append(RunConfig(model=model, dataset=dataset, recipe="seed", **kw.get("seed", {})))
        out.append(RunConfig(model=model, dataset=dataset, recipe="fast", **kw.get("fast", {})))
    return out


def suite_configs(name: str, on_gpu: bool) -> tuple[list[RunConfig], str]:
    """Configurations of a suite and a line saying what it is."""
    if name == "default" and on_gpu:
        return _pairs(COURSE), "full course suite (seed loop vs fast recipe), GPU"
    if name == "default":
        # CPU: VGG16's seed loop would take about an hour per epoch here, so both VGG rows are
        # throughput-only (capped by steps, no test pass: one would cost a minute of fp32).
        cfgs = _pairs(COURSE[:5])
        cfgs += [RunConfig(model="vgg16", dataset="cifar10", recipe="seed", max_steps=20,
                           evaluate=False),
                 RunConfig(model="vgg16", dataset="cifar10", recipe="fast", max_steps=40,
                           evaluate=False)]
        return cfgs, ("reduced CPU suite (no GPU found): every course experiment, VGG16 "
                      "throughput only (20/40 steps, no evaluation); about 10 minutes on 2 cores")
    if name == "ci":
        steps = 300 if on_gpu else 60
        models = [("fc", "mnist"), ("cnn", "mnist"), ("lenet", "cifar10"), ("vgg16", "cifar10")]
        return [RunConfig(model=m, dataset=d, recipe="fast",
                          max_steps=steps if (m != "vgg16" or on_gpu) else 10,
                          evaluate=on_gpu or m != "vgg16") for m, d in models], (
            f"CI suite: fast recipe, {steps} steps per model")
    if name == "vgg-ablation":
        # long enough that compilation (first ~6 steps) stays out of the steady windows
        steps = 100 if on_gpu else 30
        cfgs = []
        for model in ("vgg11", "vgg16"):
            for precision, cl, comp in [("fp32", False, "none"), ("bf16", False, "none"),
                                        ("bf16", True, "none"), ("bf16", True, "default")]:
                cfgs.append(RunConfig(model=model, recipe="fast", precision=precision,
                                      channels_last=cl, compile=comp, max_steps=steps,
                                      batch_size=None if on_gpu else 64, evaluate=False))
        return cfgs, (f"VGG ablation: fp32 / bf16 / +channels-last / +compile, {steps} steps "
                      "each, no evaluation")
    if name == "smoke":
        return [RunConfig(model=m, dataset=d, recipe="fast", max_steps=20)
                for m, d in [("fc", "mnist"), ("cnn", "mnist"), ("lenet", "cifar10")]], (
            "smoke suite: 20 steps per model")
    raise BenchError(f"unknown suite {name!r}; choices: {', '.join(SUITES)}")



def _real_data_available(data_dir: str | None) -> dict[str, bool]:
    """Whether each dataset family can be had (read, or downloaded once into the cache)."""
    out = {}
    for ds in ("mnist", "cifar10"):
        try:
            load_dataset(ds, data_dir)
            out[ds] = True
        except BenchError:
            out[ds] = False
    return out


def _model_family(cfg: RunConfig) -> str:
    from .models import get_model_spec

    return get_model_spec(cfg.model).family


def _ensure_peak(device: str) -> None:
    """MFU needs this machine's measured ceiling: measure it once (cached) if it is missing."""
    from .device import resolve_device
    from .peak import format_peak, load_cached_peak, measure_peak

    dev = resolve_device(device)
    if load_cached_peak(dev) is None:
        print("suite: measuring this device's peak FLOP/s once (bench peak)...", file=sys.stderr)
        print(format_peak(measure_peak(dev, quick=True)), file=sys.stderr)


def run_suite(name: str, *, data_dir: str | None, out_dir: str, device: str = "auto",
              repeats: int = 1, overrides: dict | None = None, quiet: bool = False
              ) -> list[Path]:
    """Run every configuration of a suite `repeats` times (each repeat its own seed)."""
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    cfgs, what = suite_configs(name, on_gpu)
    real = _real_data_available(data_dir)
    print(f"suite {name}: {what}", file=sys.stderr)
    _ensure_peak(device)
    for ds, ok in real.items():
        if not ok:
            print(f"suite {name}: no real {ds} in {data_dir or '$BENCH_DATA_DIR'}: using "
                  f"synthetic-{ds} (throughput only, accuracy meaningless)", file=sys.stderr)
    paths: list[Path] = []
    for cfg in cfgs:
        for r in range(repeats):
            # the availability check above already tried; don't retry a download per run
            family = "mnist" if _model_family(cfg) == "mnist" else "cifar10"
            c = replace(cfg, data_dir=data_dir, out=out_dir, device=device, suite=name,
                        repeat=r, seed=cfg.seed + r, allow_synthetic=True, quiet=quiet,
                        download=real[family],
                        **(overrides or {}))
            try:
                _, path = run(c)
            except BenchError as exc:
                print(f"suite {name}: {c.model}/{c.dataset}/{c.recipe}: {exc}", file=sys.stderr)
                continue
            if path is not None:
                paths.append(path)
    return paths


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def _acc(v: Any) -> str:
    return _fmt(v * 100 if v is not None else None, ".2f")


def runs_table(docs: list[dict]) -> str:
    """One row per run."""
    lines = ["| model | dataset | recipe | loader | precision | CL | compile | bs | status | "
             "images/s | epoch s | accuracy % | time to target s | warm-up s | MFU % |",
             "|" + "---|" * 15]
    for d in docs:
        c, s = d["config"], d.get("summary") or {}
        data_note = "" if (d.get("data") or {}).get("real") else " (synthetic)"
        mfu = s.get("mfu")
        lines.append(
            f"| {c['model']} | {c['dataset']}{data_note} | {c['recipe']} | {c['loader']} | "
            f"{c['precision']} | {'y' if c.get('channels_last') else 'n'} | {c.get('compile')} | "
            f"{c['batch_size']} | {d['status']} | "
            f"{_fmt(s.get('images_per_s'), ',.0f')} | {_fmt(s.get('epoch_time_s'), '.2f')} | "
            f"{_acc(s.get('final_test_acc'))} | {_fmt(s.get('time_to_accuracy_s'), '.2f')} | "
            f"{_fmt(s.get('warmup_time_s'), '.2f')} | "
            f"{_fmt(mfu * 100 if mfu is not None else None, '.1f')} |")
    return "\n".join(lines)


def experiments_table(docs: list[dict]) -> str:
    """Per experiment: the seed loop beside the fast recipe, ratios measured in this run."""
    by_exp: dict[tuple[str, str], dict[str, dict]] = {}
    for d in docs:
        c = d["config"]
        by_exp.setdefault((c["model"], c["dataset"]), {})[c["recipe"]] = d
    lines = ["| experiment | target % | seed TTA s | fast TTA s | TTA speed-up | seed img/s | "
             "fast img/s | img/s speed-up | seed acc % | fast acc % | fast MFU % |",
             "|" + "---|" * 11]
    for (model, dataset), runs in by_exp.items():
        seed = (runs.get("seed") or {}).get("summary") or {}
        fast = (runs.get("fast") or {}).get("summary") or {}
        tta = (seed["time_to_accuracy_s"] / fast["time_to_accuracy_s"]
               if seed.get("time_to_accuracy_s") and fast.get("time_to_accuracy_s") else None)
        ips = (fast["images_per_s"] / seed["images_per_s"]
               if seed.get("images_per_s") and fast.get("images_per_s") else None)
        target = fast.get("target_accuracy") or seed.get("target_accuracy")
        mfu = fast.get("mfu")
        real = all((d.get("data") or {}).get("real") for d in runs.values())
        lines.append(
            f"| {model} on {dataset}{'' if real else ' (synthetic)'} | {_acc(target)} | "
            f"{_fmt(seed.get('time_to_accuracy_s'), '.2f')} | "
            f"{_fmt(fast.get('time_to_accuracy_s'), '.3f')} | {_fmt(tta, '.1f')}x | "
            f"{_fmt(seed.get('images_per_s'), ',.0f')} | {_fmt(fast.get('images_per_s'), ',.0f')} "
            f"| {_fmt(ips, '.1f')}x | {_acc(seed.get('best_test_acc'))} | "
            f"{_acc(fast.get('best_test_acc'))} | "
            f"{_fmt(mfu * 100 if mfu is not None else None, '.1f')} |")
    return "\n".join(lines)


def repeats_table(docs: list[dict]) -> str:
    """Per configuration over its repeats: median and min-max of images/s and epoch time,
    accuracy as mean +- std (each repeat has its own seed)."""
    groups: dict[tuple, list[dict]] = {}
    for d in docs:
        if d["status"] == "ok":
            key = tuple(str(d["config"].get(k)) for k in CONFIG_KEYS)
            groups.setdefault(key, []).append(d.get("summary") or {})
    lines = ["| configuration | repeats | images/s median (min-max) | epoch s median (min-max) | "
             "accuracy % mean +- std |", "|---|---|---|---|---|"]
    for key, runs in groups.items():
        cells = []
        for field, spec in (("images_per_s", ",.0f"), ("epoch_time_s", ".2f")):
            vals = sorted(r[field] for r in runs if r.get(field) is not None)
            cells.append(f"{_fmt(statistics.median(vals), spec)} ({_fmt(vals[0], spec)}-"
                         f"{_fmt(vals[-1], spec)})" if vals else "-")
        accs = [r["final_test_acc"] * 100 for r in runs if r.get("final_test_acc") is not None]
        acc = (f"{statistics.mean(accs):.2f} +- "
               f"{statistics.stdev(accs) if len(accs) > 1 else 0.0:.2f}" if accs else "-")
        name = "/".join(key[:4]) + f" bs{key[6]} {key[7]}"
        lines.append(f"| {name} | {len(runs)} | {cells[0]} | {cells[1]} | {acc} |")
    return "\n".join(lines)


def suite_table(paths: list[Path]) -> str:
    """Markdown tables of a suite run: per experiment (seed vs fast), per run, and the
    spread over repeats when there are any."""
    docs = [read_result(p) for p in paths]
    out = experiments_table(docs) + "\n\n" + runs_table(docs)
    if any(d.get("repeat", 0) > 0 for d in docs):
        out += "\n\n" + repeats_table(docs)
    return out
