"""bench report, bench export and bench samples on generated results / a fake dataset."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from bench import compare, export, report, samples
from bench.errors import BenchError
from bench.results import EpochRow, Result, docs_frame, load_docs, write_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_result(model: str, device: str, ips: float, repeat: int = 0,
                status: str = "ok") -> Result:
    """A run with three epochs of test accuracy, reaching a 0.95 target on the faster GPU."""
    epoch_s = 60000 / ips
    epochs = [EpochRow(epoch=e, steps=100, images=60000, train_time_s=epoch_s,
                       images_per_s=ips, train_loss=1.0 / (e + 1),
                       cumulative_train_time_s=epoch_s * (e + 1), timed=e > 0,
                       test_loss=0.5 / (e + 1), test_acc=0.90 + 0.03 * e, eval_time_s=None)
              for e in range(3)]
    reached = ips > 1500
    summary = dict(images_per_s=ips, images_per_s_min=ips * 0.97, images_per_s_max=ips * 1.03,
                   images_per_s_q1=ips * 0.99, images_per_s_q3=ips * 1.01, epoch_time_s=epoch_s,
                   final_test_acc=0.96, best_test_acc=0.96, target_accuracy=0.95,
                   time_to_accuracy_s=epoch_s * 3 if reached else None, compile_time_s=0.0,
                   total_train_time_s=epoch_s * 3, peak_memory_bytes=2**30, mfu=None,
                   flops_per_image=1e6, arithmetic_intensity=20.0 if model == "fc" else 60.0,
                   achieved_tflops=ips * 1e6 / 1e12, peak_tflops=0.5, peak_copy_gbs=30.0)
    config = dict(model=model, dataset="mnist", loader="torch", device="cuda", precision="fp32",
                  compile=False, channels_last=False, batch_size=128, recipe="course", epochs=3,
                  max_steps=None, seed=repeat)
    env = {"host": "h", "cpu_model": "cpu", "torch_threads": 2, "gpus": [{"name": device}]}
    return Result(config=config, env=env, status=status, epochs=epochs, summary=summary,
                  repeat=repeat, message=None if status == "ok" else "CUDA out of memory")


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    for device, scale in (("NVIDIA A100", 1.0), ("NVIDIA H100", 2.0)):
        for model, ips in (("fc", 1000.0), ("cnn", 800.0)):
            for repeat in range(2):
                write_result(make_result(model, device, ips * scale * (1 + 0.02 * repeat),
                                         repeat), folder / device.split()[-1])
    write_result(make_result("vgg16", "NVIDIA A100", 100, status="oom"), folder / "A100")
    return folder


def test_report_writes_figures_and_markdown(results_dir, tmp_path):
    out = tmp_path / "report"
    written = report.write_report([results_dir], out, baseline_device="NVIDIA A100")
    pngs = [p for p in written if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == sorted(report.FIGURES.values())
    md = (out / "report.md").read_text()
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 1000
        assert imread(p).ndim == 3
        assert f"]({p.name})" in md
    assert "| fc/mnist torch fp32 bs128 recipe=course | NVIDIA H100 | 2 |" in md
    assert "2.00×" in md  # H100 is twice as fast in the fixture
    assert "oom" in md and "CUDA out of memory" in md  # the failed run is listed
    assert not list(out.glob(".*"))  # no temporary files left


def test_report_single_device_and_bad_baseline(results_dir, tmp_path):
    written = report.write_report([results_dir / "A100"], tmp_path / "one")
    assert {p.name for p in written} == {"throughput.png", "accuracy_vs_time.png", "roofline.png",
                                         "report.md"}
    with pytest.raises(BenchError, match="not among"):
        report.write_report([results_dir], tmp_path / "x", baseline_device="TPU")


def test_report_cli(results_dir, tmp_path, capsys):
    rc = compare.run_verb(report.register, ["report", str(results_dir), "--out",
                                            str(tmp_path / "r")])
    assert rc == 0 and "report.md" in capsys.readouterr().out


def test_export_csv_round_trip(results_dir, tmp_path):
    path = export.export([results_dir], tmp_path / "out" / "results.csv")
    df = pd.read_csv(path)
    want = docs_frame(load_docs([results_dir]))
    assert len(df) == len(want) == 9
    assert set(want.columns) <= set(df.columns)
    merged = df.set_index("run_id").loc[want["run_id"]]
    assert np.allclose(merged["images_per_s"].to_numpy(), want["images_per_s"].to_numpy())
    assert list(merged["model"]) == list(want["model"])
    epochs = pd.read_csv(export.export([results_dir], tmp_path / "epochs.csv", epochs=True))
    assert len(epochs) == 27 and "test_acc" in epochs


def test_export_bad_target(results_dir, tmp_path):
    with pytest.raises(BenchError, match="use a .csv or .parquet"):
        export.export([results_dir], tmp_path / "x.xlsx")
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(BenchError, match="pip install pyarrow"):
            export.export([results_dir], tmp_path / "x.parquet")
    else:
        path = export.export([results_dir], tmp_path / "x.parquet")
        assert len(pd.read_parquet(path)) == 9


def fake_dataset(perm: bool = False, channels: int = 1) -> types.SimpleNamespace:
    """DatasetArrays-like: 40 images of 10 classes; perm mimics mnist-perm's storage."""
    rng = np.random.default_rng(0)
    size = 28 if channels == 1 else 32
    x = rng.integers(0, 256, (40, size, size, channels), dtype=np.uint8)
    p = rng.permutation(size * size) if perm else None
    if p is not None:
        x = x.reshape(40, -1, channels)[:, p].reshape(x.shape)
    return types.SimpleNamespace(train_x=x, train_y=np.arange(40, dtype=np.int64) % 10,
                                 test_x=x[:4], test_y=np.arange(4), real=False, perm=p,
                                 classes=[f"class{i}" for i in range(10)])


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


def test_samples_cli_uses_load_dataset(tmp_path, monkeypatch, capsys):
    calls = []

    def load_dataset(name, data_dir, seed=0, allow_synthetic=False):
        calls.append((name, data_dir, seed, allow_synthetic))
        return fake_dataset(perm=name == "mnist-perm")

    monkeypatch.setitem(sys.modules, "bench.datasets",
                        types.SimpleNamespace(load_dataset=load_dataset))
    out = tmp_path / "perm.png"
    rc = compare.run_verb(samples.register, ["samples", "mnist-perm", "--out", str(out),
                                             "--data-dir", "/d"])
    assert rc == 0 and out.read_bytes()[:8] == PNG_MAGIC
    assert calls == [("mnist-perm", "/d", 0, False)]
