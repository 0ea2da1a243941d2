"""The run specification: every option of a training run, declared once.

`RunConfig` is the one list of run options. Each field's metadata says how it appears on the
command line (flag, help, type, bounds, choices) and whether it overrides the recipe's field of
the same name. From it: `add_run_flags` derives the argparse flags (`run`, `sweep`, `suite` and
`ci` share them), `RunConfig.from_args` builds a config from parsed flags, `validate_options`
checks choices and bounds with one-line errors, `recipe_overrides` applies the given flags to
a recipe, and the runner derives the result's `config` from the same fields
(`recorded_options`). Adding an option is one field here.

Torch-free: the choices of --model and friends are looked up only when a parser or a check
needs them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from bench import defaults
from bench.errors import BenchError


def _models() -> Sequence[str]:
    """The registered models, then those installed plugins declare."""
    from bench.spec.models import MODELS
    from bench.spec.models.external import entry_point_names

    return (*MODELS, *entry_point_names())


def _external_model(name: str) -> bool:
    """package.module:function and timm:NAME pass to the resolver (bench.spec.models.external)."""
    from bench.spec.models.external import is_reference

    return is_reference(name)


def _datasets() -> Sequence[str]:
    from bench.spec.datasets import DATASETS

    return tuple(DATASETS)


def _loaders() -> Sequence[str]:
    return defaults.LOADERS


def _loader_name(text: str) -> str:
    """--loader: a former name (`gpu`) is read as the current one (`device`)."""
    return defaults.canonical_loader(text)


MAX_WORKERS = 256  # more loader processes than this is a typo, not a setting


AUTO_BATCH = "auto"  # --batch-size auto: the largest batch that runs a step (measure.autobatch)


def _batch_size(text: str) -> int | str:
    if text == AUTO_BATCH:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'auto', not {text!r}") from None


def option(default: Any, help: str, *, kind: str = "value", parse: Callable | None = None,
           choices: Callable[[], Sequence[str]] | None = None, what: str | None = None,
           minimum: float | None = None, strict: bool = False, maximum: float | None = None,
           recipe: bool = False,
           env: Callable[[], Any] | None = None, flag: bool = True, required: bool = False,
           record: bool = True, cli: str | None = None,
           also: tuple[Callable[[str], bool], str] | None = None) -> Any:
    """A RunConfig field with its command-line and validation facts.

    kind: "value" (takes an argument), "tristate" (--x/--no-x, None when absent), "true"
    (store_true) or "false" (--no-x stores False). choices: names accepted, looked up lazily
    (what: the word used in "unknown <what>"). minimum/strict: numeric lower bound (> when
    strict); maximum: upper bound (inclusive). recipe: overrides the recipe's field of the same
    name when given. env: the flag's default is read at parse time (e.g. $BENCH_DATA_DIR).
    record: stored in the result's config. cli: the flag's name when it is not --<field-name>.
    also: (accepts, what) values beyond the choices that `accepts` lets through, named `what`.
    """
    return field(default=default, metadata={
        "help": help, "kind": kind, "parse": parse, "choices": choices, "what": what,
        "minimum": minimum, "strict": strict, "maximum": maximum, "recipe": recipe, "env": env,
        "flag": flag, "required": required, "record": record, "cli": cli, "also": also})


@dataclass
class RunConfig:
    """Options of one training run; None means 'take it from the recipe' (or the model)."""

    model: str = option(None, "model to train (or package.module:function, timm:NAME)",
                        choices=_models, what="model", required=True,
                        also=(_external_model, "or package.module:function, timm:NAME"))
    dataset: str | None = option(None, "dataset (default: the model's)", choices=_datasets,
                                 what="dataset")
    loader: str | None = option(None, "data loader ('gpu', its former name, reads as 'device')",
                                choices=_loaders, what="loader",
                                parse=_loader_name, recipe=True)
    device: str = option(defaults.DEVICE, "device to run on: auto (a GPU torch can use, else "
                         "the CPU), cpu, cuda, cuda:N")
    precision: str | None = option(None, "training precision", what="precision",
                                   choices=lambda: defaults.PRECISIONS, recipe=True)
    channels_last: bool | None = option(None, "channels-last memory format", kind="tristate",
                                        recipe=True)
    compile: str | None = option(None, "torch.compile mode", what="compile mode",
                                 choices=lambda: defaults.COMPILE_MODES, recipe=True)
    recipe: str | None = option(None, "training recipe (seed: the course's own settings; "
                                "default: seed, or fast for a model without one)",
                                choices=lambda: _recipe_names(), what="recipe")
    batch_size: int | str | None = option(None, "integer or 'auto' (largest that fits)",
                                          parse=_batch_size, minimum=0, strict=True, recipe=True,
                                          also=(lambda v: v == AUTO_BATCH, "or 'auto'"))
    epochs: float | None = option(None, "training epochs (may be fractional)", parse=float,
                                  minimum=0, strict=True, recipe=True)
    max_steps: int | None = option(None, "stop after this many training steps (default: no "
                                   "cap, the epochs decide)", parse=int, minimum=0, strict=True)
    seed: int = option(0, "random seed (mnist-perm's permutation too)", parse=int, minimum=0,
                       maximum=2**63 - 1)
    data_dir: str | None = option(None, f"folder holding the datasets (default: "
                                  f"${defaults.DATA_DIR_ENV})", env=defaults.data_dir_default)
    out: str = option(defaults.RESULTS_DIR, "folder the result files go to")
    workers: int | None = option(None, "loader worker processes", parse=int, minimum=0,
                                 maximum=MAX_WORKERS, recipe=True)
    eval_every: int | None = option(None, "evaluate every N steps (0: every epoch)", parse=int,
                                    minimum=0, recipe=True)
    lr: float | None = option(None, "peak learning rate", parse=float, minimum=0, strict=True,
                              recipe=True)
    threads: int | None = option(None, "CPU intra-op threads (torch.set_num_threads)",
                                 parse=int, minimum=1,
                                 maximum=1024, recipe=True)
    warmup_steps: int = option(defaults.WARMUP_STEPS, "steps of the untimed warm-up pass before "
                               "training (compilation, autotuning, loader JIT)", parse=int,
                               minimum=1)
    window_steps: int = option(defaults.WINDOW_STEPS, "steps between two clock reads in steady "
                               "state", parse=int, minimum=1)
    measure: str = option("train", "train: the recipe's run (accuracy, time to target); "
                          "throughput: images/s for comparison (no evaluation, untimed warm-up, "
                          "--budget-s of timed windows)", choices=lambda: defaults.MEASURES,
                          what="measurement")
    budget_s: float | None = option(None, "throughput mode: seconds of timed training per run "
                                    f"(default: {defaults.THROUGHPUT_BUDGET_S['cpu']:g} on a CPU, "
                                    f"{defaults.THROUGHPUT_BUDGET_S['cuda']:g} on a GPU)",
                                    parse=float, minimum=0, strict=True)
    allow_synthetic: bool = option(False, "fall back to synthetic data when the real dataset "
                                   "is missing", kind="true", record=False)
    evaluate: bool = option(True, "throughput only: skip evaluation (no accuracy recorded)",
                            kind="false", cli="--no-eval")
    quiet: bool = option(False, "no progress lines", kind="true", record=False)
    progress: bool = option(True, "no progress bar (shown only when stderr is a terminal, "
                            "and on rank 0)", kind="false", cli="--no-progress", record=False)
    # never by default: a node without network would wait on every missing dataset
    download: bool = option(False, "fetch a missing dataset into the cache through "
                            "torchvision (checksummed; a stalled connection times out in "
                            "seconds); default: never download", kind="true", record=False)
    # set by the harness, not by flags
    suite: str | None = option(None, "the suite this run belongs to", flag=False, record=False)
    batch_id: str | None = option(None, "the id of the job (suite, ci or run invocation) this "
                                  "run belongs to", flag=False, record=False)
    repeat: int = option(0, "repeat index within a suite or --repeats", flag=False,
                         record=False)
    write: bool = option(True, "write the result file", flag=False, record=False)
    isolated: bool = option(False, "the suite reset compiled graphs, garbage and the CUDA cache "
                            "before this run (bench.host.device.isolate)", flag=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **fixed: Any) -> RunConfig:
        """A config from parsed flags (those the parser has), `fixed` overriding them."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, **fixed})


