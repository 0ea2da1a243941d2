"""Issue 15, the data side: every bad input or fault of the data readers, `samples`, `loaders`
and the .beton lock gives one line (BenchError; `bench: error: ...` and exit 2 at the CLI),
never a traceback, a hang or a silently wrong run. docs/reliability.md lists the cases.

The ffcv writer's signal and failure cases run `bench convert` in subprocesses
(tests/test_ffcv.py); the peak cache's are in tests/test_flops.py.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from conftest import _cifar_batch, make_cifar, make_mnist
from test_datasets import _fake_download

from bench.errors import BenchError
from bench.spec.datasets import cifar10, load_dataset, read_idx


def one_line(exc: pytest.ExceptionInfo[BenchError]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def idx_bytes(code: int, dims: tuple[int, ...], payload: bytes = b"") -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims) + payload


RAW = Path("MNIST/raw")


# ----------------------------------------------------------------------------- MNIST (IDX)
@pytest.mark.parametrize("split,files", [
    ("test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    ("train", ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
])
def test_empty_mnist_split_is_refused(tmp_path: Path, split: str, files, bench_cli) -> None:
    """Before: an empty test set trained and was recorded ok with 0% accuracy."""
    import gzip

    make_mnist(tmp_path)
    for name, dims in zip(files, ((0, 28, 28), (0,)), strict=True):
        data = idx_bytes(0x08, dims)
        path = tmp_path / RAW / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(BenchError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert f"the {split} split is empty" in one_line(err)
    code, lines = bench_cli("samples", "mnist", "--data-dir", tmp_path,
                            "--out", tmp_path / "s.png")
    assert code == 2 and len(lines) == 1 and "is empty" in lines[0]


def test_idx_dims_that_overflow_are_a_size_mismatch(tmp_path: Path) -> None:
    """Before: 2^21 * 2^21 * 2^22 wrapped to 0 in int64 and reshape raised a ValueError."""
    (tmp_path / "x").write_bytes(idx_bytes(0x08, (1 << 21, 1 << 21, 1 << 22)))
    with pytest.raises(BenchError) as err:
        read_idx(tmp_path / "x")
    assert "size mismatch" in one_line(err)


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_idx_with_impossible_dimension_count(tmp_path: Path, ndim: int) -> None:
    (tmp_path / "x").write_bytes(bytes([0, 0, 0x08, ndim]) + b"\0\0\0\1" * ndim)
    with pytest.raises(BenchError) as err:
        read_idx(tmp_path / "x")
    assert "dimensions" in one_line(err)


def test_int32_idx_images_are_refused_by_name(tmp_path: Path) -> None:
    """Before: "Invalid mode for data type" from deep inside the loaders."""
    make_mnist(tmp_path)
    path = tmp_path / RAW / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(0x0C, (64, 28, 28), b"\0" * (64 * 28 * 28 * 4)))
    with pytest.raises(BenchError) as err:
        load_dataset("mnist", tmp_path, download=False)
    msg = one_line(err)
    assert str(path) in msg and "int32" in msg and "unsigned bytes" in msg


def test_mnist_labels_out_of_range(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    labels = np.zeros(64, np.uint8)
    labels[5] = 12
    (tmp_path / RAW / "t10k-labels-idx1-ubyte").write_bytes(
        idx_bytes(0x08, (64,), labels.tobytes()))
    with pytest.raises(BenchError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert "must be 0..9, found 12 at index 5" in one_line(err)


def test_mnist_images_of_the_wrong_shape(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    (tmp_path / RAW / "t10k-images-idx3-ubyte").write_bytes(
        idx_bytes(0x08, (64, 32, 32), b"\0" * (64 * 32 * 32)))
    with pytest.raises(BenchError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert "(32, 32, 1)" in one_line(err)


def test_data_dir_that_is_a_file(tmp_path: Path, bench_cli) -> None:
    """Before: "download failed: RuntimeError"."""
    f = tmp_path / "data"
    f.write_text("x")
    with pytest.raises(BenchError) as err:
        load_dataset("mnist", f)
    assert "is a file" in one_line(err)
    code, lines = bench_cli("samples", "cifar10", "--data-dir", f, "--out", tmp_path / "s.png")
    assert code == 2 and len(lines) == 1 and "is a file" in lines[0]


def test_missing_data_is_never_downloaded_unasked(tmp_path: Path, bench_cli,
                                                  monkeypatch) -> None:
    """Before: every run and suite tried torchvision's download, without a timeout: minutes
    per dataset on a node without network."""
    calls = _fake_download(monkeypatch, "mnist", lambda root: pytest.fail("downloaded"))
    code, lines = bench_cli("run", "--model", "fc", "--device", "cpu", "--data-dir",
                            tmp_path / "empty", "--out", tmp_path / "out")
    assert code == 2 and len(lines) == 1 and calls == []
    assert "mnist not found" in lines[0] and "--download" in lines[0]
    assert "--data-dir" in lines[0]


def test_a_stalled_download_is_one_line(tmp_path: Path, bench_cli, monkeypatch) -> None:
    """`--download` asked, the server silent: the download's own urllib call (no timeout
    of its own, as torchvision's) ends on the scoped socket timeout, and the failure is one
    line, exit 2. The timeout is shortened here; a safety timer closes the server so that a
    missing timeout fails the test instead of hanging it."""
    import socket
    import urllib.request

    from bench.spec import datasets

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # connections wait in the backlog: no reply ever comes
    url = f"http://127.0.0.1:{server.getsockname()[1]}/train-images-idx3-ubyte.gz"
    safety = threading.Timer(30, server.close)
    safety.start()
    monkeypatch.setattr(datasets, "DOWNLOAD_TIMEOUT_S", 0.5)
    calls = _fake_download(monkeypatch, "mnist", lambda root: urllib.request.urlopen(url))
    try:
        code, lines = bench_cli("run", "--model", "fc", "--device", "cpu", "--download",
                                "--data-dir", tmp_path / "empty", "--out", tmp_path / "out")
    finally:
        safety.cancel()
        server.close()
    assert calls == [0.5] and socket.getdefaulttimeout() is None
    assert code == 2 and len(lines) == 1, lines
    assert "download failed:" in lines[0] and "timed out" in lines[0]


# ----------------------------------------------------------------------------- CIFAR-10
class _Payload:
    """What a hostile batch file holds: unpickling it runs a shell command."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_cifar_pickle_payload_is_refused_and_never_runs(tmp_path: Path, bench_cli) -> None:
    make_cifar(tmp_path)
    pwned = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": _Payload(f"touch {pwned}"), b"labels": []},
                                   protocol=2))
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    msg = one_line(err)
    assert str(batch) in msg and "refused" in msg and "system" in msg
    code, lines = bench_cli("samples", "cifar10", "--data-dir", tmp_path,
                            "--out", tmp_path / "s.png")
    assert code == 2 and len(lines) == 1 and "refused" in lines[0]
    assert not pwned.exists()
    # the payload is real: a plain pickle.load in a child process runs it
    probe = tmp_path / "probe"
    subprocess.run([sys.executable, "-c", "import pickle, sys; "
                    "pickle.loads(sys.stdin.buffer.read())"],
                   input=pickle.dumps(_Payload(f"touch {probe}"), protocol=2), timeout=120,
                   check=True, capture_output=True)
    assert probe.exists()


