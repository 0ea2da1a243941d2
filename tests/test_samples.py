"""bench samples on a fake dataset: the course's 4x5 grid, and mnist-perm's two side-by-side
panels (unpermuted | permuted), read back from the Figure."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from bench.data import samples
from bench.errors import BenchError
from bench.gate import compare

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_dataset(perm: bool = False, channels: int = 1) -> types.SimpleNamespace:
    """DatasetArrays-like: 40 images of 10 classes; perm mimics mnist-perm's storage."""
    rng = np.random.default_rng(0)
    size = 28 if channels == 1 else 32
    x = rng.integers(0, 256, (40, size, size, channels), dtype=np.uint8)
    original = x.copy()
    p = rng.permutation(size * size) if perm else None
    if p is not None:
        x = x.reshape(40, -1, channels)[:, p].reshape(x.shape)
    return types.SimpleNamespace(train_x=x, train_y=np.arange(40, dtype=np.int64) % 10,
                                 test_x=x[:4], test_y=np.arange(4), real=False, perm=p,
                                 classes=[f"class{i}" for i in range(10)], original=original)


def grid_shape(fig_or_subfig) -> tuple[int, int]:
    """(rows, columns) of the grid the visible tiles sit in."""
    shapes = {ax.get_subplotspec().get_gridspec().get_geometry() for ax in fig_or_subfig.axes}
    assert len(shapes) == 1
    return shapes.pop()


def visible(fig_or_subfig) -> list:
    return [ax for ax in fig_or_subfig.axes if ax.get_visible()]


def test_plain_dataset_is_one_4x5_grid_with_class_names():
    fig = samples.samples_figure(fake_dataset(), n=20)
    assert not fig.subfigs
    assert grid_shape(fig) == (4, 5)
    tiles = visible(fig)
    assert len(tiles) == 20
    assert sorted({ax.get_title() for ax in tiles}) == [f"class{i}" for i in range(10)]


def test_permuted_dataset_is_two_grids_side_by_side():
    data = fake_dataset(perm=True)
    fig = samples.samples_figure(data, n=20)
    assert len(fig.subfigs) == 2
    left, right = fig.subfigs
    assert grid_shape(left) == grid_shape(right) == (4, 5)
    assert len(visible(left)) == len(visible(right)) == 20
    assert "unpermuted" in left.get_suptitle()
    assert right.get_suptitle().startswith("permuted")
    # the same image, tile for tile: left shows it as drawn, right as the model sees it
    idx = samples.pick_indices(data.train_y, 20)
    first_left = left.axes[0].get_images()[0].get_array()
    first_right = right.axes[0].get_images()[0].get_array()
    assert np.array_equal(first_left, data.original[idx[0], ..., 0])
    assert np.array_equal(first_right, data.train_x[idx[0], ..., 0])
    assert [ax.get_title() for ax in left.axes] == [ax.get_title() for ax in right.axes]


def test_a_partial_last_row_hides_the_empty_tiles():
    fig = samples.samples_figure(fake_dataset(channels=3), n=12)
    assert grid_shape(fig) == (3, 5)
    assert len(visible(fig)) == 12


def test_unpermute_inverts_the_permutation():
    rng = np.random.default_rng(1)
    orig = rng.integers(0, 256, (3, 4, 4, 1), dtype=np.uint8)
    perm = rng.permutation(16)
    permuted = orig.reshape(3, -1, 1)[:, perm].reshape(orig.shape)
    assert np.array_equal(samples.unpermute(permuted, perm), orig)


def test_pick_indices_cover_every_class():
    idx = samples.pick_indices(np.arange(40) % 10, 10)
    assert sorted(np.array(idx) % 10) == list(range(10))


@pytest.mark.parametrize("perm, channels", [(False, 1), (True, 1), (False, 3)])
def test_samples_png(tmp_path, perm, channels):
    path = samples.draw_samples(fake_dataset(perm, channels), tmp_path / "s.png", n=12)
    assert path.read_bytes()[:8] == PNG_MAGIC and imread(path).ndim == 3


def test_empty_dataset_is_a_bench_error():
    data = fake_dataset()
    data.train_y = np.array([], dtype=np.int64)
    with pytest.raises(BenchError, match="no training images"):
        samples.samples_figure(data)


def test_samples_cli_uses_load_dataset_and_defaults_to_20(tmp_path, monkeypatch, capsys):
    calls = []
    drawn = []

    def load_dataset(name, data_dir, seed=0, allow_synthetic=False, download=False):
        assert download is False  # never unasked (issue 25.6)
        calls.append((name, data_dir, seed, allow_synthetic))
        return fake_dataset(perm=name == "mnist-perm")

    real_figure = samples.samples_figure

    def spy(data, n=20, seed=0, title=None):
        drawn.append(n)
        return real_figure(data, n, seed, title)

    monkeypatch.setitem(sys.modules, "bench.spec.datasets",
                        types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(samples, "samples_figure", spy)
    out = tmp_path / "perm.png"
    rc = compare.run_verb(samples.register, ["samples", "mnist-perm", "--out", str(out),
                                             "--data-dir", "/d"])
    assert rc == 0 and out.read_bytes()[:8] == PNG_MAGIC
    assert calls == [("mnist-perm", "/d", 0, False)]
    assert drawn == [20]


def test_samples_cli_rejects_a_bad_out(tmp_path: Path, capsys):
    rc = compare.run_verb(samples.register, ["samples", "mnist", "--out",
                                             str(tmp_path / "x.jpg")])
    assert rc == 2 and "must be a .png" in capsys.readouterr().err
