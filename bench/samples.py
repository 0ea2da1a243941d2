"""`bench samples DATASET --out FILE.png`: a grid of training images with their class names.

A look at the data catches the bugs no throughput figure shows (wrong channel order, labels off
by one, a permutation applied twice). For mnist-perm each image stands beside its unpermuted
version, so one sees that the pixels are the same, only scrambled.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BenchError
from .fsutil import os_reason, writable_dir
from .results import save_figure
from .runspec import add_run_flags

# More is no longer a look at the data, and every tile is a matplotlib Axes (slow to draw;
# mnist-perm draws two per image). 100,000,000 used to run until killed.
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


def draw_samples(data: Any, out: str | Path, n: int = 32, seed: int = 0,
                 title: str | None = None) -> Path:
    """Draw n training images of a DatasetArrays-like object into a PNG."""
    from matplotlib.figure import Figure

    idx = pick_indices(data.train_y, n, seed)
    if not idx:
        raise BenchError("the dataset has no training images to show")
    images = np.asarray(data.train_x)[idx]
    if images.ndim == 3:
        images = images[..., None]
    classes = list(data.classes)

    def name(i: int) -> str:
        y = int(data.train_y[i])
        return classes[y] if y < len(classes) else str(y)

    perm = getattr(data, "perm", None)
    tiles: list[tuple[np.ndarray, str]] = []
    if perm is not None:
        originals = unpermute(images, np.asarray(perm))
        for k, i in enumerate(idx):
            tiles += [(images[k], f"{name(i)} (permuted)"), (originals[k], f"{name(i)}")]
    else:
        tiles = [(images[k], name(i)) for k, i in enumerate(idx)]
    ncols = 8
    nrows = -(-len(tiles) // ncols)
    fig = Figure(figsize=(ncols * 1.3, nrows * 1.45 + 0.4))
    for k, (img, label) in enumerate(tiles):
        _show(fig.add_subplot(nrows, ncols, k + 1), img, label)
    if title:
        fig.suptitle(title)
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
    from .datasets import load_dataset

    if not 1 <= args.n <= MAX_SAMPLES:
        raise BenchError(f"--n {args.n}: must be between 1 and {MAX_SAMPLES:,}")
    check_out(args.out)
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed,
                        allow_synthetic=args.allow_synthetic)
    kind = "real" if getattr(data, "real", True) else "synthetic stand-in"
    print(draw_samples(data, args.out, args.n, args.seed, f"{args.dataset} ({kind})"))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("samples", help="draw a grid of training images with class names")
    p.add_argument("dataset", help="mnist, mnist-perm, cifar10, synthetic-mnist, ...")
    p.add_argument("--out", required=True, help="PNG file to write")
    add_run_flags(p, include=("data_dir",))
    p.add_argument("--n", type=int, default=32,
                   help=f"number of images, 1 to {MAX_SAMPLES:,} (default 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed: which images are "
                   "drawn (and synthetic data)")
    p.add_argument("--allow-synthetic", action="store_true",
                   help="draw synthetic stand-ins when the real data is absent")
    p.set_defaults(func=handler)
