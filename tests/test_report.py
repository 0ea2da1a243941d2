"""bench report and bench export on synthetic result docs: the files, and what each figure
shows, read back from its matplotlib Figure (scales, labels, titles, value texts, lines)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from bench import report
from bench.errors import BenchError
from bench.gate import compare
from bench.report import curves, devices, roofline, stats, throughput, tta
from bench.results import EpochRow, Result, docs_frame, docs_rows, export, load_docs, write_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
A100, H100 = "NVIDIA A100", "NVIDIA H100"


def make_result(model: str, device: str, ips: float, *, recipe: str = "seed",
                dataset: str = "mnist", tta_s: float | None = None, repeat: int = 0,
                status: str = "ok", target: float = 0.95) -> Result:
    """A run of one epoch with an evaluation every 10 steps (accuracy climbing to 0.96); it
    reaches `target` at tta_s seconds of training when given."""
    evals = [{"step": 10 * (k + 1), "epoch": 0, "test_loss": 1.0, "test_acc": 0.5 + 0.046 * k,
              "train_time_s": 0.05 * (k + 1) * 1000 / ips, "eval_time_s": 0.01}
             for k in range(10)]
    total = evals[-1]["train_time_s"]
    epochs = [EpochRow(epoch=0, steps=100, images=12800, train_time_s=total, images_per_s=ips,
                       train_loss=0.5, cumulative_train_time_s=total, timed=True,
                       test_loss=0.5, test_acc=0.96, eval_time_s=0.01)]
    intensity = {"fc": 20.0, "cnn": 60.0, "vgg16": 60.0}[model]
    summary = dict(images_per_s=ips, images_per_s_min=ips * 0.97, images_per_s_max=ips * 1.03,
                   epoch_time_s=total, final_test_acc=0.96, best_test_acc=0.96,
                   target_accuracy=target, time_to_accuracy_s=tta_s, total_train_time_s=total,
                   peak_memory_bytes=2**30, mfu=None, flops_per_image=1e6,
                   arithmetic_intensity=intensity, achieved_tflops=ips * 1e6 / 1e12,
                   peak_tflops=0.5, peak_copy_gbs=30.0)
    config = dict(model=model, dataset=dataset, loader="torch", device="cuda", precision="fp32",
                  compile=False, channels_last=False, batch_size=128, recipe=recipe, epochs=1,
                  max_steps=None, seed=repeat)
    env = {"host": "h", "cpu_model": "cpu", "torch_threads": 2, "gpus": [{"name": device}]}
    return Result(config=config, env=env, status=status, epochs=epochs, summary=summary,
                  evals=evals, repeat=repeat,
                  message=None if status == "ok" else "CUDA out of memory")


# seed and fast of cnn and fc; fast reaches the target 10x (cnn) and 80x (fc) sooner; vgg16
# fast never reaches it. H100 runs everything twice as fast, with two repeats (+-2%) each.
RUNS = [("fc", "seed", 1000.0, 8.0), ("fc", "fast", 200_000.0, 0.1),
        ("cnn", "seed", 800.0, 10.0), ("cnn", "fast", 8000.0, 1.0),
        ("vgg16", "fast", 100.0, None)]


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    for device, scale in ((A100, 1.0), (H100, 2.0)):
        for model, recipe, ips, tta_s in RUNS:
            for repeat in range(2):
                j = 1 + 0.02 * repeat
                write_result(make_result(model, device, ips * scale * j, recipe=recipe,
                                         tta_s=tta_s / scale / j if tta_s else None,
                                         repeat=repeat), folder / device.split()[-1])
    write_result(make_result("cnn", A100, 100, recipe="huge", status="oom"), folder / "A100")
    return folder


def summary_of(folder: Path) -> list[stats.ConfigStats]:
    return stats.summarize(docs_rows(load_docs([folder])))


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def visible_share(ax, width: float) -> float:
    """The share of a log x axis a bar from its left edge to `width` covers."""
    lo, hi = ax.get_xlim()
    return math.log(width / lo) / math.log(hi / lo)


# --------------------------------------------------------------------------- files


def test_report_writes_every_figure_and_the_markdown(results_dir, tmp_path):
    out = tmp_path / "report"
    written = report.write_report([results_dir], out, baseline_device=A100)
    pngs = [p for p in written if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == sorted(report.FIGURES.values())
    md = (out / "report.md").read_text()
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 1000
        assert imread(p).ndim == 3
        assert f"]({p.name})" in md
    assert "| fc/mnist torch fp32 bs128 recipe=seed | NVIDIA H100 | 2 |" in md
    # the wide device table: configuration | device A | device B | x
    assert f"| configuration | {A100} (images/s) | {H100} (images/s) | ×" in md
    assert "| fc/mnist torch fp32 bs128 recipe=seed | 1,010 | 2,020 | 2.00× [1.96–2.04] |" in md
    assert "| **geometric mean** of 5 |  |  | **2.00×** |" in md
    assert f"| configuration | {A100} (s to target) | {H100} (s to target) |" in md
    assert (f"- **{H100}** against {A100}: 2.00× the images/s (geometric mean of 5"
            " configurations), reaches the target 2.00× sooner (geometric mean of 4") in md
    assert "oom" in md and "CUDA out of memory" in md  # the failed run is listed
    assert not list(out.glob(".*"))  # no temporary files left


def test_report_single_device_has_no_device_figures(results_dir, tmp_path):
    written = report.write_report([results_dir / "A100"], tmp_path / "one")
    assert {p.name for p in written} == {"throughput.png", "time_to_accuracy.png",
                                         "accuracy_vs_time.png", "roofline.png", "report.md"}


def test_report_bad_baseline_and_no_results(results_dir, tmp_path):
    with pytest.raises(BenchError, match="not among"):
        report.write_report([results_dir], tmp_path / "x", baseline_device="TPU")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no result files"):
        report.write_report([tmp_path / "empty"], tmp_path / "y")


def test_report_cli(results_dir, tmp_path, capsys):
    rc = compare.run_verb(report.register, ["report", str(results_dir), "--out",
                                            str(tmp_path / "r")])
    assert rc == 0 and "report.md" in capsys.readouterr().out


# --------------------------------------------------------------------------- figures


def test_throughput_log_axis_and_values_on_bars(results_dir):
    fig = throughput.plot_throughput(summary_of(results_dir / "A100"))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"  # vgg16's 100 images/s beside fc's 200,000
    assert "images/s" in ax.get_xlabel() and "2 runs each" in ax.get_xlabel()
    assert fig.get_suptitle().startswith("Training throughput") and ax.get_title() == A100
    assert {"101", "202k", "1.01k"} <= set(texts(ax))  # medians of the two repeats
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == [
        "cnn/mnist torch fp32 bs128 recipe=seed", "cnn/mnist torch fp32 bs128 recipe=fast"]
    assert visible_share(ax, min(p.get_width() for p in ax.patches)) > 0.05  # vgg16's bar


def test_throughput_linear_when_values_are_close():
    rows = [stats.config_stats(f"m{i}", A100, [{"images_per_s": v, "model": "m",
                                                "dataset": "d"}])
            for i, v in enumerate((900.0, 1000.0))]
    ax = throughput.plot_throughput(rows).axes[0]
    assert ax.get_xscale() == "linear" and set(texts(ax)) == {"900", "1k"}


def test_tta_pairs_seed_and_fast_with_speedup_and_marks_misses(results_dir):
    fig = tta.plot_tta(summary_of(results_dir / "A100"))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cnn on mnist", "fc on mnist",
                                                             "vgg16 on mnist"]
    labels = texts(ax)
    assert "10.0×" in labels and "80.0×" in labels  # seed/fast speed-ups beside the pairs
    assert "0.099 s" in labels  # the 0.1 s bar is labelled
    fast_fc = min(p.get_width() for p in ax.patches if p.get_hatch() is None)
    assert fast_fc == pytest.approx(0.099, rel=0.02) and visible_share(ax, fast_fc) > 0.05
    misses = [p for p in ax.patches if p.get_hatch()]
    assert len(misses) == 1  # vgg16 fast: hatched, and said in words
    (miss,) = [t for t in labels if t.startswith("not reached")]
    assert miss == "not reached in 4.95 s, best 96.0%"  # its training time, without reaching
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["seed", "fast", "not reached"]
    assert "seed loop vs fast recipe" in fig.get_suptitle()


def test_tta_one_panel_per_device(results_dir):
    fig = tta.plot_tta(summary_of(results_dir))
    assert [ax.get_title() for ax in fig.axes] == [A100, H100]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)


def test_accuracy_curves_use_every_evaluation_and_draw_the_target(results_dir):
    docs = load_docs([results_dir / "A100"])
    lines = curves.curves(docs)
    assert len(lines) == 10 and all(len(c["times"]) == 10 for c in lines)  # evals, not epochs
    fig = curves.plot_accuracy_curves(lines)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["cnn on mnist", "fc on mnist",
                                                 "vgg16 on mnist"]
    ax = panels[0]
    target = [ln for ln in ax.get_lines() if ln.get_label() == "target 95%"]
    assert len(target) == 1 and list(target[0].get_ydata()) == [0.95, 0.95]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["seed", "fast", "target 95%"]  # seed and fast overlaid in one panel
    assert ax.get_xscale() == "log" and "training time" in ax.get_xlabel()
    curve = next(ln for ln in ax.get_lines() if ln.get_label() == "seed")
    assert len(curve.get_xdata()) == 10


def test_accuracy_curves_fall_back_to_epochs():
    doc = make_result("fc", A100, 1000.0).to_dict()
    doc["evals"] = []
    (c,) = curves.curves([doc])
    assert c["accs"] == [0.96] and c["times"] == [pytest.approx(0.5)]


def test_device_ratios_intervals_and_geometric_mean(results_dir):
    summary = summary_of(results_dir)
    ratios = stats.device_ratios(summary, A100, "throughput")
    fc = next(r for r in ratios if r["config"] == "fc/mnist torch fp32 bs128 recipe=seed")
    assert fc["ratio"] == pytest.approx(2.0)
    assert fc["low"] == pytest.approx(2 * 1.00 / 1.02) and fc["high"] == pytest.approx(
        2 * 1.02 / 1.00)
    tta_ratios = stats.device_ratios(summary, A100, "time_to_accuracy")
    assert len(tta_ratios) == 4 and all(r["ratio"] == pytest.approx(2.0) for r in tta_ratios)
    fig = devices.plot_ratios(ratios, A100, "throughput")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_title() == f"{H100} over {A100}"
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[-1] == "geometric mean (5 configurations)" and len(ticks) == 6
    assert "2.00×" in texts(ax) and "2.00×  [1.96–2.04]" in texts(ax)
    assert "min-max" in ax.get_xlabel() and "Throughput" in fig.get_suptitle()


def test_geomean():
    assert stats.geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert math.isclose(stats.geomean([3.0]), 3.0)


def test_roofline_numbers_never_overlap(results_dir):
    points = roofline.roofline_points(docs_rows(load_docs([results_dir])))
    assert len(points) == 10  # repeats merged: 5 configurations x 2 devices
    fig = roofline.plot_roofline(points)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, 11))
    fig.draw_without_rendering()
    boxes = [t.get_window_extent() for t in numbers]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == f"cnn/mnist fast fp32 bs128 ({A100})" and len(legend) == 10
    roofs = [t.get_text() for t in ax.get_legend().get_texts()]
    assert roofs == [f"roof: {d} fp32 (500 GFLOP/s, 30 GB/s)" for d in (A100, H100)]


# --------------------------------------------------------------------------- export


def test_export_csv_round_trip(results_dir, tmp_path):
    path = export.export([results_dir], tmp_path / "out" / "results.csv")
    df = pd.read_csv(path)
    want = docs_frame(load_docs([results_dir]))
    assert len(df) == len(want) == 21
    assert set(want.columns) <= set(df.columns)
    merged = df.set_index("run_id").loc[want["run_id"]]
    assert np.allclose(merged["images_per_s"].to_numpy(), want["images_per_s"].to_numpy())
    assert list(merged["model"]) == list(want["model"])
    epochs = pd.read_csv(export.export([results_dir], tmp_path / "epochs.csv", epochs=True))
    assert len(epochs) == 21 and "test_acc" in epochs


def test_export_bad_target(results_dir, tmp_path):
    with pytest.raises(BenchError, match="use a .csv or .parquet"):
        export.export([results_dir], tmp_path / "x.xlsx")
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(BenchError, match="pip install pyarrow"):
            export.export([results_dir], tmp_path / "x.parquet")
    else:
        path = export.export([results_dir], tmp_path / "x.parquet")
        assert len(pd.read_parquet(path)) == 21


def test_a_slower_device_bar_points_left_of_one():
    rows = [stats.config_stats("c", d, [{"images_per_s": v, "model": "m", "dataset": "d"}])
            for d, v in ((A100, 1000.0), (H100, 500.0))]
    (r,) = stats.device_ratios(rows, A100, "throughput")
    assert r["ratio"] == pytest.approx(0.5) and r["low"] == r["high"] == pytest.approx(0.5)
    ax = devices.plot_ratios([r], A100, "throughput").axes[0]
    bar = ax.patches[0]
    assert bar.get_x() + bar.get_width() == pytest.approx(0.5)  # from 1x leftwards to 0.5x
    assert ax.get_xlim()[0] < 0.5 and "0.50×" in texts(ax)