def test_restricted_unpickler_reads_numpy_1_and_2_batches(tmp_path: Path) -> None:
    """The official files name numpy.core.multiarray._reconstruct (numpy 1.x, Python 2);
    numpy 2 pickles name numpy._core...; both load."""
    from bench.spec.datasets.cifar10 import _read_cifar_batch

    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "b"
    _cifar_batch(path, x, np.array([1, 2, 3]), "b")
    raw = path.read_bytes()
    for old, new in ((b"numpy._core.multiarray", b"numpy.core.multiarray"), (b"", b"")):
        path.write_bytes(raw.replace(old, new) if old else raw)
        got, y = _read_cifar_batch(path)
        assert np.array_equal(got, x) and y.tolist() == [1, 2, 3]


def test_cifar_missing_batch_is_named(tmp_path: Path, bench_cli) -> None:
    """Before: trained on 40,000 of the 50,000 images without a word."""
    make_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    assert "missing data_batch_3" in one_line(err)
    code, lines = bench_cli("samples", "cifar10", "--data-dir", tmp_path,
                            "--out", tmp_path / "s.png")
    assert code == 2 and len(lines) == 1 and "data_batch_3" in lines[0]


def _bad_batches() -> dict[str, object]:
    ok = np.zeros((2, 3072), np.uint8)
    return {
        "a list": [1],
        "a string": "x",
        "data a list": {b"data": [[0] * 3072] * 2, b"labels": [0, 1]},
        "data float": {b"data": ok.astype(np.float32), b"labels": [0, 1]},
        "data 1-D": {b"data": np.zeros(3072, np.uint8), b"labels": [0]},
        "data 300": {b"data": ok.astype(np.int64) + 300, b"labels": [0, 1]},
        "labels str": {b"data": ok, b"labels": ["a", "b"]},
        "labels float": {b"data": ok, b"labels": [0.5, 1.0]},
        "labels 10": {b"data": ok, b"labels": [0, 10]},
        "labels short": {b"data": ok, b"labels": [0]},
        "no labels": {b"data": ok},
    }


