"""FLOP counts against hand arithmetic, MFU arithmetic, and the peak probe's result shape."""

import pytest
import torch

from bench import peak
from bench.flops import flop_counts
from bench.models.vgg import VGG11_CFG, VGG16_CFG


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
    from bench.flops import arithmetic_intensity, train_bytes_per_image

    # fc moves more bytes than it computes on; VGG16 reuses every byte many times
    ai = {m: arithmetic_intensity(m, 128, "bf16") for m in ("fc", "cnn", "lenet", "vgg16")}
    assert ai["fc"] < ai["cnn"] < ai["lenet"] < ai["vgg16"]
    # halving the activation width (fp32 -> bf16) cuts the modelled traffic
    assert train_bytes_per_image("vgg16", 128, "bf16") < train_bytes_per_image("vgg16", 128, "fp32")
