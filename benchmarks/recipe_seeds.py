"""Images to target of a recipe over several seeds, one `bench run` at a time: a markdown table.

    python benchmarks/recipe_seeds.py --data-dir ../shared/data
    python benchmarks/recipe_seeds.py --models fc --datasets mnist --seeds 1,2,3,4,5
    python benchmarks/recipe_seeds.py --variant cuda      # fast@cuda's settings, on the CPU

Each run is `python -m bench run --recipe fast --device cpu --seed S` in its own process
(torch's thread count and caches do not leak from one run into the next); its result file gives
`images_to_accuracy` (training images until the target was first reached at an evaluation) and
`best_test_acc`. `--variant cuda` runs the model's `fast@cuda` recipe on the CPU through the
run flags that set its fields (batch size, lr, epochs, evaluation cadence, precision, layout),
eagerly (`--compile none`: compilation changes speed, not the recipe) and with the CPU recipe's
threads (also speed only); a field that differs and has no flag stops the script, naming it.

The seed column is the images of the course's loop (the model's `seed` recipe) up to its last
epoch-end evaluation: its epochs times the full batches of an epoch. That is its images to target
for the one-epoch MNIST loop (59,968), where the course's figure is its accuracy after that epoch;
a loop of several epochs may reach its target at an earlier epoch end (measure it with `bench run
--recipe seed`), so for it the column is an upper bound: give the measured figure with
`--seed-images` (LeNet's loop reaches 62% at its 8th epoch end: 399,872).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.spec.datasets import FAMILIES
from bench.spec.models import get_model_spec
from bench.spec.recipes import Recipe
from bench.spec.runspec import RunConfig, flag_name

# recipe fields that change the speed of a run, not what it computes
SPEED_ONLY = {"compile", "threads", "workers", "fused_optimizer"}


def seed_images(model: str) -> int:
    """Images the course's loop trains on before its last epoch-end evaluation."""
    spec = get_model_spec(model)
    seed = spec.recipe("seed")
    train_size = FAMILIES[spec.family].sizes[0]
    return int(seed.epochs) * (train_size // seed.batch_size) * seed.batch_size


def _flag(name: str, value: object) -> list[str]:
    if isinstance(value, bool):
        return [flag_name(name) if value else "--no-" + name.replace("_", "-")]
    return [flag_name(name), str(value)]


def variant_flags(model: str, variant: str) -> list[str]:
    """`bench run` flags that turn the CPU `fast` recipe into the variant's settings."""
    if variant == "cpu":
        return []
    spec = get_model_spec(model)
    base, target = spec.recipe("fast", "cpu"), spec.recipe("fast", variant)
    flagged = {f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("recipe")}
    flags: list[str] = ["--compile", "none"]
    missing = []
    for f in dataclasses.fields(Recipe):
        value = getattr(target, f.name)
        if f.name in SPEED_ONLY or value == getattr(base, f.name):
            continue
        if f.name in flagged:
            flags += _flag(f.name, value)
        else:
            missing.append(f"{f.name}={value!r}")
    if missing:
        sys.exit(f"recipe_seeds: fast@{variant} of {model} differs from fast in fields no "
                 f"`bench run` flag sets: {', '.join(missing)}")
    return flags


def run_one(model: str, dataset: str, seed: int, flags: list[str], data_dir: str | None
            ) -> dict:
    """One `bench run` in its own process; its result's summary."""
    with tempfile.TemporaryDirectory(prefix="recipe_seeds-") as out:
        cmd = [sys.executable, "-m", "bench", "run", "--model", model, "--dataset", dataset,
               "--recipe", "fast", "--seed", str(seed), "--device", "cpu", "--out", out,
               "--quiet", "--no-progress", *flags]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = glob.glob(str(Path(out) / "*.json"))
        if proc.returncode != 0 or not files:
            sys.exit(f"recipe_seeds: {' '.join(cmd)} failed ({proc.returncode}): "
                     f"{proc.stderr.strip()[-500:]}")
        return json.loads(Path(files[0]).read_text())["summary"]


def _cell(summary: dict) -> str:
    images = summary.get("images_to_accuracy")
    if images:
        return f"{images:,}"
    return f"not reached, best {100 * (summary.get('best_test_acc') or 0):.1f}%"


def row(model: str, dataset: str, seeds: list[int], flags: list[str],
        data_dir: str | None, seed_count: int | None = None) -> str:
    """One experiment over the seeds, as a markdown table row."""
    spec = get_model_spec(model)
    summaries = [run_one(model, dataset, s, flags, data_dir) for s in seeds]
    images = [s.get("images_to_accuracy") or math.inf for s in summaries]
    median = statistics.median(images)
    base = seed_count or seed_images(model)
    ratio = f"{base / median:.1f}x" if math.isfinite(median) else "-"
    every = "yes" if all(math.isfinite(i) for i in images) else "no"
    eval_s = statistics.mean(s.get("total_eval_time_s") or 0.0 for s in summaries)
    med = f"{median:,.0f}" if math.isfinite(median) else "not reached"
    cells = [f"{model} on {dataset}", f"{100 * spec.target(dataset):g}%", f"{base:,}",
             *(_cell(s) for s in summaries), med, ratio, every, f"{eval_s:.2f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="fc,cnn", help="comma-separated models (default: fc,cnn)")
    p.add_argument("--datasets", default=None,
                   help="comma-separated datasets (default: each model's experiments)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default: 1,2,3)")
    p.add_argument("--variant", default="cpu", choices=("cpu", "cuda"),
                   help="cpu: the fast recipe; cuda: fast@cuda's settings run on the CPU")
    p.add_argument("--data-dir", default=None, help="folder holding the datasets "
                   "(default: $BENCH_DATA_DIR)")
    p.add_argument("--seed-images", type=int, default=None,
                   help="the course loop's measured images to target (default: its epochs)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"recipe fast@{args.variant} (run on the CPU), seeds {args.seeds}\n")
    print("| experiment | target | seed images | "
          + " | ".join(f"seed {s}" for s in seeds)
          + " | median | seed / median | every seed reached | eval s per run |")
    print("|" + "---|" * (len(seeds) + 7))
    for model in args.models.split(","):
        flags = variant_flags(model, args.variant)
        datasets = args.datasets.split(",") if args.datasets else get_model_spec(model).datasets
        for dataset in datasets:
            print(row(model, dataset, seeds, flags, args.data_dir, args.seed_images),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