@pytest.mark.parametrize("kind", list(_bad_batches()))
def test_cifar_batch_of_wrong_type_or_values(tmp_path: Path, kind: str) -> None:
    make_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps(_bad_batches()[kind], protocol=2))
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    assert str(batch) in one_line(err)


def test_cache_dir_that_is_a_file(tmp_path: Path, monkeypatch, bench_cli) -> None:
    make_cifar(tmp_path / "d", as_tar=True)
    cache = tmp_path / "cache"
    cache.write_text("x")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path / "d", download=False)
    msg = one_line(err)
    assert "cache folder" in msg and "is a file" in msg and "BENCH_CACHE_DIR" in msg


def test_read_only_cache_dir(tmp_path: Path, monkeypatch) -> None:
    """Root ignores permissions, so the refusal of a read-only file system is injected."""
    import bench.fsutil as fs

    make_cifar(tmp_path / "d", as_tar=True)

    def erofs(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fs.tempfile, "mkstemp", erofs)
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path / "d", download=False)
    assert "not writable (Read-only file system)" in one_line(err)


def test_cache_entry_missing_its_test_batch_heals_itself(tmp_path: Path, capsys) -> None:
    """Before: blamed the data dir ("not found in ...") and never recovered."""
    from bench.spec import datasets

    ref = make_cifar(tmp_path, as_tar=True)
    load_dataset("cifar10", tmp_path, download=False)
    (entry,) = (datasets.cache_dir() / "cifar10").iterdir()
    (entry / "cifar-10-batches-py" / "test_batch").unlink()
    datasets._load_real.cache_clear()
    capsys.readouterr()
    d = load_dataset("cifar10", tmp_path, download=False)
    assert np.array_equal(d.test_x, ref["test_x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incomplete (missing test_batch)" in err[0] and "again" in err[0]


def test_cache_entry_that_cannot_be_rebuilt_names_the_folder(tmp_path: Path,
                                                             monkeypatch) -> None:
    from bench.spec import datasets
    from bench.spec.datasets import cifar10

    make_cifar(tmp_path, as_tar=True)
    load_dataset("cifar10", tmp_path, download=False)
    (entry,) = (datasets.cache_dir() / "cifar10").iterdir()
    (entry / "cifar-10-batches-py" / "test_batch").unlink()
    datasets._load_real.cache_clear()

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(cifar10.shutil, "rmtree", denied)
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    msg = one_line(err)
    assert str(entry) in msg and "delete that folder" in msg


# ------------------------------------------------------------- hostile archives (issue 21, #3)
def _tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A tar.gz of exactly these members, headers as given (a size may lie: the data written
    is what `bytes` holds, padded to the tar block)."""
    buf = io.BytesIO()
    for info, data in members:
        buf.write(info.tobuf(format=tarfile.GNU_FORMAT))
        buf.write(data + b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    buf.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=1))
    return path


def _member(name: str, data: bytes = b"", size: int | None = None,
            kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = (len(data) if size is None else size), kind, link
    return info, data


def _cache_files() -> list[Path]:
    """Every file (and unpack folder) the CIFAR-10 cache holds."""
    from bench.spec import datasets

    root = datasets.cache_dir() / "cifar10"
    return [p for p in root.rglob("*") if p.is_file() or p.name.startswith(".unpack-")]


def _official_members(tmp_path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members of a small but valid archive, in order."""
    make_cifar(tmp_path / "src")
    folder = tmp_path / "src" / "cifar-10-batches-py"
    return [_member(f"cifar-10-batches-py/{p.name}", p.read_bytes())
            for p in sorted(folder.iterdir())]


def _refused(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    """Load a data folder holding this archive: the one-line refusal, nothing left cached."""
    from bench.spec import datasets

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    _tar_gz(data / "cifar-10-python.tar.gz", members)
    datasets._load_real.cache_clear()
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", data, download=False)
    assert _cache_files() == []
    return one_line(err)


def test_cifar_member_declaring_200mb_is_refused_before_unpacking(tmp_path: Path,
                                                                   bench_cli) -> None:
    """Before: a 204 KB archive whose data_batch_1 unpacks to 200 MB was unpacked in full and
    stayed in the cache. Here the header declares 200 MB (only its first bytes follow: the
    refusal comes from the header, before a byte of data is read)."""
    members = _official_members(tmp_path)
    members[1] = _member("cifar-10-batches-py/data_batch_1", b"\0" * 4096, size=200_000_000)
    msg = _refused(tmp_path, members)
    assert "cifar-10-python.tar.gz" in msg and "'cifar-10-batches-py/data_batch_1'" in msg
    assert "200000000 bytes" in msg and f"{cifar10.BATCH_MAX_BYTES}-byte bound" in msg
    code, lines = bench_cli("samples", "cifar10", "--data-dir", tmp_path / "data",
                            "--out", tmp_path / "s.png")
    assert code == 2 and len(lines) == 1 and "refused before unpacking" in lines[0]
    assert _cache_files() == []


def test_cifar_batch_over_its_bound_is_refused(tmp_path: Path, monkeypatch) -> None:
    """The same with real bytes: the bound lowered to 4 KB, a 64 KB batch of zeros."""
    monkeypatch.setattr(cifar10, "BATCH_MAX_BYTES", 4096)
    members = _official_members(tmp_path)[:1]  # batches.meta
    members.append(_member("cifar-10-batches-py/data_batch_1", b"\0" * 65536))
    msg = _refused(tmp_path, members)
    assert "65536 bytes" in msg and "4096-byte bound" in msg


def test_cifar_archive_that_unpacks_past_its_bound_is_refused(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A member that would be skipped (not a batch) still costs decompression: the whole
    stream is capped, so junk members (or a huge pax header) cannot grow without limit."""
    members = _official_members(tmp_path)
    monkeypatch.setattr(cifar10, "ARCHIVE_MAX_BYTES", sum(len(d) + 1024 for _, d in members))
    msg = _refused(tmp_path, [_member("cifar-10-batches-py/junk", b"\0" * 2**20), *members])
    assert "unpacks to more than" in msg


@pytest.mark.parametrize("member,words", [
    (lambda: _member("cifar-10-batches-py/data_batch_1", kind=tarfile.SYMTYPE,
                     link="/etc/passwd"), "symbolic link to '/etc/passwd'"),
    (lambda: _member("cifar-10-batches-py/data_batch_1", kind=tarfile.LNKTYPE,
                     link="cifar-10-batches-py/test_batch"), "hard link"),
    (lambda: _member("cifar-10-batches-py/data_batch_1", kind=tarfile.FIFOTYPE),
     "a device or FIFO"),
    (lambda: _member("../x", b"x"), "points outside"),
    (lambda: _member("cifar-10-batches-py/../../x", b"x"), "points outside"),
    # an absolute member name, built so that no machine's path is written here
    (lambda: _member(PurePosixPath("/", "x").as_posix(), b"x"), "points outside"),
], ids=["symlink", "hardlink", "fifo", "dotdot", "nested-dotdot", "absolute"])
def test_cifar_member_that_is_no_plain_file_is_refused(tmp_path: Path, member, words) -> None:
    members = _official_members(tmp_path)
    msg = _refused(tmp_path, [member(), *members])
    assert words in msg and "refused" in msg
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_cifar_archive_refusals_leave_no_cache_entry(tmp_path: Path) -> None:
    """A batch missing, twice, or not a batch: nothing stays in the cache (before: an archive
    lacking a batch left a cache entry marked complete)."""
    members = _official_members(tmp_path)
    assert "lacks cifar-10-batches-py/data_batch_3" in _refused(
        tmp_path, [m for m in members if m[0].name != "cifar-10-batches-py/data_batch_3"])
    assert "appears twice" in _refused(tmp_path, [*members, members[1]])
    junk = [m if m[0].name != "cifar-10-batches-py/test_batch"
            else _member(m[0].name, b"not a pickle") for m in members]
    assert "not a CIFAR-10 python batch" in _refused(tmp_path, junk)


def test_cifar_archive_within_bounds_still_loads(tmp_path: Path) -> None:
    members = _official_members(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    _tar_gz(data / "cifar-10-python.tar.gz",
            [_member("cifar-10-batches-py", kind=tarfile.DIRTYPE),
             _member("cifar-10-batches-py/readme.html", b"<html/>"), *members])
    d = load_dataset("cifar10", data, download=False)
    assert d.train_x.shape == (200, 32, 32, 3)
    names = sorted(p.name for p in _cache_files())
    assert names == [".complete", "batches.meta", *sorted(cifar10.CIFAR_BATCHES)]


def test_mnist_gzip_bomb_is_read_only_as_far_as_its_header_says(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Before: the whole .gz was decompressed into memory (a small bomb: gigabytes, the OOM
    killer). Now at most the header's declared bytes + 1 are read, and the excess refused."""
    payload = idx_bytes(0x08, (10, 28, 28), b"\0" * (10 * 784 + 8 * 2**20))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(payload, compresslevel=1))
    read: list[int] = []
    real_read = gzip.GzipFile.read

    def counted(self, size=-1):
        data = real_read(self, size)
        read.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counted)
    with pytest.raises(BenchError) as err:
        read_idx(path)
    msg = one_line(err)
    assert str(path) in msg and "more than declared" in msg
    assert sum(read) <= 16 + 10 * 784 + 1


def test_mnist_header_declaring_more_than_mnist_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (600_000, 28, 28), b"\0" * 1024)))
    with pytest.raises(BenchError) as err:
        read_idx(path)
    msg = one_line(err)
    assert "(600000, 28, 28)" in msg and "refused unread" in msg


