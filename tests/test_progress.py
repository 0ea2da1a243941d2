"""Progress: a tqdm bar on a terminal's stderr, advanced only at the engine's window edges, off
without a terminal, on ranks other than 0 and with --no-progress; stdout stays one line a run."""

import argparse
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from test_time_to_accuracy import _loader, _setup

from bench.cli import main
from bench.measure import progress as progmod
from bench.measure.engine import EngineConfig, TrainState, train
from bench.measure.progress import RunProgress, SuiteProgress
from bench.measure.runner import _progress
from bench.spec.recipes import BatchSize
from bench.spec.runspec import RunConfig, add_run_flags


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_on_a_terminal_only(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not RunProgress("x", lines=True, bar=True, total=10).bar_shown  # not a terminal
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert not RunProgress("x", lines=True, bar=False, total=10).bar_shown  # --no-progress
    p = RunProgress("fc/mnist", lines=True, bar=True, total=10)
    p.window(4, 64, 0.5)
    assert p.bar_shown and p._bar.n == 4
    assert "4/10" in str(p._bar) and "128 img/s" in str(p._bar)
    p.close()
    assert "fc/mnist" in term.getvalue()  # drawn on stderr (tqdm redraws at most every 0.1 s)


class _Recorder(RunProgress):
    def __init__(self) -> None:
        super().__init__("t", lines=False, bar=False)
        self.calls: list[tuple[float, int]] = []

    def window(self, done: float, images: int, seconds: float) -> None:
        self.calls.append((done, images))


def test_the_engine_reports_progress_at_window_edges_only() -> None:
    model, opt, sched, scaler, step = _setup()
    rec = _Recorder()
    cfg = EngineConfig(total_steps=14, eval_every=0, target_accuracy=None, stop_at_target=False,
                       evaluate=False, warmup_steps=2, window_steps=4, batch=BatchSize(8))
    state = train(step, model, _loader(), None, torch.device("cpu"), "fp32", cfg, TrainState(),
                  rec)
    # 8 steps an epoch: windows of 4, 4 | 4, 2; one report per timed window, none per step
    assert rec.calls == [(4, 32), (8, 32), (12, 32), (14, 16)]
    assert len(rec.calls) == len([w for w in state.windows if not w.warmup])


def _built(rank: int, quiet: bool = False, progress: bool = True) -> SimpleNamespace:
    cfg = RunConfig(model="fc", quiet=quiet, progress=progress)
    plan = SimpleNamespace(cfg=cfg, rank=rank, dataset="mnist", device=torch.device("cpu"))
    return SimpleNamespace(plan=plan, recipe=SimpleNamespace(loader="device", precision="fp32"),
                           engine=SimpleNamespace(total_steps=100))


def test_only_rank_0_shows_progress_and_no_progress_turns_the_bar_off(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert _progress(_built(0)).bar_shown and _progress(_built(0)).lines
    other = _progress(_built(1))
    assert not other.bar_shown and not other.lines
    assert not _progress(_built(0, progress=False)).bar_shown
    assert _progress(_built(0, progress=False)).lines  # epoch lines follow --quiet alone
    assert not _progress(_built(0, quiet=True)).bar_shown


def test_no_progress_flag_for_run_and_suite() -> None:
    p = argparse.ArgumentParser()
    add_run_flags(p, include=("model", "progress"))
    assert RunConfig.from_args(p.parse_args(["--model", "fc"])).progress is True
    assert RunConfig.from_args(p.parse_args(["--model", "fc", "--no-progress"])).progress is False
    from bench.cli import build_parser

    args = build_parser(["suite"]).parse_args(["suite", "smoke", "--no-progress"])
    assert args.progress is False


def test_suite_status_lines_without_a_terminal(capsys) -> None:
    bar = SuiteProgress("smoke", 2, enabled=True, lines=True)
    bar.done("fc/mnist/fast r0", "ok")
    bar.done("cnn/mnist/fast r0", "oom")
    bar.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert "suite smoke: [1/2] fc/mnist/fast r0: ok" in err
    assert "suite smoke: [2/2] cnn/mnist/fast r0: oom" in err
    quiet = SuiteProgress("smoke", 1, enabled=False, lines=False)
    quiet.done("fc", "ok")
    assert capsys.readouterr().err == ""
    assert progmod.bar_disable(True) is None and progmod.bar_disable(False) is True


def test_run_prints_one_parseable_line_on_stdout(tiny_data, tmp_path: Path, capsys) -> None:
    assert main(["run", "--model", "fc", "--dataset", "mnist", "--device", "cpu",
                 "--data-dir", str(tiny_data[0]), "--max-steps", "3", "--batch-size", "16",
                 "--out", str(tmp_path), "--loader", "gpu"]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert line.startswith("ok: fc/mnist/device/fp32 bs=16: ") and " -> " in line
    assert "wall " in line and "warm-up " in line and "[fc/mnist/device/fp32]" in err
