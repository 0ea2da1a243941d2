"""The built-in suites and one line each on what it measures.

Torch-free on purpose: `bench suite --help` lists them without importing torch. What a suite
runs (its members, recipes, step caps) is built in `bench.suites.policy`, which takes its names from
here.
"""

from __future__ import annotations

from pathlib import Path

SUITES: dict[str, str] = {  # one short line each: `bench suite --help` prints them as a table
    "default": "fc, cnn, lenet, vgg11 (the course) + vgg16: seed loop, then fast",
    "ci": "fast recipes, images/s over a time budget (the gate of bench ci)",
    "smoke": "20 steps of each small model: a quick check that training runs",
    "vgg-ablation": "VGG: fp32, bf16, + channels-last, + torch.compile",
}
MODEL_SUITES = ("A model may name further suites in its spec: 20 steps of its fast recipe "
                "each. A suite file (FILE.toml, docs/plugins.md) lists its own runs. The "
                "default suite measures for throughput only (a few steps, no "
                "evaluation) the heavy models (vgg11, vgg16) on a CPU, and on any device every "
                "run on synthetic data (a dataset not in --data-dir: only --download fetches "
                "one).")

BUILTIN_SUITES = tuple(SUITES)
SUITE_FILE_SUFFIX = ".toml"


def suite_label(name: str) -> str:
    """A suite's name in its results, its lines, its table's file and its baseline's folder:
    a suite file's (FILE.toml, or an existing file) is its stem."""
    if name in SUITES:
        return name
    path = Path(name)
    return path.stem if name.endswith(SUITE_FILE_SUFFIX) or path.is_file() else name