# ----------------------------------------------------------------------------- samples
@pytest.mark.parametrize("argv,words", [
    (["--n", "0"], "between 1 and 1,000"),
    (["--n", "100000000"], "between 1 and 1,000"),
    (["--out", "{tmp}/x.txt"], "must be a .png"),
    (["--out", "{tmp}/file/x.png"], "is a file, not a folder"),
])
def test_samples_bounds_and_output(tmp_path: Path, argv, words, bench_cli,
                                   monkeypatch) -> None:
    """Before: --n 100000000 ran until killed; --out x.txt was accepted silently."""
    import bench.spec.datasets as ds

    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(ds, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    args = [a.format(tmp=tmp_path) for a in argv]
    out = [] if "--out" in args else ["--out", str(tmp_path / "s.png")]
    code, lines = bench_cli("samples", "synthetic-mnist", *out, *args)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_samples_write_failure_is_one_line(tmp_path: Path, bench_cli, monkeypatch) -> None:
    import bench.data.samples as samples

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(samples, "save_figure", full)
    code, lines = bench_cli("samples", "synthetic-mnist", "--n", "4",
                            "--out", tmp_path / "s.png")
    assert code == 2 and lines == [f"bench: error: cannot write {tmp_path / 's.png'} "
                                   "(No space left on device)"]


# ----------------------------------------------------------------------------- loaders
def test_loaders_batch_larger_than_the_dataset(tiny_data, bench_cli) -> None:
    """Before: "0 img/s" and exit 0."""
    root, _, _ = tiny_data
    code, lines = bench_cli("loaders", "--dataset", "mnist", "--data-dir", root,
                            "--batch-size", "512", "--loaders", "torch", "--device", "cpu")
    assert code == 2 and len(lines) == 1
    assert "--batch-size 512 is larger than the mnist training split (256 images)" in lines[0]


@pytest.mark.parametrize("argv,words", [
    (["--workers", "-1"], "--workers -1: must be between 0 and"),
    (["--workers", "100000"], "--workers 100000: must be between 0 and"),
    (["--epochs", "0"], "--epochs 0: must be between 1 and"),
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--json", "{tmp}/file/x.json"], "is a file, not a folder"),
    (["--json", "{tmp}"], "is a folder"),
])
def test_loaders_bounds_before_any_work(tmp_path: Path, argv, words, bench_cli,
                                        monkeypatch) -> None:
    import bench.data.loader_bench as lb

    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(lb, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    code, lines = bench_cli("loaders", "--device", "cpu",
                            *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


# ----------------------------------------------------------------------------- .beton lock
_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, (sys.argv[2] + " " + os.uname().nodename + "\\n").encode())
print("held", flush=True)
time.sleep(120)
"""


def _hold(lock: Path, owner_pid: str) -> subprocess.Popen:
    """A process holding the flock with `owner_pid` recorded: a dead PID is the orphaned
    writer's case (the lock inherited by fork outlives the parent that wrote its PID)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock), owner_pid],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _acquire_in_thread(path: Path, logs: list[str], hold_s: float = 0.0) -> threading.Thread:
    from bench.data.ffcv._lock import beton_lock

    def take() -> None:
        with beton_lock(path, logs.append):
            logs.append("acquired")
            time.sleep(hold_s)

    t = threading.Thread(target=take, daemon=True)
    t.start()
    return t


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=120)
    return proc.pid


def test_lock_held_for_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    """Before: every later convert or `run --loader ffcv` of the file waited for ever."""
    from bench.data.ffcv._lock import lock_path

    path = tmp_path / "x-train.beton"
    holder = _hold(lock_path(path), str(_dead_pid()))
    try:
        logs: list[str] = []
        t = _acquire_in_thread(path, logs)
        t.join(timeout=60)
        assert not t.is_alive(), "waited for a lock whose owner is dead"
        assert logs[-1] == "acquired" and len(logs) == 2
        assert "which is dead" in logs[0] and "taking it over" in logs[0]
    finally:
        holder.kill()
        holder.wait(timeout=120)
    assert not lock_path(path).exists()


def test_lock_waits_for_a_live_owner_then_is_removed(tmp_path: Path) -> None:
    from bench.data.ffcv._lock import lock_path

    path = tmp_path / "x-train.beton"
    lock = lock_path(path)
    holder = _hold(lock, "1")  # PID 1 lives: a real conversion in progress
    try:
        logs: list[str] = []
        t = _acquire_in_thread(path, logs)
        time.sleep(1.0)
        assert t.is_alive() and "acquired" not in logs
    finally:
        holder.kill()
        holder.wait(timeout=120)
    t.join(timeout=60)
    assert not t.is_alive() and logs[-1] == "acquired"
    assert not lock.exists()  # released and removed: nothing left behind
    fd = os.open(tmp_path, os.O_RDONLY)  # the folder lock used for take-overs is free too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
