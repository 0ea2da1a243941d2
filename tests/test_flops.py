"""FLOP counts against hand arithmetic, MFU arithmetic, and the peak probe's result shape."""

import pytest
import torch

from bench.measure import peak
from bench.measure.flops import flop_counts
from bench.spec.models.vgg import VGG11_CFG, VGG16_CFG


def _vgg_macs(cfg) -> tuple[int, int]:
    """(forward MACs, MACs of the first conv) for 32x32 inputs, conv 3x3 pad 1."""
    macs, hw, c_in, first = 0, 32, 3, None
    for v in cfg:
        if v == "M":
            hw //= 2
            continue
        layer = hw * hw * v * c_in * 9
        first = layer if first is None else first
        macs += layer
        c_in = v
    return macs + 512 * 10, first


# forward multiply-adds per image, and those of the first layer (whose input needs no gradient,
# so a training step costs 3x forward minus that layer's input-gradient pass)
HAND = {
    "fc": (784 * 8 + 8 * 8 + 8 * 10, 784 * 8),
    "cnn": (86_400 + 57_600 + 4_800 + 500, 86_400),
    "lenet": (28 * 28 * 6 * 75 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10,
              28 * 28 * 6 * 75),
    "vgg11": _vgg_macs(VGG11_CFG),
    "vgg16": _vgg_macs(VGG16_CFG),
}


def test_cnn_forward_is_the_issue_figure() -> None:
    assert HAND["cnn"][0] == 149_300
    assert flop_counts("cnn")["forward_flops_per_image"] == 2 * 149_300


@pytest.mark.parametrize("name", list(HAND))
def test_counts_match_hand_arithmetic(name: str) -> None:
    fwd, first = HAND[name]
    counts = flop_counts(name)
    assert counts["forward_flops_per_image"] == 2 * fwd
    assert counts["train_flops_per_image"] == 2 * (3 * fwd - first)


def test_mfu_arithmetic() -> None:
    # 1,000 images/s of a 1 GFLOP training step on a 4 TFLOP/s device is 25% MFU
    assert peak.mfu(1e9, 1000, 4e12) == pytest.approx(0.25)


def test_peak_probe_shape_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert peak.matmul_flops(cpu, "fp32", 64, 1) > 0
    assert peak.conv1x1_flops(cpu, "bf16", 2, 16, 4, 1) > 0
    assert peak.copy_bandwidth(cpu, 1 << 16, 1) > 0
    monkeypatch.setattr(peak, "matmul_flops", lambda d, p, n, r: {"fp32": 1e11, "bf16": 3e11}[p])
    monkeypatch.setattr(peak, "conv1x1_flops", lambda d, p, *a: {"fp32": 2e11, "bf16": 2e11}[p])
    monkeypatch.setattr(peak, "copy_bandwidth", lambda d, n, r: 5e10)
    doc = peak.measure_peak(cpu, quick=True)
    assert doc["flops"] == {"fp32": 2e11, "bf16": 3e11}
    assert set(doc["probes"]["fp32"]) == {"matmul", "conv1x1"} and doc["copy_bytes_per_s"] == 5e10
    assert peak.cached_peak_flops(cpu, "bf16") == 3e11
    assert peak.cached_peak_flops(cpu, "tf32") == 2e11  # no TF32 on CPU: the fp32 ceiling
    # a later, noisier measurement never lowers the cached ceiling
    monkeypatch.setattr(peak, "matmul_flops", lambda d, p, n, r: 1e9)
    monkeypatch.setattr(peak, "conv1x1_flops", lambda d, p, *a: 1e9)
    assert peak.measure_peak(cpu, quick=True)["flops"]["bf16"] == 3e11


def test_arithmetic_intensity_orders_the_models() -> None:
    from bench.measure.flops import arithmetic_intensity, train_bytes_per_image

    # fc moves more bytes than it computes on; VGG16 reuses every byte many times
    ai = {m: arithmetic_intensity(m, 128, "bf16") for m in ("fc", "cnn", "lenet", "vgg16")}
    assert ai["fc"] < ai["cnn"] < ai["lenet"] < ai["vgg16"]
    # halving the activation width (fp32 -> bf16) cuts the modelled traffic
    assert train_bytes_per_image("vgg16", 128, "bf16") < train_bytes_per_image("vgg16", 128, "fp32")


# ----------------------------------------------------------------------------- peak cache
def _fake_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peak, "matmul_flops", lambda d, p, n, r: 1e11)
    monkeypatch.setattr(peak, "conv1x1_flops", lambda d, p, *a: 2e11)
    monkeypatch.setattr(peak, "copy_bandwidth", lambda d, n, r: 5e10)


CORRUPT = {
    "list": b"[1]",
    "string": b'"x"',
    "not utf-8": b"\xff\xfe\x00garbage",
    "not json": b"{",
    "flops a list": b'{"flops": [1], "copy_bytes_per_s": 1}',
    "flops a string": b'{"flops": {"fp32": "fast"}, "copy_bytes_per_s": 1}',
    "flops NaN": b'{"flops": {"fp32": NaN}, "copy_bytes_per_s": 1}',
    "flops bool": b'{"flops": {"fp32": true}, "copy_bytes_per_s": 1}',
    "copy missing": b'{"flops": {"fp32": 1e12}}',
    "copy a string": b'{"flops": {"fp32": 1e12}, "copy_bytes_per_s": "x"}',
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_peak_cache_is_absent_with_one_warning(kind, monkeypatch, capsys, bench_cli):
    """Before: a run trained, then died in _summarise; `bench peak` crashed on the same file."""
    cpu = torch.device("cpu")
    path = peak._cache_path(cpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CORRUPT[kind])
    peak._WARNED.clear()
    capsys.readouterr()
    assert peak.load_cached_peak(cpu) is None
    assert peak.cached_peak_flops(cpu, "fp32") is None  # what a run's summary asks
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "ignoring the peak cache" in err[0] and str(path) in err[0]
    assert peak.load_cached_peak(cpu) is None and capsys.readouterr().err == ""  # said once
    _fake_probes(monkeypatch)
    code, lines = bench_cli("peak", "--device", "cpu", "--quick")
    assert code == 0 and not lines  # warned already in this process: `peak` rewrites it
    assert peak.cached_peak_flops(cpu, "fp32") == 2e11


@pytest.mark.parametrize("how", ["cache is a file", "write fails"])
def test_unwritable_peak_cache_is_one_line(how, tmp_path, monkeypatch, bench_cli):
    import errno

    _fake_probes(monkeypatch)
    if how == "cache is a file":
        (tmp_path / "f").write_text("x")
        monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "f"))
        monkeypatch.setattr(peak, "measure_peak", lambda *a, **k: pytest.fail("measured"))
        words = "is a file, not a folder"
    else:
        def full(*_a, **_k):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(peak, "atomic_write_text", full)
        words = "(No space left on device)"
    code, lines = bench_cli("peak", "--device", "cpu", "--quick")
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
