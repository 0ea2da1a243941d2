"""`bench samples DATASET --out FILE.png`: a grid of training images with their class names.

A look at the data catches the bugs no throughput figure shows (wrong channel order, labels off
by one, a permutation applied twice). As in the course, the images are a grid of 5 columns (4x5
for the default 20). For mnist-perm two such grids stand side by side: the images as drawn and
the same images as the model sees them, so one sees that the pixels are the same, only
scrambled.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.fsutil import os_reason, writable_dir
from bench.results import save_figure
from bench.spec.runspec import add_run_flags

# More is no longer a look at the data, and every tile is a matplotlib Axes (slow to draw;
# mnist-perm draws two grids). 100,000,000 used to run until killed.
MAX_SAMPLES = 1_000


def pick_indices(labels: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """n random training indices, taken round-robin over the classes so each one shows."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)).tolist()
                 for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < n and any(per_class):
        for idxs in per_class:
            if idxs and len(out) < n:
                out.append(idxs.pop(0))
    return out


def unpermute(images: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Invert a pixel permutation: permuted[:, j] = orig[:, perm[j]] (flattened H*W)."""
    n, h, w, c = images.shape
    orig = np.empty_like(images)
    orig.reshape(n, h * w, c)[:, perm] = images.reshape(n, h * w, c)
    return orig


def _show(ax: Any, img: np.ndarray, title: str) -> None:
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


COLUMNS = 5  # the course's grid: 4 rows of 5 for 20 images


def _grid(fig: Any, images: np.ndarray, names: list[str], title: str | None) -> None:
    """One grid of tiles (rows of COLUMNS) on a figure or subfigure."""
    nrows = -(-len(images) // COLUMNS)
    axes = fig.subplots(nrows, COLUMNS, squeeze=False).ravel()
    for ax, img, name in zip(axes, images, names, strict=False):
        _show(ax, img, name)
    for ax in axes[len(images):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)


def samples_figure(data: Any, n: int = 20, seed: int = 0, title: str | None = None) -> Any:
    """n training images of a DatasetArrays-like object as a Figure: one grid, or for a
    permuted dataset two (unpermuted | permuted) side by side."""
    from matplotlib.figure import Figure

    idx = pick_indices(data.train_y, n, seed)
    if not idx:
        raise BenchError("the dataset has no training images to show")
    images = np.asarray(data.train_x)[idx]
    if images.ndim == 3:
        images = images[..., None]
    classes = list(data.classes)
    names = [classes[y] if y < len(classes) else str(y)
             for y in (int(data.train_y[i]) for i in idx)]
    perm = getattr(data, "perm", None)
    nrows = -(-len(idx) // COLUMNS)
    panels = 1 if perm is None else 2
    fig = Figure(figsize=(panels * COLUMNS * 1.3 + (panels - 1) * 0.4, nrows * 1.45 + 0.6),
                 layout="constrained")
    if perm is None:
        _grid(fig, images, names, None)
    else:
        left, right = fig.subfigures(1, 2, wspace=0.05)
        _grid(left, unpermute(images, np.asarray(perm)), names, "unpermuted (as drawn)")
        _grid(right, images, names, "permuted (what the model sees)")
    if title:
        fig.suptitle(title)
    return fig


def draw_samples(data: Any, out: str | Path, n: int = 20, seed: int = 0,
                 title: str | None = None) -> Path:
    """Draw n training images of a DatasetArrays-like object into a PNG."""
    fig = samples_figure(data, n, seed, title)
    path = Path(out)
    try:
        save_figure(fig, path)
    except OSError as exc:
        raise BenchError(f"cannot write {path} ({os_reason(exc)})") from None
    return path


def check_out(out: str | Path) -> Path:
    """A PNG path whose folder is writable, checked before the data is loaded."""
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise BenchError(f"--out {out}: must be a .png file (the grid is drawn as a PNG)")
    if path.is_dir():
        raise BenchError(f"--out {out}: is a folder; name a .png file")
    writable_dir(path.parent, "output folder")
    return path


def handler(args: argparse.Namespace) -> int:
    from bench.spec.datasets import load_dataset

    if not 1 <= args.n <= MAX_SAMPLES:
        raise BenchError(f"--n {args.n}: must be between 1 and {MAX_SAMPLES:,}")
    check_out(args.out)
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed,
                        allow_synthetic=args.allow_synthetic, download=args.download)
    kind = "real" if getattr(data, "real", True) else "synthetic stand-in"
    print(draw_samples(data, args.out, args.n, args.seed, f"{args.dataset} ({kind})"))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("samples", help="draw a grid of training images with class names")
    p.add_argument("dataset", help="mnist, mnist-perm, cifar10, synthetic-mnist, ...")
    p.add_argument("--out", required=True, help="PNG file to write")
    add_run_flags(p, include=("data_dir", "download"))
    p.add_argument("--n", type=int, default=20,
                   help=f"number of images, 1 to {MAX_SAMPLES:,} (default 20: the course's"
                   " 4x5 grid)")
    p.add_argument("--seed", type=int, default=0, help="random seed: which images are "
                   "drawn (and synthetic data)")
    p.add_argument("--allow-synthetic", action="store_true",
                   help="draw synthetic stand-ins when the real data is absent")
    p.set_defaults(func=handler)
