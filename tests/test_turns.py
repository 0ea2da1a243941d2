"""Turns (bench.measure.turns): two sides time their windows one after the other, and a side
whose partner is missing, silent or dead goes on alone, never hangs."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench.measure import turns
from bench.measure.turns import Alone, Turns, from_env


def _pair() -> tuple[Turns, Turns, list[int]]:
    a_to_b, b_to_a = os.pipe(), os.pipe()
    return (Turns(b_to_a[0], a_to_b[1], True), Turns(a_to_b[0], b_to_a[1], False),
            [*a_to_b, *b_to_a])


def _side(t: Turns, name: str, windows: dict[str, int], log: list, lock: threading.Lock
          ) -> None:
    for key, n in windows.items():
        t.meet(key)
        for _ in range(n):
            k = t.take()
            with lock:
                log.append((key, name, k))
            time.sleep(0.002)
            t.give()
        t.finish()


def _run(plan_a: dict[str, int], plan_b: dict[str, int]) -> list:
    a, b, fds = _pair()
    log: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_side, args=(t, n, p, log, lock), daemon=True)
               for t, n, p in ((a, "A", plan_a), (b, "B", plan_b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert not any(th.is_alive() for th in threads), "a side hung"
    for fd in fds:
        os.close(fd)
    return log


def test_two_sides_alternate_window_by_window() -> None:
    log = _run({"fc": 4, "cnn": 3}, {"fc": 4, "cnn": 3})
    fc = [(side, k) for key, side, k in log if key == "fc"]
    assert fc == [("A", 1), ("B", 1), ("A", 2), ("B", 2), ("A", 3), ("B", 3), ("A", 4), ("B", 4)]
    cnn = [(side, k) for key, side, k in log if key == "cnn"]
    assert cnn == [("A", 1), ("B", 1), ("A", 2), ("B", 2), ("A", 3), ("B", 3)]
    assert [key for key, *_ in log] == ["fc"] * 8 + ["cnn"] * 6  # the warm-up waits for both


def test_the_side_with_more_windows_finishes_them_alone() -> None:
    log = _run({"fc": 2}, {"fc": 5})
    assert [(s, k) for _, s, k in log] == [("A", 1), ("B", 1), ("A", 2), ("B", 2), ("B", None),
                                           ("B", None), ("B", None)]


def test_a_dead_partner_leaves_this_side_alone_at_once() -> None:
    a_to_b, b_to_a = os.pipe(), os.pipe()
    a = Turns(b_to_a[0], a_to_b[1], False)
    os.close(b_to_a[1])  # the other side is gone: EOF
    os.close(a_to_b[0])  # and nobody reads what this side writes
    start = time.monotonic()
    a.meet("fc")
    assert a.take() is None and not a.paired
    a.give()
    a.finish()  # writing to a closed pipe is no error, no hang
    assert time.monotonic() - start < 5
    os.close(b_to_a[0])
    os.close(a_to_b[1])


def test_a_silent_partner_costs_one_deadline(monkeypatch) -> None:
    monkeypatch.setattr(turns, "MEET_S", 0.2)
    monkeypatch.setattr(turns, "TURN_S", 0.2)
    a_to_b, b_to_a = os.pipe(), os.pipe()
    a = Turns(b_to_a[0], a_to_b[1], False)
    start = time.monotonic()
    a.meet("fc")
    assert not a.paired and a.take() is None
    assert 0.15 < time.monotonic() - start < 5
    os.write(b_to_a[1], b"ready cnn\n")  # answers the meeting, then never its turn
    a.meet("cnn")
    assert a.paired
    assert a.take() is None and not a.paired  # the turn's deadline passed: alone
    for fd in (*a_to_b, *b_to_a):
        os.close(fd)


@pytest.mark.parametrize("raw", ["", "x", "1,2", "3,4,1,5", "999,998,1"])
def test_a_stray_or_broken_variable_means_alone(monkeypatch, raw: str) -> None:
    monkeypatch.setenv(turns.TURNS_ENV, raw)
    got = from_env()
    assert type(got) is Alone and got.take() is None


def test_the_variable_names_the_pipes(monkeypatch) -> None:
    r, w = os.pipe()
    monkeypatch.setenv(turns.TURNS_ENV, f"{r},{w},1")
    got = from_env()
    assert isinstance(got, Turns) and (got.fd_in, got.fd_out, got.first) == (r, w, True)
    os.close(r)
    os.close(w)


@pytest.mark.parametrize("raw, cpu", [("1", 1), ("", None), ("x", None), ("-1", None)])
def test_the_cpu_variable_names_the_timed_phase_cpu(monkeypatch, raw: str, cpu) -> None:
    r, w = os.pipe()
    monkeypatch.setenv(turns.TURNS_ENV, f"{r},{w},0")
    monkeypatch.setenv(turns.CPU_ENV, raw)
    got = from_env()
    assert isinstance(got, Turns) and got.cpu == cpu
    os.close(r)
    os.close(w)


def test_an_unpaired_side_is_never_pinned(monkeypatch) -> None:
    """A side whose partner never came runs alone, on the CPUs it had."""
    monkeypatch.setattr(turns, "MEET_S", 0.2)
    pins: list = []
    monkeypatch.setattr(turns, "_pin", lambda cpus: pins.append(cpus))
    a, _, fds = _pair()
    a.cpu = 0
    a.meet("fc")
    a.finish()
    assert not a.paired and pins == []
    for fd in fds:
        os.close(fd)


def test_a_stopped_run_is_unpinned(monkeypatch) -> None:
    pins: list = []
    monkeypatch.setattr(turns, "_pin", lambda cpus: pins.append(cpus) or {0, 1})
    a, _, fds = _pair()
    a.cpu = 1
    os.write(fds[3], b"ready fc\n")
    a.meet("fc")
    a.finish(wait=False)
    assert pins == [{1}, {0, 1}] and a.unpinned is None
    for fd in fds:
        os.close(fd)


def test_a_stopped_run_does_not_wait_for_the_other_side(monkeypatch) -> None:
    """finish(wait=False) (a NaN, OOM or Ctrl-C) says done and returns while the other side,
    still paired and silent, would keep a normal finish waiting."""
    monkeypatch.setattr(turns, "MEET_S", 5.0)
    a, b, fds = _pair()
    os.write(fds[3], b"ready fc\n")  # b's end answers a's meeting
    a.meet("fc")
    assert a.paired and a.take() == 1
    start = time.monotonic()
    a.finish(wait=False)
    assert time.monotonic() - start < 1.0
    assert os.read(fds[0], 100).decode().split("\n")[-2] == "done fc"
    for fd in fds:
        os.close(fd)
