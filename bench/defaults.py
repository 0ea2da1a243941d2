"""Defaults every verb shares, the exit codes, and the precision table: one home for each.

Torch-free on purpose: the CLI reads its flag defaults from here before any verb has imported
torch, so `bench compare --help` starts in a fraction of a second. Torch dtypes are resolved
by name only when a run asks for them (`Precision.autocast_dtype`, `Precision.input_dtype`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = "results"  # where result files go and where suite names are looked up
BASELINES_SUBDIR = "baselines"  # results/baselines/<device-slug>.json (bench ci)
GATES_SUBDIR = "gates"  # results/gates/<batch-id>.json: the verdicts of `bench ci` jobs
DATA_DIR_ENV = "BENCH_DATA_DIR"  # folder holding the datasets in their official layouts
# The folder holding the bench package: a checkout's root when run from one (pyproject.toml,
# git), or site-packages when installed.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR_ENV = "BENCH_CACHE_DIR"  # harness-owned cache (unpacked archives, .beton files)
CACHE_HINT = f"set ${CACHE_DIR_ENV} to a writable folder"


def cache_dir() -> Path:
    """Harness-owned cache (unpacked archives, downloads, .beton files, the measured peak)."""
    base = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bench")
    return Path(base)

DEVICE = "auto"  # CUDA when torch can use it, else the CPU
WARMUP_STEPS = 5  # the untimed warm-up pass: compilation, autotuning, loader JIT
WINDOW_STEPS = 50  # steps between two clock reads (device syncs) in steady state
# CIFAR training augmentation: random translation of up to this many pixels (zero-filled, the
# course's RandomCrop(32, padding=4)) and a horizontal flip; a recipe may choose less
AUGMENT_PAD = 4
COMPILE_MODES = ("none", "default", "max-autotune", "reduce-overhead")
MEASURES = ("train", "throughput")  # a recipe's training run, or images/s for comparison
# --measure throughput: seconds of timed steps per run, by device type (docs/ci.md: why)
THROUGHPUT_BUDGET_S = {"cpu": 2.0, "cuda": 5.0}

# The process exit code of each run status; 2 is a user error (BenchError).
EXIT_CODES = {"ok": 0, "error": 1, "nan": 3, "oom": 4, "interrupted": 130}
EXIT_BAD_INPUT = 2
EXIT_UNGATED = 3  # bench compare / ci: a configuration could not be gated (too noisy)
EXIT_INCOMPLETE = 3  # bench doctor / first contact: nothing failed, a time bound left some out


def data_dir_default() -> str | None:
    """The data folder when no --data-dir is given: $BENCH_DATA_DIR, read at call time."""
    return os.environ.get(DATA_DIR_ENV) or None


@dataclass(frozen=True)
class Precision:
    """What a precision name means for a training step."""

    name: str
    autocast: str | None  # torch dtype name autocast runs in; None: no autocast
    tf32: bool  # TensorFloat-32 matmuls/convolutions on CUDA
    grad_scaler: bool  # fp16 needs loss scaling to keep small gradients
    activation_bytes: int  # bytes per activation element (roofline traffic model)

    @property
    def autocast_dtype(self) -> Any:
        import torch

        return getattr(torch, self.autocast) if self.autocast else None

    @property
    def input_dtype(self) -> Any:
        """Loaders hand the model its inputs already in the autocast dtype: half the bytes."""
        import torch

        return self.autocast_dtype or torch.float32


PRECISION_TABLE: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", None, tf32=False, grad_scaler=False, activation_bytes=4),
    Precision("tf32", None, tf32=True, grad_scaler=False, activation_bytes=4),
    Precision("bf16", "bfloat16", tf32=False, grad_scaler=False, activation_bytes=2),
    Precision("fp16", "float16", tf32=False, grad_scaler=True, activation_bytes=2),
)}
PRECISIONS = tuple(PRECISION_TABLE)


def precision(name: str) -> Precision:
    """The table entry; unknown names are rejected by the run options before they get here."""
    return PRECISION_TABLE[name]

# The most runs one invocation may ask for (--repeats of `run`, `suite` and `ci`, `ci
# --rounds`), checked before any work: a 1% slowdown at the noisiest raw images/s docs/ci.md
# measured (sd 3.7%) needs 253 runs a side (stats.repeats_needed, alpha 5% over the ci suite's
# 4 configurations), and 1,000 rounds of the ci suite take about 5 hours on the CPU (69 s per
# 4 rounds); a larger count is a typo that would run for months before anyone noticed.
MAX_REPEATS = 1000

# The loaders, by name (each is bench/data/loaders/<name>_loader.py), and their former names,
# still accepted on the command line and read in old result files as the new name: the
# device-resident loader was called `gpu`, though it runs on a CPU too.
LOADERS = ("torch", "device", "ffcv")
LOADER_ALIASES: dict[str, str] = {"gpu": "device"}


def canonical_loader(name: str) -> str:
    """The loader's current name for `name` (an alias or a name; unknown names unchanged)."""
    return LOADER_ALIASES.get(name, name)
