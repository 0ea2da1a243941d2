"""`bench <verb>`: thin argument parsing over the library; user errors print one line.

Exit codes: 0 ok; 1 run error or regression found; 2 bad input (BenchError), or a dependency
that cannot be imported (too little memory, a broken install); 3 NaN loss; 4 out of memory;
130 interrupted.

Verbs are registered lazily: only the module of the verb being run is imported (its parser
is built then), the others appear as one-line stubs in `bench --help`. So `bench compare` or
`bench report` start without importing torch; `bench --version` imports it only when asked.

Help: every parser is a OneLineParser, whose HelpFormatter shows each option's default (when
it has one worth showing and its help does not say it already): verbs write the help, the
formatter the default.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NoReturn

from bench.defaults import COMPILE_MODES, EXIT_BAD_INPUT, EXIT_CODES, MAX_REPEATS
from bench.errors import BenchError
from bench.host import interrupts
from bench.results.schema import BATCH_ID_PATTERN, new_batch_id
from bench.spec.runspec import RunConfig, add_run_flags

# verb -> (module:function that adds its parser, one-line help for `bench --help`)
VERBS: dict[str, tuple[str, str]] = {
    "run": ("bench.cli:register_run", "train one configuration and write its result"),
    "suite": ("bench.cli:register_suite", "run a named suite and print its table"),
    "env": ("bench.cli:register_env", "print the environment fingerprint"),
    "compare": ("bench.gate.compare:register", "compare two result sets (e.g. two GPUs, or a run "
                "against a baseline)"),
    "report": ("bench.report:register", "figures and report.md across devices"),
    "export": ("bench.results.export:register", "write results to CSV or parquet"),
    "samples": ("bench.data.samples:register", "draw a grid of training images with class names"),
    "ci": ("bench.ci.job:register", "run the ci suite and compare it with this device's baseline"),
    "convert": ("bench.data.ffcv.convert:register", "write ffcv .beton copies of datasets (train "
                "and test)"),
    "loaders": ("bench.data.loader_bench:register", "time the data loaders alone (no model), side "
                "by side"),
    "peak": ("bench.measure.peak:register", "measure this device's FLOP/s and copy GB/s (cached)"),
    "sweep": ("bench.measure.sweep:register",
              "images/s against batch size for one model (table + PNG)"),
    "history": ("bench.history.verb:register", "images/s and time-to-accuracy over commits as a "
                "static HTML page, drawn from the result files"),
    "doctor": ("bench.doctor.verb:register", "self-check of this machine: every path, a pass/fail "
               "table (and JSON)"),
}


# The most data-parallel processes `run --nproc` launches: torchrun --standalone is one node,
# one process per GPU (8 on the largest nodes); on a CPU more processes than cores only
# oversubscribe it. Beyond this is a typo, not a job (each process loads the data and model).
MAX_NPROC = 64


def batch_id_arg(text: str) -> str:
    """`bench suite --batch-id`: the id `bench ci` gives every round process of one job."""
    if not re.fullmatch(BATCH_ID_PATTERN, text):
        raise argparse.ArgumentTypeError(f"expected 12 hexadecimal digits, not {text[:40]!r}")
    return text


def models_arg(text: str) -> tuple[str, ...]:
    """`bench suite --models a,b`: only these models' runs (`bench ci`'s later rounds measure
    only the configurations still undecided)."""
    names = tuple(n for n in text.split(",") if n)
    if not names or not all(re.fullmatch(r"[^,\s]{1,200}", n) for n in names):
        raise argparse.ArgumentTypeError(f"expected model names separated by commas, not "
                                         f"{text[:40]!r}")
    return names


def check_count(flag: str, value: int, maximum: int) -> None:
    """A count flag that multiplies work: positive and at most `maximum`, else one line."""
    if value <= 0:
        raise BenchError(f"{flag} must be positive, got {value}")
    if value > maximum:
        raise BenchError(f"{flag} must be at most {maximum:,}, got {value:,}")


# ----------------------------------------------------------------------------- run
def _run_line(result: Any, path: Any) -> str:
    """The one line a finished run prints (`bench.measure.summary.run_line`); hints go to stderr."""
    from bench.measure.summary import hints, run_line

    for hint in hints(result):
        print(f"bench: hint: {hint}", file=sys.stderr)
    return run_line(result, path) + _throttle_note(result.summary)


def _throttle_note(summary: Any) -> str:
    """The GPU-throttled warning (bench.host.nvml), on the same line; empty when it did not."""
    from bench.host.nvml import throttle_warning

    warning = throttle_warning(summary)
    return f"; {warning}" if warning else ""


def _status_code(status: str) -> int:
    """The exit code of a run's status; an interruption exits 128 + the signal's number."""
    return interrupts.exit_code() if status == "interrupted" else EXIT_CODES.get(status, 1)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.measure.distributed import DistContext, launch, launched_by_torchrun
    from bench.measure.runner import run, validate
    from bench.spec.recipes import BatchSize

    check_count("--repeats", args.repeats, MAX_REPEATS)
    check_count("--nproc", args.nproc, MAX_NPROC)
    base = RunConfig.from_args(args)
    device = validate(base)  # before any launch: a bad flag is one line here, not one per rank
    if args.nproc > 1 and isinstance(base.batch_size, int):
        BatchSize(base.batch_size, args.nproc)  # a remainder: refused before launching
    if args.nproc > 1:
        return launch(sys.argv[1:] if args.argv is None else args.argv, args.nproc)
    dist = DistContext.join(device) if launched_by_torchrun() else None
    code = 0
    base = replace(base, batch_id=new_batch_id())  # its repeats are one job
    for r in range(args.repeats):
        result, path = run(replace(base, seed=base.seed + r, repeat=r), dist, device)
        if dist is not None and dist.rank != 0:  # under torchrun rank 0 alone reports
            code = _status_code(result.status)
            if result.status != "ok":
                break  # the process group is gone: no further repeats
            continue
        print(_run_line(result, path))
        if result.status != "ok":
            print(f"bench: {result.status}: {result.message}", file=sys.stderr)
            code = _status_code(result.status)
            if result.status == "interrupted" or dist is not None:
                break
    return code


def register_run(sub: Any) -> None:
    p = sub.add_parser("run", help=VERBS["run"][1], description="Train one model on one "
                       "dataset with its recipe (flags override it), time every window of "
                       "steps, evaluate, and write the result (JSON) into --out; print one line.")
    add_run_flags(p)
    p.add_argument("--repeats", type=int, default=1, help="runs of this configuration, seeds "
                   f"seed, seed+1, ... (at most {MAX_REPEATS:,})")
    p.add_argument("--nproc", type=int, default=1, help="launch N data-parallel processes "
                   f"through torchrun (at most {MAX_NPROC})")
    p.set_defaults(func=cmd_run, argv=None)


# ----------------------------------------------------------------------------- suite
def cmd_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.history.hooks import warn_history_flag
    from bench.results import atomic_write_text, read_result
    from bench.results.suite_tables import suite_table
    from bench.suites.catalogue import suite_label
    from bench.suites.policy import SuiteStopped, check_archive, run_suite, write_archive

    check_count("--repeats", args.repeats, MAX_REPEATS)
    warn_history_flag(args.history)
    archive = check_archive(args.archive) if args.archive else None
    overrides = {k: v for k, v in (("compile", args.compile), ("threads", args.threads),
                                   ("budget_s", args.budget_s)) if v is not None}
    stopped = None
    try:
        paths = run_suite(args.name, data_dir=args.data_dir, out_dir=args.out,
                          device=args.device, repeats=args.repeats, quiet=args.quiet,
                          progress=args.progress, overrides=overrides, download=args.download,
                          gate=args.gate, batch=args.batch_id, models=args.models)
    except SuiteStopped as exc:  # the table of what finished is still written
        paths, stopped = exc.paths, exc
    if not paths:
        if stopped is not None:
            raise stopped
        raise BenchError("the suite produced no results")
    table = suite_table(paths)
    print(table)
    table_path = Path(args.out) / f"suite-{suite_label(args.name)}-latest.md"
    atomic_write_text(table_path, table + "\n")
    if archive is not None:  # stopped or failed runs too: what finished is in it
        write_archive(archive, [*paths, table_path], Path(args.out))
        print(f"bench: suite archive {archive} ({len(paths)} result(s) and the table)",
              file=sys.stderr)
    if stopped is not None:
        print(f"bench: suite stopped by {interrupts.describe()} after {len(paths)} run(s)",
              file=sys.stderr)
        return interrupts.exit_code()
    failed = [p for p in paths if read_result(p).get("status") != "ok"]
    if failed:
        print(f"bench: {len(failed)} of {len(paths)} run(s) did not finish ok (see the table)",
              file=sys.stderr)
    return 1 if failed else 0


def _suite_description() -> str:
    """What `bench suite` does and the suites, one line each (an indented block: kept as is)."""
    from bench.suites.catalogue import MODEL_SUITES, SUITES

    width = max(map(len, SUITES))
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, what in SUITES.items())
    return ("Run every configuration of a named suite one after another (a failing one is "
            "recorded and the suite goes on), write each result, and print the suite's table "
            f"(also saved as <out>/suite-<name>-latest.md).\n\nsuites:\n\n{rows}\n\n"
            f"{MODEL_SUITES}")


def register_suite(sub: Any) -> None:
    from bench.history.hooks import add_history_flag

    p = sub.add_parser("suite", help=VERBS["suite"][1], description=_suite_description())
    p.add_argument("name", nargs="?", default="default",
                   help="the suite to run (listed above), or a suite file (FILE.toml, "
                   "docs/plugins.md)")
    add_run_flags(p, include=("data_dir", "out", "device", "download"))
    p.add_argument("--repeats", type=int, default=1, help="runs of every configuration, "
                   "interleaved (A B A B, not A A B B), seeds seed, seed+1, ... (at most "
                   f"{MAX_REPEATS:,})")
    p.add_argument("--archive", metavar="FILE.tar.gz", default=None,
                   help="also bundle the suite's result files and its table into this one "
                   "gzip'd tar at the end (also when stopped, or when runs failed; default: "
                   "none)")
    add_run_flags(p, include=("compile", "threads", "budget_s", "quiet", "progress"),
                  helps={"compile": "override every run's torch.compile mode: "
                                    + ", ".join(COMPILE_MODES),
                         "threads": "override every run's CPU thread count"})
    p.add_argument("--gate", action="store_true", help="a suite file: run only what `bench ci "
                   "--suite FILE` gates, measured as the gate measures it")
    p.add_argument("--batch-id", type=batch_id_arg, default=None, help=argparse.SUPPRESS)
    p.add_argument("--models", type=models_arg, default=None, help=argparse.SUPPRESS)
    add_history_flag(p)
    p.set_defaults(func=cmd_suite)


# ----------------------------------------------------------------------------- env
def cmd_env(args: argparse.Namespace) -> int:
    from bench.host.envinfo import fingerprint

    print(json.dumps(fingerprint(), indent=1))
    return 0


def register_env(sub: Any) -> None:
    p = sub.add_parser("env", help=VERBS["env"][1], description="Print this machine's "
                       "fingerprint as JSON: the one stored in every result (Python, torch, "
                       "CUDA, devices, CPU, git commit).")
    p.set_defaults(func=cmd_env)


# ----------------------------------------------------------------------------- parser
DESCRIPTION = ("Benchmark training of classic networks (an MLP, a CNN, LeNet-5, VGG) on MNIST "
               "and CIFAR-10, on CPUs and GPUs: throughput (images/s), time to a target "
               "accuracy, final accuracy. Compare devices and commits, draw reports, and gate "
               "CI on training speed.")
EPILOG = ("Start with `bench run --model cnn`. `bench VERB --help` lists a verb's options "
          "with their defaults; `bench env` prints the machine fingerprint stored in every "
          "result.")


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default after its help, unless the help mentions its default already
    or there is none worth showing (None, empty, a switch); keeps a paragraph that starts with
    two spaces as written (a table), wraps the others."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or default == "" or "default" in text.lower()):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paras = []
        for para in text.split("\n\n"):
            if para.startswith("  "):
                paras.append("\n".join(indent + line for line in para.splitlines()))
            else:
                paras.append(super()._fill_text(para, width, indent))
        return "\n\n".join(paras)


class _VersionAction(argparse.Action):
    """--version, computed only when asked (it imports torch)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> NoReturn:
        from bench.host.envinfo import version_line  # imports torch: only when asked

        print(version_line())
        parser.exit()


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (not the usage block) and exits 2, and
    shows defaults in its help (its verbs' parsers are OneLineParsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"bench: error: {self.prog}: {message} "
                                  f"(see {self.prog} --help)\n")


