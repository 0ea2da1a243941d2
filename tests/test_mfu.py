"""Issue 25.9: the MFU denominators. Each kind of FLOP (convolution, matmul) is divided by the
peak of the math it runs on (fp32 on CUDA: the TF32 peak only where that kind's switch is on),
combined time-weighted; and an MFU above 100% is never a figure, in a new result or when a
reader prints an old one."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import report
from bench.host import device as devmod
from bench.measure import engine, peak, summary
from bench.measure.engine import TrainState, Window
from bench.measure.flops import flop_counts, train_flop_split
from bench.results import Result, docs_frame, export, flatten, load_docs, write_result
from bench.results.format import MFU_NA, checked_mfus, fmt_mfu
from bench.results.suite_tables import experiments_table, runs_table

CUDA = torch.device("cuda")
H100 = "NVIDIA H100 80GB HBM3"  # vendor table: fp32 67.0, tf32 494.5 TFLOP/s
MEASURED = {"fp32": 50e12, "tf32": 400e12, "bf16": 800e12}  # a fake `bench peak` cache
SPLIT = {"conv": 9e8, "matmul": 1e8}  # FLOPs per image: mostly convolutions


# ----------------------------------------------------------------------------- choosing the peak
def test_the_flop_split_adds_up_to_the_count() -> None:
    for name in ("fc", "cnn", "lenet", "vgg11"):
        split, total = train_flop_split(name), flop_counts(name)["train_flops_per_image"]
        assert split["conv"] + split["matmul"] == total
    assert train_flop_split("fc")["conv"] == 0  # Linear layers only
    cnn = train_flop_split("cnn")
    assert cnn["conv"] > 10 * cnn["matmul"] > 0


def test_effective_peak_is_the_time_weighted_harmonic_combination() -> None:
    mixed = {"conv": "tf32", "matmul": "fp32"}
    got = engine.effective_peak(mixed, SPLIT, MEASURED.get)
    assert got == pytest.approx(1e9 / (9e8 / 400e12 + 1e8 / 50e12))
    assert MEASURED["fp32"] < got < MEASURED["tf32"]
    # a kind without FLOPs weighs nothing; one precision is that precision's peak
    assert engine.effective_peak(mixed, {"conv": 0.0, "matmul": 1e8}, MEASURED.get) == 50e12
    assert engine.effective_peak(dict.fromkeys(engine.FLOP_KINDS, "bf16"), None,
                                 MEASURED.get) == 800e12
    # undecidable: mixed precisions without a split, or a peak nobody measured
    assert engine.effective_peak(mixed, None, MEASURED.get) is None
    assert engine.effective_peak({"conv": "fp16", "matmul": "fp32"}, SPLIT, MEASURED.get) is None


def test_labels_round_trip() -> None:
    for parts in ({"conv": "tf32", "matmul": "fp32"}, {"conv": "fp32", "matmul": "tf32"},
                  dict.fromkeys(engine.FLOP_KINDS, "bf16")):
        assert engine.parse_peak_label(engine.peak_label(parts)) == parts
    assert engine.peak_label({"conv": "tf32", "matmul": "fp32"}) == "tf32 conv + fp32 matmul"


@pytest.fixture
def fake_h100(monkeypatch: pytest.MonkeyPatch):
    """A CUDA run's summary on this CPU: the measured peaks cached as MEASURED, an H100's name
    for the vendor table, no CUDA memory query."""
    cache = {"flops": dict(MEASURED), "copy_bytes_per_s": 3e12}
    monkeypatch.setattr(peak, "cached_peak_flops", lambda device, p: cache["flops"].get(p))
    monkeypatch.setattr(peak, "load_cached_peak", lambda device: cache)
    monkeypatch.setattr(devmod, "gpu_name", lambda device: H100)
    monkeypatch.setattr(devmod, "peak_memory_bytes", lambda device: (None, None))
    return cache


def _state(images_per_s: float) -> TrainState:
    """Three timed windows of 50 ms, 10 steps of 100 images each: `images_per_s` steady."""
    seconds = 1000 / images_per_s
    return TrainState(steps=30, train_time_s=3 * seconds,
                      windows=[Window(0, 10, 1000, seconds, False) for _ in range(3)])


def _summarise(state: TrainState, settings: dict[str, bool], split: dict[str, float]):
    label = engine.peak_precision("fp32", CUDA, settings)  # as the runner asks (no split)
    return summary.summarise(state, 60000, sum(split.values()), 1, None, CUDA, label,
                             flop_split=split)


SEED = {"tf32_matmul": False, "tf32_cudnn": True}  # PyTorch's defaults: the seed recipes


def test_a_seed_cnn_divides_convolutions_by_tf32_and_matmuls_by_fp32(fake_h100) -> None:
    s = _summarise(_state(100.0), SEED, SPLIT)
    assert s["peak_precision"] == "tf32 conv + fp32 matmul"
    want = 1e9 / (9e8 / 400e12 + 1e8 / 50e12)
    assert s["peak_tflops"] == pytest.approx(want / 1e12)
    assert s["mfu"] == pytest.approx(1e9 * 100.0 / want)
    vendor = 1e9 / (9e8 / 494.5 + 1e8 / 67.0)  # the datasheet's TFLOP/s, same weights
    assert s["vendor_peak_tflops"] == pytest.approx(vendor)
    assert s["mfu_vendor"] == pytest.approx(s["achieved_tflops"] / vendor)
    assert (s["conv_flops_per_image"], s["matmul_flops_per_image"]) == (9e8, 1e8)
    assert s["mfu_note"] is None


def test_a_seed_fc_runs_true_fp32_and_is_divided_by_the_fp32_peak(fake_h100) -> None:
    """Before: fc's seed run (cuBLAS TF32 off) was divided by the TF32 peak because cuDNN's
    switch was on, although fc has no convolution."""
    s = _summarise(_state(1e6), SEED, {"conv": 0.0, "matmul": 26_000.0})
    assert s["peak_precision"] == "fp32"
    assert s["peak_tflops"] == pytest.approx(50.0) and s["vendor_peak_tflops"] == 67.0


# ----------------------------------------------------------------------------- MFU above 100%
def test_an_mfu_above_one_is_stored_as_null_with_a_note(fake_h100) -> None:
    fake_h100["flops"]["fp32"] = 1e9  # a peak measured under load: far too low
    s = _summarise(_state(1e6), SEED, {"conv": 0.0, "matmul": 26_000.0})
    assert s["achieved_tflops"] == pytest.approx(26e9 / 1e12)
    assert s["mfu"] is None and s["mfu_vendor"] == pytest.approx(0.026 / 67.0)
    assert s["mfu_note"].startswith("mfu above 100% of the measured peak (26.00x)")
    assert "Winograd/FFT" in s["mfu_note"] and "`bench peak`" in s["mfu_note"]
    result = SimpleNamespace(status="ok", summary=s)
    assert s["mfu_note"] in summary.hints(result)  # said on stderr, not "run bench peak"
    assert not any("mfu is unknown" in h for h in summary.hints(result))


def test_a_vendor_mfu_above_one_is_dropped_too(fake_h100, monkeypatch) -> None:
    monkeypatch.setattr(devmod, "gpu_name", lambda device: "NVIDIA L4")  # fp32 30.3 TFLOP/s
    fake_h100["flops"]["fp32"] = 1e15
    s = _summarise(_state(2e9), SEED, {"conv": 0.0, "matmul": 26_000.0})  # 52 TFLOP/s
    assert s["mfu"] == pytest.approx(0.052) and s["mfu_vendor"] is None
    assert s["mfu_note"].startswith("mfu_vendor above 100% of the vendor's datasheet peak")


def test_the_cell_helper() -> None:
    assert fmt_mfu({"mfu": 0.25}) == "25.0" and fmt_mfu({"mfu": 0.25}, sign=True) == "25.0%"
    assert fmt_mfu({"mfu": 1.042}) == MFU_NA  # an old file's figure
    assert fmt_mfu({"mfu": None}) == "-"  # unknown: no peak
    note = checked_mfus({"mfu_vendor": 1.3})["mfu_note"]
    assert fmt_mfu({"mfu": None, "mfu_note": note}) == "-"  # the note is the vendor's
    assert fmt_mfu({"mfu_vendor": None, "mfu_note": note}, "mfu_vendor") == MFU_NA
    assert checked_mfus({"mfu": 0.5, "mfu_vendor": 0.2}) == {}


# ----------------------------------------------------------------------------- the readers
def _old_doc(mfu: float, recipe: str = "fast") -> Result:
    """A result written before issue 25.9: its MFU above 1 stored as a figure."""
    config = dict(model="vgg16", dataset="cifar10", loader="device", precision="fp32",
                  compile="none", channels_last=False, batch_size=128, recipe=recipe, epochs=1,
                  max_steps=None, seed=0, device="cpu", world_size=1)
    s = dict(images_per_s=500.0, epoch_time_s=100.0, final_test_acc=0.9, best_test_acc=0.9,
             total_train_time_s=100.0, mfu=mfu, mfu_vendor=None, achieved_tflops=1.0,
             peak_tflops=1.0 / mfu, flops_per_image=2e9, peak_memory_bytes=2**30)
    return Result(config=config, env={"host": "h", "cpu_model": "cpu"}, summary=s,
                  data={"real": True})


PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def _no_figure_above_100(text: str) -> None:
    assert "104.2" not in text
    assert all(float(m) <= 100 for m in PERCENT.findall(text)), PERCENT.findall(text)


def test_readers_never_print_an_old_mfu_above_100(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    write_result(_old_doc(1.042), folder)
    write_result(_old_doc(1.042, recipe="seed"), folder)
    docs = load_docs([folder])
    row = flatten(docs[0])
    assert row["mfu"] is None and row["mfu_note"].startswith("mfu above 100%")
    for table in (runs_table(docs), experiments_table(docs)):
        _no_figure_above_100(table)
        assert MFU_NA in table
    frame = docs_frame(docs)
    assert frame["mfu"].isna().all()
    report.write_report([folder], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    _no_figure_above_100(md)
    assert f"| {MFU_NA} |" in md
    csv = export.export([folder], tmp_path / "runs.csv")
    text = csv.read_text()
    assert "1.042" not in text and "mfu above 100%" in text