def _recipe_names() -> Sequence[str]:
    from bench.spec.recipes import RECIPE_NAMES

    return RECIPE_NAMES


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_flag(parser: argparse.ArgumentParser, f: Any, default: Any, help_text: str) -> None:
    m = f.metadata
    name = m["cli"] or flag_name(f.name)
    if m["kind"] == "tristate":
        parser.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction,
                            default=default, help=help_text)
    elif m["kind"] == "true":
        parser.add_argument(name, dest=f.name, action="store_true", help=help_text)
    elif m["kind"] == "false":
        parser.add_argument(name, dest=f.name, action="store_false", help=help_text)
    else:
        parser.add_argument(name, dest=f.name, type=m["parse"] or str, default=default,
                            required=m["required"], help=help_text)


def _help(f: Any) -> str:
    """The flag's help: its text, its choices, and for a recipe setting where its default
    comes from (other defaults are shown by the CLI's formatter, bench.cli.HelpFormatter)."""
    m = f.metadata
    text = m["help"]
    if m["choices"] is not None:
        text += f": {', '.join(m['choices']())}"
    if m["recipe"]:
        text += " (default: the recipe's)"
    return text


def add_run_flags(parser: argparse.ArgumentParser, include: Iterable[str] | None = None,
                  defaults_: Mapping[str, Any] | None = None,
                  helps: Mapping[str, str] | None = None) -> None:
    """Add the flags of RunConfig's fields (all, or those named in `include`, in that order).

    `defaults_` replaces a field's default for this parser (e.g. sweep's recipe "fast");
    `helps` replaces its help text.
    """
    by_name = {f.name: f for f in fields(RunConfig) if f.metadata["flag"]}
    names = list(include) if include is not None else list(by_name)
    for name in names:
        f = by_name[name]
        default = (defaults_ or {}).get(name, f.default)
        if f.metadata["env"] is not None and name not in (defaults_ or {}):
            default = f.metadata["env"]()
        help_text = (helps or {}).get(name) or _help(f)
        _add_flag(parser, f, default, help_text)


