"""The gate campaign's tools: the neighbour's profiles, the real regression's worktree and the
twin-probe pilot's reading."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gate_campaign  # noqa: E402
import lockstep_pilot  # noqa: E402
import neighbour  # noqa: E402
import twin_probe  # noqa: E402


def test_periodic_spells_alternate_busy_and_idle() -> None:
    first = list(itertools.islice(neighbour.spells("periodic", 2.0, 0, 0), 4))
    assert first == [(True, 2.0), (False, 2.0), (True, 2.0), (False, 2.0)]


def test_random_spells_are_seeded_and_alternate() -> None:
    a = list(itertools.islice(neighbour.spells("random", 0, 3.0, 7), 6))
    b = list(itertools.islice(neighbour.spells("random", 0, 3.0, 7), 6))
    assert a == b and [busy for busy, _ in a] == [True, False] * 3
    assert all(s > 0 for _, s in a)


def test_the_neighbour_stops_by_itself() -> None:
    t = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "neighbour.py"),
                           "periodic", "--period", "0.2", "--procs", "1", "--max-s", "0.6"],
                          timeout=60)
    assert proc.returncode == 0 and time.monotonic() - t < 30


def test_the_regressed_tree_runs_an_extra_forward_in_every_step() -> None:
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    with gate_campaign.regressed_tree() as tree:
        text = (tree / gate_campaign.REGRESSION_FILE).read_text()
        assert gate_campaign.REGRESSION_LINES in text
        status = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"],
                                capture_output=True, text=True).stdout
        assert status == ""  # committed: `bench ci --against` requires a clean tree
        code = ("import torch; from bench.measure.engine import make_train_step; "
                "m = torch.nn.Linear(4, 2); calls = []; "
                "m.register_forward_hook(lambda *a: calls.append(a[1][0].shape[0])); "
                "opt = torch.optim.SGD(m.parameters(), 0.1); "
                "step = make_train_step(m, opt, None, torch.device('cpu'), 'fp32', 0.0); "
                "step(torch.randn(9, 4), torch.zeros(9, dtype=torch.long)); print(calls)")
        out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.strip() == "[9, 3]", out.stderr
    assert not tree.exists()


def test_the_twin_pilot_reads_spread_and_shift(tmp_path: Path, capsys: pytest.CaptureFixture
                                               ) -> None:
    """A twin that moves with the model cancels a neighbour's shift the probe does not."""
    for rep, (cond, speed) in enumerate([("quiet", 1.0), ("quiet", 1.0), ("steady", 0.8),
                                         ("steady", 0.8)]):
        rows = [[1000 * speed, 50.0, 10 * speed]] * 5  # images/s, probe rate, twin rate
        (tmp_path / f"{cond}-cnn-{rep:02d}.json").write_text(
            json.dumps({"model": "cnn", "threads": 1, "rows": rows}))
    twin_probe.read(tmp_path)
    lines = {line.split(" | ")[2]: line for line in capsys.readouterr().out.splitlines()
             if line.startswith("| cnn")}
    assert "steady -20.0%" in lines["images/s"] and "steady -20.0%" in lines["÷ probe"]
    assert "steady +0.0%" in lines["÷ twin"] and "| 0.0% |" in lines["÷ twin"]


def test_the_twin_pilot_reads_cpu_time_where_recorded(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    for rep in range(2):
        rows = [[1000.0, 50.0, 10.0, 1000.0 + rep]] * 5  # ... and images per CPU-second
        (tmp_path / f"quiet-fc-{rep:02d}.json").write_text(
            json.dumps({"model": "fc", "threads": 1, "rows": rows}))
    twin_probe.read(tmp_path)
    assert "| fc | 2 | images/CPU-s | 0.1% |" in capsys.readouterr().out


def test_the_lockstep_pilot_separates_turns_from_processes(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Pairs whose processes differ by 30% but whose turns agree read 0% in turns."""
    for i, speed in enumerate((1.0, 1.3, 1.0, 1.3)):
        a = [100.0 * speed] * 10
        (tmp_path / f"quiet-cnn-{i:02d}.json").write_text(
            json.dumps({"model": "cnn", "cond": "quiet", "a": a, "b": a}))
    lockstep_pilot.read(tmp_path)
    combined = tmp_path / "all.json"
    combined.write_text(json.dumps({f.name: json.loads(f.read_text())
                                    for f in sorted(tmp_path.glob("quiet-*.json"))}))
    lockstep_pilot.read(combined)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| quiet")]
    assert len(rows) == 2 and rows[0] == rows[1]
    assert rows[0].startswith("| quiet | cnn | 4 | 0.0% | 0.0% | 30.3% |")


def test_pin_pilot_table_gives_the_spread_within_and_across_pairs() -> None:
    import pin_pilot

    records = [{"model": "cnn", "variant": "harness", "turns": t, "window_s": 0.1}
               for t in ([0.0, 0.2, -0.2], [0.1, 0.1, 0.1])]
    records.append({"model": "cnn", "variant": "harness-pinned", "turns": [0.0], "window_s": 0.1})
    lines = pin_pilot.table(records)
    assert len(lines) == 3  # one row: a pair of one turn has no spread over turns
    # sd over turns: 0.2 and 0.0 -> median 10.0%; medians 0.0 and 0.1 -> sd 7.1%
    assert lines[2] == "| cnn | harness | 2 | 3 | 0.100 | 10.0% | 7.1% |"
