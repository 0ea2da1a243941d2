"""`bench doctor --first-contact --out DIR`: the first command on a new GPU machine, sized to
a lent window (one command of at most 10 minutes, at most 8 files back).

It runs, in order of what a first window must show: the versions and `nvidia-smi`; the
doctor's GPU-first subset; the fc and cnn fast recipes to their targets on real MNIST (under
their CUDA recipes: reduce-overhead, evaluation every few steps); lenet, vgg11 and vgg16 fast
on synthetic CIFAR-10 for throughput only; one seed epoch of vgg16 with the course's loader;
a quick `bench peak`. Each stage is its own `python -m bench` process under a timeout (a crash,
a hang or an OOM in one stage cannot take the others down) and starts only when its estimate
fits the deadline, so the whole command ends by the deadline. After every stage the outputs
are rewritten atomically, so a kill loses at most the stage in flight:

    DIR/summary.md           the stage table and the run table (also printed)
    DIR/doctor.json          the doctor's rows
    DIR/first-contact.log    every stage's output, as it came
    DIR/first-contact.tar.gz every result file, every stage's log, versions, the peak cache

Estimates and their reasoning: docs/doctor.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.defaults import EXIT_INCOMPLETE, PACKAGE_ROOT
from bench.errors import BenchError
from bench.host.children import forwarded, start_child, stop_child
from bench.results.format import fmt_mfu, fmt_num, fmt_percent, markdown_table

DEADLINE_S = 480.0  # 8 minutes: a 10-minute command limit with room for start-up and copying
SMI_TIMEOUT_S = 20.0
MAX_FILES = 8  # what a lent window returns
ARCHIVE = "first-contact.tar.gz"
LOG = "first-contact.log"
SUMMARY = "summary.md"
DOCTOR_JSON = "doctor.json"
OUTPUTS = (SUMMARY, DOCTOR_JSON, LOG, ARCHIVE)
STATUS_OK, STATUS_INCOMPLETE = "ok", "incomplete"
ROOT = PACKAGE_ROOT  # the checkout: stages run as `python -m bench`
THROUGHPUT_STEPS = 200  # synthetic CIFAR-10: enough steady windows on a GPU after compiling
DOCTOR_BUDGET_S = 250.0  # the doctor stage: its budget; its start-up and table make it ~265 s


@dataclass(frozen=True)
class Stage:
    """One `bench` command of the first contact. `estimate_s`: its typical cost on an H200
    (docs/doctor.md); it starts only when that fits. `cap_s`: its timeout. `cpu`: flags added
    on a CPU dry run (a few steps, small batches: the path, not the figures)."""

    name: str
    argv: tuple[str, ...]
    estimate_s: float
    cap_s: float
    cpu: tuple[str, ...] = ()


@dataclass
class StageRow:
    name: str
    status: str  # ok, incomplete, failed (exit N), timed out, skipped: why, interrupted
    seconds: float
    line: str  # the stage's last output line


def _run(model: str, dataset: str, recipe: str, *extra: str) -> tuple[str, ...]:
    return ("run", "--model", model, "--dataset", dataset, "--recipe", recipe,
            "--allow-synthetic", "--quiet", *extra)


def stages() -> list[Stage]:
    """The stages in order of value: a deadline cuts the end."""
    tiny = ("--max-steps", "4", "--batch-size", "8")
    return [
        Stage("doctor", ("doctor", "--checks", "first-contact", "--quiet"), 265.0, 330.0),
        Stage("fc-fast-mnist", _run("fc", "mnist", "fast"), 20.0, 120.0, ("--max-steps", "20")),
        Stage("cnn-fast-mnist", _run("cnn", "mnist", "fast"), 35.0, 150.0,
              ("--max-steps", "20")),
        *(Stage(f"{m}-fast-synthetic", _run(m, "synthetic-cifar10", "fast", "--no-eval",
                                             "--max-steps", str(THROUGHPUT_STEPS)),
                est, 180.0, tiny) for m, est in (("lenet", 25.0), ("vgg11", 30.0),
                                                 ("vgg16", 50.0))),
        Stage("vgg16-seed-epoch", _run("vgg16", "synthetic-cifar10", "seed", "--no-eval",
                                       "--epochs", "1"), 30.0, 150.0, tiny),
        Stage("peak", ("peak", "--quick"), 20.0, 90.0),
    ]


@dataclass
class Plan:
    """Where everything goes and what every stage gets."""

    out: Path
    work: Path
    device: str
    data_dir: str | None
    deadline: float  # time.monotonic() by which the command ends

    @property
    def cpu(self) -> bool:
        return not self.device.startswith("cuda")

    def argv(self, stage: Stage, left: float) -> list[str]:
        argv = [*stage.argv, "--device", self.device]
        if stage.name == "doctor":
            budget = min(DOCTOR_BUDGET_S, left - 30.0)  # its start-up and its table after
            argv += ["--json", str(self.out / DOCTOR_JSON), "--budget-s", f"{budget:.0f}"]
        elif stage.argv[0] == "run":
            argv += ["--out", str(self.work / "results")]
        if stage.argv[0] != "peak" and self.data_dir:
            argv += ["--data-dir", self.data_dir]
        return argv + (list(stage.cpu) if self.cpu else [])


# ----------------------------------------------------------------------------- versions
def versions_text(device: str) -> str:
    """Python, torch, CUDA, triton, this checkout, and `nvidia-smi` (when there is one)."""
    from bench.host.envinfo import version_line

    lines = [f"python {platform.python_version()} ({sys.executable})",
             f"platform {platform.platform()}", version_line()]
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton: not installed")
    lines.append(f"device asked: {device}")
    return "\n".join(lines) + "\n\n" + _nvidia_smi() + "\n"


def _nvidia_smi() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "nvidia-smi: not found"
    try:
        proc = subprocess.run([smi], capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"nvidia-smi: no answer in {SMI_TIMEOUT_S:g}s"
    except OSError as exc:
        return f"nvidia-smi: {exc}"
    return proc.stdout + proc.stderr + (f"(exit {proc.returncode})" if proc.returncode else "")


# ----------------------------------------------------------------------------- stages
COUNTS_LINE = re.compile(r"^\d+ passed, \d+ failed, \d+ skipped$")  # the doctor's tally


def _last_line(path: Path) -> str:
    """What a stage's log ends with (the doctor's: its tally, not its list of skips)."""
    try:
        text = path.read_bytes()[-20000:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tally = [ln for ln in lines if COUNTS_LINE.match(ln)]
    return (tally or lines or [""])[-1][:300]


def _stage_status(stage: Stage, code: int) -> str:
    if code == 0:
        return STATUS_OK
    if code == EXIT_INCOMPLETE and stage.name == "doctor":  # no check failed; some left out
        return STATUS_INCOMPLETE
    return f"failed (exit {code})"


def _child_env() -> dict[str, str]:
    """The checkout on the child's path (no install step on a GPU box), output unbuffered."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _wait(proc: subprocess.Popen[bytes], stage: Stage, timeout: float) -> str:
    """The stage's status once it ends or is stopped at its timeout."""
    try:
        return _stage_status(stage, proc.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        stop_child(proc)
        return f"timed out after {timeout:.0f}s"
    except BaseException as exc:  # Ctrl-C / SIGTERM of this command: stop the stage, go on up
        stop_child(proc, forwarded(exc))
        raise


def command(plan: Plan, stage: Stage, left: float) -> list[str]:
    """The stage's command line: this checkout's bench under this Python."""
    return [sys.executable, "-m", "bench", *plan.argv(stage, left)]


def run_stage(stage: Stage, plan: Plan, log: IO[str]) -> StageRow:
    """One stage as its own process under min(its cap, what is left of the deadline); its
    output goes to its own log and then to the command's."""
    left = plan.deadline - time.monotonic()
    if stage.estimate_s > left:
        return StageRow(stage.name, f"skipped: needs about {stage.estimate_s:g}s, "
                        f"{max(left, 0):.0f}s of the deadline left", 0.0, "")
    argv = command(plan, stage, left)
    stage_log = plan.work / "logs" / f"{stage.name}.log"
    log.write(f"\n===== {stage.name}: {' '.join(argv)}\n")
    log.flush()
    start, status = time.monotonic(), "interrupted"
    try:
        with open(stage_log, "wb") as sink:
            proc = start_child(argv, ROOT, _child_env(), stdout=sink,
                               stderr=subprocess.STDOUT, text=False)
            status = _wait(proc, stage, min(stage.cap_s, left))
    finally:
        seconds = time.monotonic() - start
        log.write(stage_log.read_text(errors="replace") if stage_log.exists() else "")
        log.write(f"===== {stage.name}: {status} in {seconds:.1f}s\n")
        log.flush()
    return StageRow(stage.name, status, seconds, _last_line(stage_log))


# ----------------------------------------------------------------------------- outputs
def fmt_cell(v: object) -> str:
    """A cell of a table built from result files: '-' when missing, cut to 200 characters
    (`markdown_table` escapes it)."""
    return "-" if v is None else str(v)[:200]


def _pct(v: object) -> str | None:
    return f"{fmt_percent(v)}%" if isinstance(v, (int, float)) else None


def _dataset(doc: dict) -> object:
    """The data the run trained on: a synthetic fallback says so."""
    data = doc.get("data") or {}
    name = data.get("name") or (doc.get("config") or {}).get("dataset")
    return f"{name} (no {data['fallback_for']} found)" if data.get("fallback_for") else name


def _target_cell(s: dict) -> str:
    """'88% at 12,800 images, 0.41 s', '88% not reached', or 'no target'."""
    target = s.get("target_accuracy")
    if target is None:
        return "no target"
    if s.get("steps_to_accuracy") is None:  # the summary's mark of a target reached
        return f"{target:.0%} not reached"
    return (f"{target:.0%} at {fmt_num(s.get('images_to_accuracy'), ',')} images, "
            f"{fmt_num(s.get('time_to_accuracy_s'), '.2f')} s")


def _run_row(doc: dict) -> list[object]:
    c, s = doc.get("config") or {}, doc.get("summary") or {}
    return [c.get("model"), _dataset(doc), c.get("recipe"), c.get("compile"),
            c.get("precision"), c.get("batch_size"), doc.get("status"), s.get("steps"),
            fmt_num(s.get("images_per_s"), ",.0f"), s.get("images_per_s_source"),
            _pct(s.get("final_test_acc")), _target_cell(s),
            fmt_num(s.get("warmup_time_s"), ".1f"), fmt_mfu(s, "mfu", ".1f", sign=True)]


RUN_HEAD = ["model", "dataset", "recipe", "compile", "precision", "batch", "status", "steps",
            "images/s", "images/s from", "final acc", "target", "warm-up s", "MFU"]


def summary_markdown(plan: Plan, rows: list[StageRow], started: str) -> str:
    """The stage table, then one row per result file the stages wrote."""
    from bench.results import read_result

    docs = []
    for path in sorted((plan.work / "results").glob("*.json")):
        try:
            docs.append(read_result(path))
        except BenchError as exc:
            docs.append({"status": f"unreadable: {exc}"})
    lines = [f"# First contact: {plan.device}, started {started}", "",
             markdown_table(["stage", "status", "s", "last line"],
                            [[r.name, r.status, f"{r.seconds:.1f}", r.line] for r in rows]),
             "", "Synthetic CIFAR-10 rows are throughput only (capped steps, no evaluation): "
             "their accuracy means nothing.", "",
             markdown_table(RUN_HEAD, [[fmt_cell(v) for v in _run_row(d)] for d in docs])]
    return "\n".join(lines) + "\n"


def write_outputs(plan: Plan, rows: list[StageRow], started: str) -> None:
    """summary.md and the archive, each written atomically (called after every stage)."""
    from bench.defaults import cache_dir
    from bench.results import atomic_write_text
    from bench.results.archive import write_archive

    text = summary_markdown(plan, rows, started)
    atomic_write_text(plan.out / SUMMARY, text)
    atomic_write_text(plan.work / SUMMARY, text)
    members = {p.relative_to(plan.work).as_posix(): p for p in sorted(plan.work.rglob("*"))
               if p.is_file()}
    members.update({f"peak/{p.name}": p for p in sorted((cache_dir() / "peak").glob("*.json"))})
    write_archive(plan.out / ARCHIVE, members)


# ----------------------------------------------------------------------------- the command
def _check_out(out: Path) -> None:
    """The window returns at most MAX_FILES files: refuse a folder already holding others."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out}: is a file; expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    ours = (*OUTPUTS, *(f".{name}." for name in OUTPUTS))  # and a killed writer's temp files
    foreign = [p.name for p in out.iterdir() if not p.name.startswith(ours)]
    if foreign:
        raise BenchError(f"--out {out}: holds {len(foreign)} other file(s) ({foreign[0]}, ...): "
                         f"give an empty folder (at most {MAX_FILES} files come back)")


def _exit_code(rows: list[StageRow]) -> int:
    if any(r.status not in (STATUS_OK, STATUS_INCOMPLETE) and not r.status.startswith(
            "skipped") for r in rows):
        return 1
    return EXIT_INCOMPLETE if any(r.status != STATUS_OK for r in rows) else 0


def first_contact(out: Path, device: str, data_dir: str | None,
                  deadline_s: float = DEADLINE_S) -> int:
    """Every stage in order under one deadline; the outputs rewritten after each."""
    import datetime as _dt

    _check_out(out)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-first-contact-") as tmp:
        plan = Plan(out, Path(tmp), device, data_dir, time.monotonic() + deadline_s)
        for sub in ("results", "logs"):
            (plan.work / sub).mkdir()
        rows: list[StageRow] = []
        with open(out / LOG, "w", encoding="utf-8") as log:
            text = versions_text(device)
            (plan.work / "versions.txt").write_text(text)
            log.write(text)
            print(text, flush=True)
            try:
                for stage in stages():
                    rows.append(run_stage(stage, plan, log))
                    print(f"first-contact: {stage.name}: {rows[-1].status} "
                          f"({rows[-1].seconds:.1f}s) {rows[-1].line}", file=sys.stderr,
                          flush=True)
                    write_outputs(plan, rows, started)
            finally:  # also on Ctrl-C / SIGTERM: what finished is kept
                write_outputs(plan, rows, started)
        print((out / SUMMARY).read_text(), flush=True)
    return _exit_code(rows)


def cmd_first_contact(args: argparse.Namespace) -> int:
    from bench.host.device import resolve_device

    if not args.out:
        raise BenchError("--first-contact needs --out DIR (an empty folder for its files)")
    if not (args.deadline_s > 0 and args.deadline_s < float("inf")):
        raise BenchError(f"--deadline-s must be a positive number of seconds, got "
                         f"{args.deadline_s}")
    device = str(resolve_device(args.device))  # auto: what the stages will all use
    # absolute: the stages run in the checkout's folder, not the caller's
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    return first_contact(Path(args.out).resolve(), device, data_dir, args.deadline_s)