def _check_bound(name: str, value: Any, minimum: float, strict: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    ok = value > minimum if strict else value >= minimum
    if not (ok and math.isfinite(value)):
        word = "positive" if strict and minimum == 0 else f">= {minimum:g}"
        raise BenchError(f"{flag_name(name)} must be {word}, got {value}")


def _also(meta: Mapping[str, Any], value: Any) -> bool:
    """Whether a value outside the choices is one of the option's other forms."""
    return meta["also"] is not None and isinstance(value, str) and meta["also"][0](value)


def validate_options(cfg: RunConfig) -> None:
    """Choices and numeric bounds of every option, each a one-line BenchError."""
    for f in fields(cfg):
        value, m = getattr(cfg, f.name), f.metadata
        if value is None:
            continue
        if m["choices"] is not None and value not in m["choices"]() and not _also(m, value):
            also = f" ({m['also'][1]})" if m["also"] else ""
            raise BenchError(f"unknown {m['what']} {value!r}; choices: "
                             f"{', '.join(m['choices']())}{also}")
        if isinstance(value, str) and m["minimum"] is not None and not _also(m, value):
            also = f" {m['also'][1]}" if m["also"] else ""
            raise BenchError(f"{flag_name(f.name)} must be a number{also}, not {value!r}")
        if m["minimum"] is not None:
            _check_bound(f.name, value, m["minimum"], m["strict"])
        if m["maximum"] is not None and isinstance(value, (int, float)) and value > m["maximum"]:
            raise BenchError(f"{flag_name(f.name)} must be at most {m['maximum']:g}, got {value}")


def recipe_overrides(cfg: RunConfig) -> dict[str, Any]:
    """The recipe fields the given flags override (batch size 'auto' is resolved later)."""
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.metadata["recipe"]}
    if not isinstance(out.get("batch_size"), int):
        out["batch_size"] = None
    return out


def recorded_options(cfg: RunConfig, recipe: Any) -> dict[str, Any]:
    """The options stored in a result's config: recipe-backed ones as the recipe ran them."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        if f.metadata["record"]:
            out[f.name] = getattr(recipe, f.name) if f.metadata["recipe"] else getattr(cfg,
                                                                                       f.name)
    return out
