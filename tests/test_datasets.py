from pathlib import Path

import numpy as np
import pytest
from conftest import make_cifar, make_mnist

from bench.errors import BenchError
from bench.spec.datasets import load_dataset, pixel_permutation, read_idx


def test_idx_reader_gz_and_plain(tiny_data) -> None:
    root, mnist, _ = tiny_data
    raw = root / "MNIST" / "raw"
    assert np.array_equal(read_idx(raw / "train-images-idx3-ubyte.gz"), mnist["train_x"])
    assert np.array_equal(read_idx(raw / "t10k-labels-idx1-ubyte"), mnist["test_y"])


def test_idx_reader_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(BenchError, match="magic"):
        read_idx(tmp_path / "x")
    (tmp_path / "y").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\0" * 5)
    with pytest.raises(BenchError, match="size mismatch"):
        read_idx(tmp_path / "y")


def test_mnist_loads_in_nhwc(tiny_data) -> None:
    root, mnist, _ = tiny_data
    d = load_dataset("mnist", root)
    assert d.train_x.shape == (256, 28, 28, 1) and d.train_x.dtype == np.uint8
    assert np.array_equal(d.train_x[..., 0], mnist["train_x"])
    assert np.array_equal(d.test_y, mnist["test_y"].astype(np.int64)) and d.real


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_folder_and_tarball(tmp_path: Path, as_tar: bool) -> None:
    ref = make_cifar(tmp_path, as_tar=as_tar)
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (200, 32, 32, 3)
    assert np.array_equal(d.train_x, ref["train_x"]) and np.array_equal(d.test_y, ref["test_y"])
    if as_tar:  # unpacked into the harness cache, never beside the data
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_permutation_is_shared_by_train_and_test(tiny_data) -> None:
    root, mnist, _ = tiny_data
    d = load_dataset("mnist-perm", root, seed=7)
    perm = pixel_permutation(7)
    assert np.array_equal(d.perm, perm)
    assert not np.array_equal(perm, np.arange(784))
    for split in ("train", "test"):
        flat = mnist[f"{split}_x"].reshape(-1, 784)
        assert np.array_equal(getattr(d, f"{split}_x").reshape(-1, 784), flat[:, perm])
    assert not np.array_equal(pixel_permutation(8), perm)


def test_missing_dataset_names_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "nowhere" in msg and "cifar-10-batches-py" in msg and "\n" not in msg


def test_missing_file_among_mnist(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-images-idx3-ubyte").unlink()
    with pytest.raises(BenchError, match="MNIST/raw"):
        load_dataset("mnist", tmp_path, download=False)


def test_synthetic_fallback_is_labelled(tmp_path: Path) -> None:
    d = load_dataset("mnist", tmp_path, allow_synthetic=True, download=False)
    assert not d.real and d.train_x.shape == (60000, 28, 28, 1)
    assert d.extra["fallback_for"] == "mnist"


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(BenchError, match="choices: mnist"):
        load_dataset("imagenet")


# ----------------------------------------------------------------------------- downloads
def _fake_download(monkeypatch: pytest.MonkeyPatch, family: str, action) -> list[object]:
    """Replace the family's download (its FamilySpec row) by `action(root)`; every call is
    recorded with the socket timeout in force during it."""
    import socket
    from dataclasses import replace

    from bench.spec import datasets

    calls: list[object] = []

    def fake(root: Path) -> None:
        calls.append(socket.getdefaulttimeout())
        action(root)

    monkeypatch.setitem(datasets.FAMILIES, family,
                        replace(datasets.FAMILIES[family], download=fake))
    return calls


def test_nothing_is_downloaded_by_default(tmp_path: Path, monkeypatch) -> None:
    """load_dataset(download=False), as every run and suite now calls it: no network attempt,
    and the line says how to get the data."""
    from bench.spec.datasets import FETCH_HINT

    calls = _fake_download(monkeypatch, "mnist", lambda root: pytest.fail("downloaded"))
    with pytest.raises(BenchError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert calls == [] and FETCH_HINT in str(err.value) and "\n" not in str(err.value)


def test_a_download_runs_under_a_timeout_that_is_put_back(tmp_path: Path, monkeypatch) -> None:
    import socket

    from bench.spec.datasets import DOWNLOAD_TIMEOUT_S

    calls = _fake_download(monkeypatch, "mnist", make_mnist)
    before = socket.getdefaulttimeout()
    d = load_dataset("mnist", tmp_path / "empty", download=True)
    assert calls == [DOWNLOAD_TIMEOUT_S] and socket.getdefaulttimeout() == before
    assert d.real and d.source.endswith("(downloaded)")


def test_a_stalled_download_fails_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """torchvision prints its URLs and each failed mirror over several lines: swallowed; the
    timeout reaches the error's one line, and the socket default is restored."""
    import socket

    def stall(root: Path) -> None:
        print("Downloading http://example.invalid/train-images-idx3-ubyte.gz\n"
              "Failed to download (trying next):\n<urlopen error timed out>\n")
        raise TimeoutError("timed out")

    calls = _fake_download(monkeypatch, "mnist", stall)
    socket.setdefaulttimeout(3.5)  # whatever was set before comes back
    try:
        with pytest.raises(BenchError) as err:
            load_dataset("mnist", tmp_path, download=True)
        assert socket.getdefaulttimeout() == 3.5
    finally:
        socket.setdefaulttimeout(None)
    msg = str(err.value)
    assert len(calls) == 1 and calls[0] != 3.5 and calls[0] is not None
    assert "download failed: TimeoutError: timed out" in msg and "\n" not in msg
    assert capsys.readouterr().out == ""