def _registrar(target: str) -> Callable[[Any], None] | None:
    """The verb's register function; None when its optional module is not installed."""
    mod_name, func = target.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == mod_name or mod_name.startswith(exc.name)):
            return None
        raise
    return getattr(mod, func)


def _chosen_verb(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only the verb named in argv (all of them when argv is None) is built in
    full, the others are stubs so that their modules are not imported."""
    parser = OneLineParser(prog="bench", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action=_VersionAction, help="print the versions of "
                        "bench, torch and the CUDA torch was built with, and exit")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                help="what to do (bench VERB --help: its options)")
    chosen = _chosen_verb(argv) if argv is not None else None
    for name, (target, help_text) in VERBS.items():
        register = _registrar(target) if argv is None or name == chosen else None
        if register is not None:
            register(sub)
            verb = sub.choices[name]  # `bench VERB --help` says at least what the table says
            verb.description = verb.description or help_text[:1].upper() + help_text[1:] + "."
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


# What a failed import of a dependency says it may be: torch's CUDA libraries map GBs of
# address space, so a small `ulimit -v` fails `import torch` (measured, torch 2.14 CUDA build:
# 60 MB-2.9 GB "failed to map segment from shared object", 3.2 GB a SystemError, 3.25 GB a
# MemoryError, all one line here; at 3.0-3.1 GB torch's C++ or OpenBLAS ends the process past
# any handler); an interrupted pip leaves a half-installed package.
IMPORT_HINT = "(too little memory? ulimit -v; or a broken install)"
MISSING_HINT = "(not installed in this Python?)"


def _importing(exc: BaseException) -> str | None:
    """The top-level package an import was loading when `exc` was raised: the first module
    outside bench whose top-level code (a `<module>` frame: an import under way) was running;
    for an ImportError raised by bench's own import statement, the module it names. None when
    no import of a dependency was under way. (Python trims the import machinery's own frames
    from such tracebacks: the module bodies are what is left to tell.)"""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if frame.f_code.co_name == "<module>" and package not in ("bench", "__main__", ""):
            return package
    if isinstance(exc, ImportError):
        return exc.name or "a dependency"
    return None


def _error_line(exc: Exception) -> str | None:
    """The one stderr line of a failure that is no bug of ours: bad input (BenchError), a
    dependency that cannot be imported, a warning raised as an error (PYTHONWARNINGS=error),
    an OS error (an output that cannot be written). None: a bug, for its traceback."""
    if isinstance(exc, BenchError):  # may quote a string from a file: no terminal controls
        from bench.results.escape import term

        return f"bench: error: {term(str(exc))}"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, Warning):  # raised, not shown: -W error or PYTHONWARNINGS=error
        return (f"bench: error: {type(exc).__name__} raised as an error (PYTHONWARNINGS=error "
                f"or -W error): {first}")
    # anything escaping a dependency's import: ImportError, OSError, MemoryError, and the
    # SystemError CPython raises when an allocation fails inside the import machinery
    module = _importing(exc)
    if module is not None:
        hint = MISSING_HINT if isinstance(exc, ModuleNotFoundError) else IMPORT_HINT
        return f"bench: error: cannot import {module}: {first} {hint}"
    if isinstance(exc, OSError):  # an output that cannot be written (full, read-only, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        return f"bench: error: {where}{exc.strerror or exc}"
    return None


def _dispatch(args_list: list[str], argv: Sequence[str] | None) -> int:
    """Parse the flags and run the verb (the exit code; `main` turns failures into lines)."""
    parser = build_parser(args_list)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, or a bad flag already reported in one line
        return int(exc.code or 0)
    if argv is not None and getattr(args, "argv", False) is None:
        args.argv = list(argv)  # `--nproc` re-launches these, not sys.argv
    if not hasattr(args, "func"):
        raise BenchError(f"verb {args.verb!r} is not available here (an optional "
                         "dependency is missing)")
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; bad input, a dependency that cannot be imported, a warning raised as an
    error and an OS error are one stderr line and EXIT_BAD_INPUT, never a traceback
    (BENCH_DEBUG=1 re-raises all but bad input, for developers). KeyboardInterrupt and
    SystemExit pass through as they are (an interruption: its line and 128 + signal)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    previous = interrupts.install()
    try:
        return _dispatch(args_list, argv)
    except KeyboardInterrupt:
        print(f"bench: stopped by {interrupts.describe()}", file=sys.stderr)
        return interrupts.exit_code()
    except Exception as exc:
        line = _error_line(exc)
        if line is None or (os.environ.get("BENCH_DEBUG") and not isinstance(exc, BenchError)):
            raise
        print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        interrupts.restore(previous)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
