"""`bench <verb>`: thin argument parsing over the library; user errors print one line.

Exit codes: 0 ok; 1 run error or regression found; 2 bad input (BenchError); 3 NaN loss;
4 out of memory; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from .errors import BenchError

# Verb modules that register their own parsers; optional ones are skipped if absent.
VERB_MODULES = ("bench.compare", "bench.report", "bench.export", "bench.samples", "bench.ci",
                "datasets_ffcv.convert", "bench.loader_bench", "bench.peak", "bench.sweep")




def _batch_size(s: str) -> int | str:
    if s == "auto":
        return s
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'auto', not {s!r}") from None


def add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="fc, cnn, lenet, vgg11, vgg16")
    p.add_argument("--dataset", help="mnist, mnist-perm, cifar10, synthetic-mnist, "
                   "synthetic-cifar10 (default: the model's dataset)")
    p.add_argument("--loader", help="torch, gpu, ffcv (default: the recipe's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", help="fp32, tf32, bf16, fp16 (default: the recipe's)")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction,
                   default=None)
    p.add_argument("--compile", help="none, default, max-autotune, reduce-overhead")
    p.add_argument("--recipe", default="seed", help="seed (the course's settings) or fast")
    p.add_argument("--batch-size", type=_batch_size, help="integer or 'auto'")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    p.add_argument("--out", default="results")
    p.add_argument("--workers", type=int)
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (0: every epoch)")
    p.add_argument("--lr", type=float)
    p.add_argument("--threads", type=int, help="CPU intra-op threads (default: the recipe's)")
    p.add_argument("--allow-synthetic", action="store_true",
                   help="fall back to synthetic data when the real dataset is missing")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--nproc", type=int, default=1, help="launch N data-parallel processes "
                   "through torchrun")
    p.add_argument("--no-eval", dest="evaluate", action="store_false",
                   help="throughput only: skip evaluation (no accuracy recorded)")
    p.add_argument("--quiet", action="store_true")


def _run_config(args: argparse.Namespace, repeat: int = 0):
    from .runner import RunConfig

    return RunConfig(
        model=args.model, dataset=args.dataset, loader=args.loader, device=args.device,
        precision=args.precision, channels_last=args.channels_last, compile=args.compile,
        recipe=args.recipe, batch_size=args.batch_size, epochs=args.epochs,
        max_steps=args.max_steps, seed=args.seed + repeat, data_dir=args.data_dir,
        out=args.out, workers=args.workers, eval_every=args.eval_every, lr=args.lr,
        threads=args.threads,
        allow_synthetic=args.allow_synthetic, repeat=repeat, quiet=args.quiet,
        evaluate=args.evaluate)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import EXIT_CODES, run, validate

    if args.repeats <= 0:
        raise BenchError(f"--repeats must be positive, got {args.repeats}")
    if args.nproc > 1:
        from .distributed import launch

        return launch(sys.argv[1:] if args.argv is None else args.argv, args.nproc)
    validate(_run_config(args))
    code = 0
    for r in range(args.repeats):
        result, path = run(_run_config(args, r))
        distributed = result.config.get("world_size", 1) > 1
        if distributed and path is None:  # under torchrun rank 0 alone reports
            code = EXIT_CODES.get(result.status, 1)
            if result.status != "ok":
                break  # the process group is gone: no further repeats
            continue
        s = result.summary
        acc = s.get("final_test_acc")
        print(f"{result.status}: {result.config['model']}/{result.config['dataset']} "
              f"{result.config['loader']} {result.config['precision']} "
              f"bs={result.config['batch_size']}: "
              f"{(s.get('images_per_s') or 0):,.0f} img/s, "
              f"acc {f'{acc * 100:.2f}%' if acc is not None else '-'}, "
              f"train {s.get('total_train_time_s') or 0:.2f}s "
              f"(warm-up {s.get('warmup_time_s') or 0:.2f}s), "
              + (f"time-to-target {s['time_to_accuracy_s']:.2f}s"
                 if s.get("time_to_accuracy_s") is not None else "target not reached")
              + (f" -> {path}" if path else ""))
        if result.status != "ok":
            print(f"bench: {result.status}: {result.message}", file=sys.stderr)
            code = EXIT_CODES.get(result.status, 1)
            if result.status == "interrupted" or distributed:
                break
    return code


def cmd_suite(args: argparse.Namespace) -> int:
    from .results import atomic_write_text
    from .suites import run_suite, suite_table

    if args.repeats <= 0:
        raise BenchError(f"--repeats must be positive, got {args.repeats}")
    overrides = {k: v for k, v in (("compile", args.compile), ("threads", args.threads))
                 if v is not None}
    paths = run_suite(args.name, data_dir=args.data_dir, out_dir=args.out, device=args.device,
                      repeats=args.repeats, quiet=args.quiet, overrides=overrides)
    if not paths:
        raise BenchError("the suite produced no results")
    table = suite_table(paths)
    print(table)
    from pathlib import Path

    atomic_write_text(Path(args.out) / f"suite-{args.name}-latest.md", table + "\n")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from .envinfo import fingerprint

    print(json.dumps(fingerprint(), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("run", help="train one configuration and write its result")
    add_run_flags(p)
    p.set_defaults(func=cmd_run, argv=None)
    p = sub.add_parser("suite", help="run a named suite and print its table")
    p.add_argument("name", nargs="?", default="default", help="default, ci, smoke")
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    p.add_argument("--out", default="results")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--compile", help="override every run's compile mode")
    p.add_argument("--threads", type=int, help="override every run's CPU thread count")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_suite)
    p = sub.add_parser("env", help="print the environment fingerprint")
    p.set_defaults(func=cmd_env)
    for mod_name in VERB_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == mod_name or mod_name.startswith(exc.name)):
                continue  # verb not built yet
            raise
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if argv is not None and getattr(args, "argv", False) is None:
            args.argv = list(argv)  # `--nproc` re-launches these, not sys.argv
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
