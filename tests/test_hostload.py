"""The host-load readings (bench/host/load.py) from faked /proc/stat contents."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.host import load as hostload
from bench.host.load import CpuTimes, HostSample

# user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 1/100 s
STAT = """cpu  1000 0 500 8000 100 0 0 400 0 0
cpu0 500 0 250 4000 50 0 0 200 0 0
cpu1 500 0 250 4000 50 0 0 200 0 0
intr 12345
"""


def test_parses_the_aggregate_cpu_line_in_seconds() -> None:
    times = hostload.parse_proc_stat(STAT, ticks_per_s=100)
    assert times == CpuTimes(busy=15.0, steal=4.0, total=100.0)


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu  a b c d\n", "cpu  1 2\n",
                                  "cpu  -5 0 0 10 0 0 0 0\n"])
def test_a_missing_or_garbled_line_is_unknown(text: str) -> None:
    assert hostload.parse_proc_stat(text, 100) is None


def test_an_old_kernel_without_steal_reads_as_no_steal() -> None:
    times = hostload.parse_proc_stat("cpu  10 0 10 80\n", 100)
    assert times == CpuTimes(busy=0.2, steal=0.0, total=1.0)


def test_no_proc_stat_means_unknown_shares(tmp_path: Path) -> None:
    start = hostload.sample(str(tmp_path / "absent"))
    assert start.cpu is None
    reading = hostload.between(start, hostload.sample(str(tmp_path / "absent")))
    assert reading["foreign_share"] is None and reading["steal_share"] is None
    assert not hostload.beside_foreign_work(reading)


def _sample(busy: float, steal: float, total: float, own: float, switches: int = 0
            ) -> HostSample:
    return HostSample(0.0, CpuTimes(busy, steal, total), own, switches)


def test_foreign_time_is_busy_time_less_our_own() -> None:
    # 2 CPUs for 1 s (2 CPU-seconds): we used 1.0, all CPUs were busy 1.6: a neighbour used 0.6
    reading = hostload.between(_sample(10, 1, 100, 5), _sample(11.6, 1.2, 102, 6, 7))
    assert reading == {"foreign_share": 0.3, "steal_share": 0.1, "invol_switches": 7}
    assert hostload.beside_foreign_work(reading)


def test_a_quiet_window_is_not_beside_foreign_work() -> None:
    # we used all the busy time (our threads' own accounting may run slightly ahead: never < 0)
    reading = hostload.between(_sample(10, 1, 100, 5), _sample(11.0, 1, 102, 6.02))
    assert reading["foreign_share"] == 0.0 and reading["steal_share"] == 0.0
    assert not hostload.beside_foreign_work(reading)


def test_a_window_shorter_than_a_tick_saw_nothing() -> None:
    reading = hostload.between(_sample(10, 1, 100, 5), _sample(10, 1, 100, 5.001))
    assert reading["foreign_share"] is None


def test_summary_counts_windows_beside_foreign_work() -> None:
    readings = [{"foreign_share": 0.0, "steal_share": 0.0, "invol_switches": 1},
                {"foreign_share": 0.4, "steal_share": 0.0, "invol_switches": 30},
                {"foreign_share": 0.05, "steal_share": 0.06, "invol_switches": 2},
                {"foreign_share": None, "steal_share": None, "invol_switches": 0}]
    summary = hostload.summarise(readings)
    assert summary == {"windows": 4, "windows_read": 3, "windows_beside_foreign_work": 2,
                       "foreign_share_median": 0.05, "steal_share_median": 0.0,
                       "invol_switches": 33}


def test_this_host_can_be_read() -> None:
    """On Linux the real /proc/stat parses; elsewhere the shares are unknown, never zero."""
    start = hostload.sample()
    sum(i * i for i in range(200_000))
    reading = hostload.between(start, hostload.sample())
    if Path(hostload.PROC_STAT).exists():
        assert start.cpu is not None and start.cpu.total > 0
    for key in ("foreign_share", "steal_share"):
        assert reading[key] is None or 0.0 <= reading[key] <= 1.0


def test_throughput_run_records_the_host_load_of_every_timed_window(tiny_data) -> None:
    from bench.measure.runner import run
    from bench.spec.runspec import RunConfig

    result, _ = run(RunConfig(model="fc", device="cpu", data_dir=str(tiny_data[0]),
                              recipe="fast", measure="throughput", budget_s=0.3,
                              write=False, quiet=True))
    timed = [w for w in result.windows if not w["warmup"]]
    assert timed and all(set(w["host"]) == {"foreign_share", "steal_share", "invol_switches"}
                         for w in timed)
    load = result.summary["host_load"]
    assert load["windows"] == len(timed)
    assert 0 <= load["windows_beside_foreign_work"] <= load["windows_read"] <= len(timed)


def _noisy(result, beside: int, read: int = 20):
    result.summary["host_load"] = {"windows": read, "windows_read": read,
                                   "windows_beside_foreign_work": beside}
    return result


def test_noisy_run_needs_a_quarter_of_its_windows_beside_foreign_work() -> None:
    assert hostload.noisy_run({"windows_read": 20, "windows_beside_foreign_work": 5})
    assert not hostload.noisy_run({"windows_read": 20, "windows_beside_foreign_work": 4})
    for unknown in (None, float("nan"), {}, {"windows_read": 0, "windows_beside_foreign_work": 0},
                    {"windows_read": "20", "windows_beside_foreign_work": 20}):
        assert not hostload.noisy_run(unknown)


def test_the_gate_table_says_which_verdicts_came_from_noisy_runs() -> None:
    from bench.gate import compare
    from tests.test_compare import frame, runs

    base = runs("cnn", 1000.0) + runs("fc", 1000.0)
    cand = runs("cnn", 1000.0) + runs("fc", 1000.0)
    _noisy(cand[0], beside=10)
    _noisy(cand[1], beside=2)  # below the share: not noisy
    cmp = compare.compare_runs(frame(*base), frame(*cand), 0.05, 0.05)
    [line] = compare.noisy_rows(cmp)
    assert line.startswith("cnn/mnist") and line.endswith(
        ": ok; noisy runs: baseline 0 of 3, candidate 1 of 3")
    text, md = compare.format_text(cmp), compare.format_markdown(cmp)
    for out in (text, md):
        assert "Verdicts from noisy runs" in out and "1 verdict from noisy runs" in out
    quiet = compare.compare_runs(frame(*base), frame(*runs("cnn") + runs("fc")), 0.05)
    assert compare.noisy_rows(quiet) == [] and "noisy" not in compare.format_text(quiet)
