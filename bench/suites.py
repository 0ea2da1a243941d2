"""Named suites: lists of run configurations, run one after another; a failing configuration
(OOM, NaN, error) is recorded and the suite goes on with the next."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .datasets import load_dataset
from .errors import BenchError
from .results import read_result
from .runner import RunConfig, run

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
        # CPU: VGG's seed loop takes ~20 min/epoch here, so both VGG rows are capped by steps.
        cfgs = _pairs(COURSE[:5])
        cfgs += [RunConfig(model="vgg16", dataset="cifar10", recipe="seed", max_steps=40),
                 RunConfig(model="vgg16", dataset="cifar10", recipe="fast", max_steps=40)]
        return cfgs, ("reduced CPU suite (no GPU found): all course experiments, VGG16 capped "
                      "at 40 steps; about 10 minutes on 2 cores")
    if name == "ci":
        steps = 300 if on_gpu else 60
        models = [("fc", "mnist"), ("cnn", "mnist"), ("lenet", "cifar10"), ("vgg16", "cifar10")]
        return [RunConfig(model=m, dataset=d, recipe="fast", max_steps=steps if m != "vgg16"
                          else (steps if on_gpu else 10)) for m, d in models], (
            f"CI suite: fast recipe, {steps} steps per model")
    if name == "smoke":
        return [RunConfig(model=m, dataset=d, recipe="fast", max_steps=20)
                for m, d in [("fc", "mnist"), ("cnn", "mnist"), ("lenet", "cifar10")]], (
            "smoke suite: 20 steps per model")
    raise BenchError(f"unknown suite {name!r}; choices: default, ci, smoke")


SUITES = ("default", "ci", "smoke")


def _real_data_available(data_dir: str | None) -> dict[str, bool]:
    out = {}
    for ds in ("mnist", "cifar10"):
        try:
            load_dataset(ds, data_dir, download=False)
            out[ds] = True
        except BenchError:
            out[ds] = False
    return out


def run_suite(name: str, *, data_dir: str | None, out_dir: str, device: str = "auto",
              repeats: int = 1, overrides: dict | None = None, quiet: bool = False
              ) -> list[Path]:
    """Run every configuration of a suite `repeats` times (each repeat its own seed)."""
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    cfgs, what = suite_configs(name, on_gpu)
    real = _real_data_available(data_dir)
    print(f"suite {name}: {what}", file=sys.stderr)
    for ds, ok in real.items():
        if not ok:
            print(f"suite {name}: no real {ds} in {data_dir or '$BENCH_DATA_DIR'}: using "
                  f"synthetic-{ds} (throughput only, accuracy meaningless)", file=sys.stderr)
    paths: list[Path] = []
    for cfg in cfgs:
        for r in range(repeats):
            c = replace(cfg, data_dir=data_dir, out=out_dir, device=device, suite=name,
                        repeat=r, seed=cfg.seed + r, allow_synthetic=True, quiet=quiet,
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


def suite_table(paths: list[Path]) -> str:
    """Markdown table of a suite run, with each fast row's speed-up over its seed row."""
    docs = [read_result(p) for p in paths]
    seed_tta: dict[tuple[str, str], dict] = {}
    for d in docs:
        c = d["config"]
        if c["recipe"] == "seed":
            seed_tta[(c["model"], c["dataset"])] = d
    head = ("| model | dataset | recipe | loader | precision | status | images/s | epoch s | "
            "accuracy | time to target s | speed-up (TTA) | speed-up (img/s) | MFU |")
    lines = [head, "|" + "---|" * 13]
    for d in docs:
        c, s = d["config"], d.get("summary") or {}
        base = seed_tta.get((c["model"], c["dataset"]))
        su_tta = su_ips = None
        if base and c["recipe"] != "seed":
            bs = base.get("summary") or {}
            if bs.get("time_to_accuracy_s") and s.get("time_to_accuracy_s"):
                su_tta = bs["time_to_accuracy_s"] / s["time_to_accuracy_s"]
            if bs.get("images_per_s") and s.get("images_per_s"):
                su_ips = s["images_per_s"] / bs["images_per_s"]
        acc = s.get("final_test_acc")
        data_note = "" if (d.get("data") or {}).get("real") else " (synthetic)"
        lines.append(
            f"| {c['model']} | {c['dataset']}{data_note} | {c['recipe']} | {c['loader']} | "
            f"{c['precision']} | {d['status']} | {_fmt(s.get('images_per_s'), ',.0f')} | "
            f"{_fmt(s.get('epoch_time_s'), '.2f')} | "
            f"{_fmt(acc * 100 if acc is not None else None, '.2f')} | "
            f"{_fmt(s.get('time_to_accuracy_s'), '.2f')} | {_fmt(su_tta, '.1f')} | "
            f"{_fmt(su_ips, '.1f')} | {_fmt((s.get('mfu') or 0) * 100 or None, '.1f')} |")
    return "\n".join(lines)
