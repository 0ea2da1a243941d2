"""`bench doctor`: a self-check of a new machine, one named check per path, a pass/fail table.

The first GPU window anyone gets may be ten minutes long: it must end with a complete picture
or a precise list of what failed. So every check runs under a timeout and a try/except: an
exception, or a check that runs past its timeout, becomes one `fail` row with its message and
the table goes on. A check that does not apply here (a CUDA check on a CPU, ffcv not
installed, the time budget spent) is a `skip` row with its reason. Any `fail` makes the exit
code 1. The checks themselves are in `bench/doctor/checks.py`; docs/doctor.md describes each.

Checks run in the main thread, as `bench run` does (CUDA graphs, the current device and
autocast are per-thread state in torch); the timeout is SIGALRM raising `CheckTimeout`. A
check stuck inside one C call (a hung driver) cannot be interrupted that way: a watchdog
thread then prints the table so far with that check failed, writes the JSON and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.defaults import EXIT_INCOMPLETE
from bench.doctor.check import Check, Context, Fail, Skip
from bench.errors import BenchError
from bench.host import interrupts
from bench.results.aggregate import group

STATUSES = ("pass", "fail", "skip")
# The doctor's wall-time bound: every check runs under what is left of it, and a budgeted check
# whose estimate does not fit what is left is not started (skipped, named on the final line)
BUDGET_S = 240.0
HANG_GRACE_S = 30.0  # past its timeout, a check that did not stop has hung: stop the doctor
ESSENTIAL_FLOOR_S = 5.0  # an essential check past the budget still gets this long
BUDGET_SKIP = "not started"  # the message prefix of a check the budget left out
BUDGET_STOP = "stopped at the time budget"  # ... and of one the budget's end cut short
BUDGET_PREFIXES = (BUDGET_SKIP, BUDGET_STOP)


@dataclass
class Row:
    name: str
    status: str  # pass, fail, skip
    message: str
    seconds: float


class Stopped(Exception):
    """The doctor was interrupted; `rows` are the checks done, the interrupted one last."""

    def __init__(self, rows: list[Row]) -> None:
        super().__init__("interrupted")
        self.rows = rows


class CheckTimeout(BaseException):
    """Raised in the check by SIGALRM at its timeout. A BaseException, so that the runner's
    `except Exception` (which turns errors into a result status) lets it through."""


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:400]
    if isinstance(exc, (Skip, Fail)):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_applicable(check: Check, ctx: Context, left_s: float | None) -> str | None:
    if check.needs_device and ctx.device is None:
        return "no usable device (see the device check)"
    if check.needs_cuda and not ctx.cuda:
        return "needs CUDA"
    if left_s is not None and check.budgeted and check.estimate_s > left_s:
        return (f"{BUDGET_SKIP}: needs about {check.estimate_s:g}s, {max(left_s, 0):.0f}s of "
                "the time budget left (--budget-s, or --full runs every check)")
    return None


def _timeout(check: Check, left_s: float | None) -> float:
    """The check's own timeout, cut to what is left of the budget (so the budget is a bound);
    an essential check past the budget still gets a few seconds."""
    if left_s is None:
        return check.timeout_s
    return min(check.timeout_s, max(left_s, 0.0 if check.budgeted else ESSENTIAL_FLOOR_S))


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise CheckTimeout in this (main) thread after `seconds`. Python runs the handler
    between bytecodes, so a check stuck inside one C call is caught by the watchdog instead."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: no timeout here (the watchdog remains)
        return

    def handler(signum: int, frame: Any) -> None:
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


HangFn = Callable[[Row], None]


def _watchdog(check: Check, on_hang: HangFn | None) -> threading.Timer | None:
    """A timer that reports the check as hung when even its alarm could not stop it."""
    if on_hang is None:
        return None
    after = check.timeout_s + HANG_GRACE_S
    timer = threading.Timer(after, on_hang, args=(Row(
        check.name, "fail", f"hung for {after:g}s in code its timeout could not interrupt "
        "(a driver or library call); the doctor stopped here", after),))
    timer.daemon = True
    timer.start()
    return timer


def run_check(check: Check, ctx: Context, left_s: float | None = None,
              on_hang: HangFn | None = None) -> Row:
    """Run one check in the main thread under its timeout (torch's per-thread state, CUDA
    graphs included, is what `bench run` has); never raises but for Ctrl-C. `left_s`: seconds
    left of the time budget (None: no budget, as with --full)."""
    reason = _not_applicable(check, ctx, left_s)
    if reason is not None:
        return Row(check.name, "skip", reason, 0.0)
    timeout = _timeout(check, left_s)
    start = time.perf_counter()
    timer = _watchdog(replace(check, timeout_s=timeout), on_hang)
    try:
        with alarm(timeout):
            line = check.fn(ctx)
        status, message = "pass", str(line or "ok")
    except CheckTimeout:
        status, message = "fail", f"timed out after {timeout:g}s"
        if timeout < check.timeout_s:  # the budget ran out, not the check: not a failure
            status, message = "skip", (f"{BUDGET_STOP} after {timeout:.0f}s (its own timeout "
                                       f"is {check.timeout_s:g}s; --budget-s, or --full)")
    except KeyboardInterrupt:
        raise
    except Skip as exc:
        status, message = "skip", _first_line(exc)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a row (SystemExit too)
        status, message = "fail", _first_line(exc)
    finally:
        if timer is not None:
            timer.cancel()
    return Row(check.name, status, message, time.perf_counter() - start)


def run_checks(checks: list[Check], ctx: Context, budget_s: float | None = BUDGET_S,
               progress: Callable[[int, Row], None] | None = None,
               on_hang: Callable[[list[Row]], None] | None = None) -> list[Row]:
    """Every check in order, each under what is left of `budget_s` (None or --full: no
    budget); a budgeted check whose estimate does not fit is skipped. `on_hang(rows)` is called
    (from a watchdog thread) with the rows so far and the hung one."""
    start = time.monotonic()
    rows: list[Row] = []
    hang = (lambda row: on_hang([*rows, row])) if on_hang is not None else None
    for i, check in enumerate(checks):
        left = None if ctx.full or budget_s is None else budget_s - (time.monotonic() - start)
        try:
            row = run_check(check, ctx, left_s=left, on_hang=hang)
            if interrupts.seen():  # the runner caught it and recorded its run `interrupted`
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            rows.append(Row(check.name, "fail", f"interrupted by {interrupts.describe()}; the "
                            "doctor stopped here", 0.0))
            raise Stopped(rows) from None
        rows.append(row)
        if progress is not None:
            progress(i, row)
    return rows


def skipped_line(rows: list[Row]) -> str | None:
    """Every skipped check by name, grouped by why: the table's last line, so a budget that
    left checks out is never a silent pass."""
    groups = group((r for r in rows if r.status == "skip"),
                   lambda r: "time budget" if r.message.startswith(BUDGET_PREFIXES) else r.message)
    if not groups:
        return None
    return "skipped: " + "; ".join(f"{', '.join(r.name for r in skipped)} ({why})"
                                   for why, skipped in groups.items())


def format_table(rows: list[Row]) -> str:
    """A fixed-width table: check, status, seconds, message; then the counts and the skips."""
    width = max([len("check"), *(len(r.name) for r in rows)])
    lines = [f"{'check':<{width}}  {'status':<6}  {'s':>6}  message",
             f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 7}"]
    lines += [f"{r.name:<{width}}  {r.status:<6}  {r.seconds:6.1f}  {r.message}" for r in rows]
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    lines.append(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    skipped = skipped_line(rows)
    if skipped:
        lines.append(skipped)
    return "\n".join(lines)


def budget_skips(rows: list[Row]) -> list[str]:
    """The checks the time budget left out (the doctor is then incomplete, exit 3)."""
    return [r.name for r in rows if r.status == "skip" and r.message.startswith(BUDGET_PREFIXES)]


def report(rows: list[Row], ctx: Context, seconds: float) -> dict[str, Any]:
    """The JSON document `--json` writes."""
    return {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": ctx.device_name,
            "resolved_device": str(ctx.device) if ctx.device is not None else None,
            "seconds": round(seconds, 1),
            "counts": {s: sum(r.status == s for r in rows) for s in STATUSES},
            "ok": not any(r.status == "fail" for r in rows),
            "complete": not budget_skips(rows),
            "checks": [asdict(r) for r in rows]}


def all_checks(ctx: Context, subset: str = "all") -> list[Check]:
    """The checks for this context, in order (a test may replace this function); `subset`
    "first-contact": the GPU-first subset a first window runs."""
    from bench.doctor.checks import checks, first_contact_checks

    return first_contact_checks() if subset == "first-contact" else checks(ctx)


def _select(checks: list[Check], only: list[str] | None) -> list[Check]:
    """The checks `--only` names; the device check always (the others need its device)."""
    if not only:
        return checks
    return [c for c in checks if not c.needs_device or any(o in c.name for o in only)]


def _finish(rows: list[Row], ctx: Context, start: float, json_path: str | None) -> int:
    """Print the table, write the JSON, name the failures; the exit code: 1 on a failure, 3
    when none failed but the time budget left checks out, else 0."""
    from bench.results import atomic_write_text

    doc = json.dumps(report(rows, ctx, time.monotonic() - start), indent=1) + "\n"
    to_stdout = json_path == "-"  # `--json -`: the JSON on stdout, the table on stderr
    print(format_table(rows), file=sys.stderr if to_stdout else sys.stdout, flush=True)
    if to_stdout:
        sys.stdout.write(doc)
        sys.stdout.flush()
    elif json_path:
        atomic_write_text(Path(json_path), doc)
    failed = [r.name for r in rows if r.status == "fail"]
    if failed:
        print(f"bench: doctor: {len(failed)} check(s) failed: {', '.join(failed)}",
              file=sys.stderr, flush=True)
        return 1
    left_out = budget_skips(rows)
    if left_out:
        print(f"bench: doctor: incomplete: {len(left_out)} check(s) did not fit the time "
              f"budget: {', '.join(left_out)} (--budget-s S, or --full)", file=sys.stderr,
              flush=True)
        return EXIT_INCOMPLETE
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import tempfile

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        raise BenchError(f"unknown device {args.device!r}; choices: auto, cpu, cuda, cuda:N")
    if args.first_contact:
        from bench.doctor.first_contact import cmd_first_contact

        return cmd_first_contact(args)
    if args.out:
        raise BenchError("--out is for --first-contact (the doctor alone writes --json FILE)")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as tmp:
        ctx = Context(args.device, Path(tmp), data_dir=args.data_dir, full=args.full)
        checks = _select(all_checks(ctx, args.checks), args.only)
        total = len(checks)

        def progress(i: int, row: Row) -> None:
            if not args.quiet:
                print(f"doctor [{i + 1}/{total}] {row.name}: {row.status} ({row.seconds:.1f}s) "
                      f"{row.message}", file=sys.stderr, flush=True)

        def hung(rows: list[Row]) -> None:  # from the watchdog thread: the main one is stuck
            _finish(rows, ctx, start, args.json)
            os._exit(1)

        try:
            rows = run_checks(checks, ctx, args.budget_s, progress, hung)
        except Stopped as exc:  # the table so far, then the usual interrupted exit
            _finish(exc.rows, ctx, start, args.json)
            raise KeyboardInterrupt from None
        return _finish(rows, ctx, start, args.json)


def register(sub: Any) -> None:
    from bench.doctor.first_contact import DEADLINE_S
    from bench.spec.runspec import add_run_flags

    p = sub.add_parser("doctor", help="self-check of this machine: every path, a pass/fail "
                       "table (and JSON); exit 1 on any failure")
    add_run_flags(p, include=("device", "data_dir"))
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON (atomically); "
                   "'-': the JSON on stdout and the table on stderr")
    p.add_argument("--only", nargs="+", metavar="TEXT", help="run only the checks whose name "
                   "contains one of these (e.g. --only device nvml model:fc)")
    p.add_argument("--full", action="store_true", help="every check: the whole model matrix "
                   "on a CPU too, and no time budget")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="the doctor's time bound: "
                   "every check runs under what is left of it, and a check whose estimate does "
                   "not fit is not started (exit 3 when that left any out)")
    p.add_argument("--checks", choices=("all", "first-contact"), default="all",
                   help="first-contact: the GPU-first subset (machine, every compile mode x "
                   "precision on fc and vgg11, a fast recipe with evaluation)")
    p.add_argument("--first-contact", action="store_true", help="the first command on a new "
                   "GPU machine: versions, the GPU-first doctor, fast and seed runs, the peak; "
                   "at most 4 files in --out, ends by --deadline-s (docs/doctor.md)")
    p.add_argument("--out", metavar="DIR", help="--first-contact: the folder for its files")
    p.add_argument("--deadline-s", type=float, default=DEADLINE_S, help="--first-contact: seconds "
                   "by which it ends (stages that do not fit are skipped and named)")
    p.add_argument("--quiet", action="store_true", help="no progress line per check")
    p.set_defaults(func=cmd_doctor)
