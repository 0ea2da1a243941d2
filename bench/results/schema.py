"""The result document: the `Result` the runner fills in and the typed rows every reader reads.

A result file is JSON, so its rows are dicts; these TypedDicts name their keys once, for the
writer (runner, engine) and the readers (compare, report, export, ci, suites) alike. All are
`total=False` where a key can be absent in older files or in a run that stopped early.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import types
import typing
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

# 2: time_to_accuracy_s is the training clock after an untimed warm-up pass (beside it the
# cold and wall-clock figures and images_to_accuracy); 1 counted a timed warm-up window in it.
SCHEMA_VERSION = 2
STATUSES = ("ok", "oom", "nan", "interrupted", "error")


class WindowRow(TypedDict):
    """One timed window of training steps (clock read at its edges only)."""

    epoch: int
    steps: int
    images: int
    seconds: float
    warmup: bool
    probe: float  # throughput mode: the reference probe's rate (iterations/s) right after it
    turn: int | None  # --against: its turn number, timed in turns with the other side's process


class EvalRow(TypedDict):
    """One evaluation on the test set, at a training step."""

    step: int
    epoch: int
    test_loss: float
    test_acc: float
    train_time_s: float  # training clock when it ran (evaluation itself is off the clock)
    eval_time_s: float


class EpochRow(TypedDict):
    """One training epoch (or the partial epoch a --max-steps run ends in)."""

    epoch: int
    steps: int
    images: int
    train_time_s: float
    images_per_s: float | None
    train_loss: float
    cumulative_train_time_s: float
    timed: bool  # a complete epoch (older results: not the first of several); epoch_time_s
    test_loss: float | None
    test_acc: float | None
    eval_time_s: float | None


class Stat(TypedDict):
    """Minimum, median and maximum of one field's samples over a run."""

    min: float
    median: float
    max: float


class GpuTelemetry(TypedDict, total=False):
    """NVML samples of the run's GPU, taken at window edges (`bench.host.nvml`); `available` False
    and every field None (with `reason`) on a CPU, without pynvml, or without a driver."""

    available: bool
    reason: str | None  # why there are no samples (or why the GPU could not be matched)
    uuid: str | None  # the GPU's UUID as torch and NVML agree on it
    samples: int
    sm_clock_mhz: Stat | None
    mem_clock_mhz: Stat | None
    power_w: Stat | None
    temperature_c: Stat | None
    throttle_reasons: list[str] | None  # every reason seen (NVML clocks-event names)
    throttled: list[str] | None  # those meaning heat or power: the summary line warns
    errors: list[str]  # fields NVML refused (not supported on this board)


class Summary(TypedDict, total=False):
    """The run's headline figures (`result.summary`)."""

    # throughput: median over the steady windows long enough to time and its spread, or
    # (none is: engine.Window.timeable) the training clock's total, no spread
    images_per_s: float | None
    images_per_s_min: float
    images_per_s_max: float
    images_per_s_q1: float
    images_per_s_q3: float
    steady_windows: int  # the windows images_per_s came from
    # timed windows far slower per image than the median (engine.STALL_FACTOR): the process was
    # stopped, preempted or throttled; None: too few windows that count to judge
    stalled_windows: int | None
    stall_ratio: float | None  # the worst one's seconds over the median's for its images
    stall_note: str | None  # which, by how much, what the figures make of it (run line warns)
    # where images_per_s came from, in words: "median of N timed windows >= 20 ms and >= 5
    # steps, or >= 100 ms" or "training clock total: N timed windows, none >= 20 ms and ..."
    images_per_s_source: str | None
    epoch_time_s: float | None  # measured: median over complete epochs (None if none ran)
    epoch_time_extrapolated_s: float | None  # no complete epoch: epoch images / images/s
    epoch_time_source: str | None  # says which of the two, and how
    # --measure throughput: images_per_s is `estimator` over the windows; median kept beside
    images_per_s_median: float | None
    estimator: str
    window_estimates: dict[str, float]
    # and the machine's speed meanwhile (bench/measure/probe.py): the stored-baseline gate's
    # figure is images_per_probe = images_per_s / probe_rate (same estimator)
    probe_rate: float  # reference-workload iterations/s
    probe_version: int
    host_load: dict[str, Any]
    images_per_probe: float
    # accuracy
    final_test_acc: float | None
    best_test_acc: float | None
    target_accuracy: float | None
    # time to target, three ways (result.timed_window names each): the training clock after
    # the untimed warm-up pass (headline); plus that pass (start-up costs); the wall clock from
    # step 0 to the end of the evaluation that reached it (evaluations included, MLPerf's view)
    time_to_accuracy_s: float | None
    time_to_accuracy_cold_s: float | None
    time_to_accuracy_wall_s: float | None
    steps_to_accuracy: int | None
    images_to_accuracy: int | None  # images trained on (all ranks) until the target was reached
    # clocks
    steps: int
    total_train_time_s: float
    total_eval_time_s: float
    warmup_time_s: float | None  # the untimed warm-up pass (older results: the first window)
    wall_time_s: float | None  # the whole run: data, build, warm-up, training, evaluation
    compile_time_s: float | None
    # model and hardware efficiency
    params: int
    flops_per_image: float | None
    # its split by kind (bench.measure.flops.train_flop_split): each kind is bounded by its own peak
    conv_flops_per_image: float | None
    matmul_flops_per_image: float | None
    achieved_tflops: float | None
    peak_tflops: float  # the run's effective peak (engine.effective_peak over peak_precision)
    mfu: float | None  # against the measured peak (mfu_basis says so); never above 1
    mfu_basis: str
    vendor_peak_tflops: float | None  # the vendor's dense datasheet peak (bench.host.vendor_peaks)
    vendor_gpu: str | None  # the table entry it came from
    mfu_vendor: float | None  # never above 1
    # why an MFU is null although a peak is known: it came out above 100% (results.format)
    mfu_note: str | None
    # whose peaks both MFUs divide by (engine.peak_label): one precision ("fp32", "tf32") or
    # one per kind of FLOP ("tf32 conv + fp32 matmul": fp32 on CUDA with only cuDNN's TF32 on)
    peak_precision: str
    peak_memory_bytes: int | None
    peak_memory_kind: str | None
    arithmetic_intensity: float | None
    peak_copy_gbs: float | None
    ridge_flops_per_byte: float
    roofline_bound: str
    gpu_telemetry: GpuTelemetry  # clocks, power, temperature, throttling (bench.host.nvml)
    # data-parallel runs only
    scaling_efficiency: float | None
    distributed: dict[str, Any]


class RunConfigDoc(TypedDict, total=False):
    """`result.config`: the settings a run was made with, as resolved (recipe applied)."""

    model: str
    dataset: str
    loader: str
    device: str
    precision: str
    compile: str
    channels_last: bool
    batch_size: int
    recipe: str
    epochs: float
    max_steps: int | None
    seed: int
    workers: int
    threads: int | None
    data_dir: str | None
    world_size: int
    per_rank_batch_size: int
    warmup_steps: int
    window_steps: int
    evaluate: bool
    batch_size_search: list[dict[str, Any]]
    isolated: bool  # a suite reset compiled graphs, garbage and the CUDA cache before the run
    tf32_matmul: bool  # TF32 for matmuls, as the run had it
    tf32_cudnn: bool  # TF32 for cuDNN convolutions
    cudnn_benchmark: bool  # cuDNN's autotuner on


class ResultDoc(TypedDict, total=False):
    """A result file as read back: `Result.to_dict()`, plus `_path` (where it was read from)."""

    schema_version: int
    run_id: str
    created: str  # ISO 8601, UTC
    status: str  # one of STATUSES
    message: str | None
    suite: str | None
    batch_id: str | None  # the job it ran in: one `bench suite`/`ci`/`run` invocation
    # (`suite_batch` in older files, suite runs only)
    benchmark: dict[str, Any]  # version and part digests (results.version; absent in older files)
    repeat: int
    config: RunConfigDoc
    env: dict[str, Any]
    recipe: dict[str, Any]
    data: dict[str, Any]
    loader: dict[str, Any]
    model: dict[str, Any]
    timed_window: dict[str, Any]
    epochs: list[EpochRow]
    summary: Summary
    evals: list[EvalRow]
    windows: list[WindowRow]
    _path: str  # added by the reader, never written
    _file: str  # the file it was read from (`_path` without a baseline file's `#i`); reader's
    _label: str  # the system name `--label DIR=NAME` gave it (results.labels); reader's


class RunRow(RunConfigDoc, Summary, total=False):
    """One flat row per run (`rows.flatten`): config and summary keys, plus these columns."""

    run_id: str
    created: str
    status: str
    message: str | None
    suite: str | None
    path: str | None
    device_label: str
    host: str | None
    git_commit: str | None
    real_data: bool | None
    benchmark_version: str | None  # results.version: what work the run measured
    benchmark_model: str | None
    benchmark_recipe: str | None
    benchmark_data: str | None
    benchmark_measure: str | None


@dataclass
class Result:
    """What one run writes: `to_dict()` is the result file (a `ResultDoc` without `_path`)."""

    config: dict[str, Any]  # a RunConfigDoc
    env: dict[str, Any]
    status: str = "ok"
    message: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    loader: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    timed_window: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochRow] = field(default_factory=list)
    summary: Summary = field(default_factory=dict)
    evals: list[EvalRow] = field(default_factory=list)  # every evaluation, with its step
    windows: list[WindowRow] = field(default_factory=list)  # timed windows, warm-up first
    suite: str | None = None
    batch_id: str | None = None  # the job (suite, ci or run invocation) it ran in
    repeat: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    def file_name(self) -> str:
        c = self.config
        stamp = self.created.replace(":", "").replace("-", "").replace("+0000", "Z")[:15]
        parts = [stamp, c.get("model"), c.get("dataset"), c.get("loader"), c.get("precision"),
                 f"r{self.repeat}", self.run_id]
        name = "-".join(str(p) for p in parts if p is not None)
        # a model named `timm:resnet18` or `pkg.mod:fn`: no ':' or '/' in a file name
        return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".json"


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """An older result as this version reads it (a new dict; the file is left alone). Schema 1
    counted the warm-up window in the training clock, so its time to target is the cold figure
    (start-up costs included); the warm one was not measured. Images to target follow from
    its steps and the global batch; its loader 'gpu' is now called 'device'. A batch id
    written as `suite_batch` reads as `batch_id`."""
    if "suite_batch" in doc and "batch_id" not in doc:  # its name before every job had one
        doc = {**doc, "batch_id": doc["suite_batch"]}
    if doc.get("schema_version", SCHEMA_VERSION) >= 2:
        return doc
    cfg = doc.get("config")
    if isinstance(cfg, dict) and cfg.get("loader") == "gpu":  # the device loader's former name
        doc = {**doc, "config": {**cfg, "loader": "device"}}
    if not isinstance(doc.get("summary"), dict):
        return doc
    s = dict(doc["summary"])
    if "time_to_accuracy_s" in s and "time_to_accuracy_cold_s" not in s:
        s["time_to_accuracy_cold_s"] = s["time_to_accuracy_s"]
        s["time_to_accuracy_s"] = None
    batch = (doc.get("config") or {}).get("batch_size")
    steps = s.get("steps_to_accuracy")
    if "images_to_accuracy" not in s and isinstance(batch, int) and isinstance(steps, int):
        s["images_to_accuracy"] = steps * batch
    return {**doc, "summary": s}


BATCH_ID_PATTERN = r"[0-9a-f]{12}"  # what new_batch_id makes


def new_batch_id() -> str:
    """The id one job (a `bench suite`, `ci` or `run` invocation) gives all its runs: readers
    take a job's runs whole by it (`newest_suite_batch`, baselines, the history's points)."""
    return uuid.uuid4().hex[:12]


def json_safe(obj: Any, notes: list[str] | None = None, where: str = "") -> Any:
    """NaN/inf are not JSON: store them as null (a NaN loss is recorded by status 'nan'); with
    `notes`, each one is also named there (a reader of ours must never print what a JSON parser
    refuses, nor drop a figure without saying so)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if notes is not None:
            notes.append(f"{where}: {obj} is no JSON number, written as null")
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v, notes, f"{where}.{k}" if where else str(k))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, notes, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def _is_number_hint(hint: Any) -> bool:
    """A TypedDict annotation of int, float, or either or None (bool is no number here)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = set(typing.get_args(hint) if union else (hint,)) - {type(None)}
    return bool(kinds) and kinds <= {int, float}


def number_fields(*rows: type) -> frozenset[str]:
    """The keys of schema TypedDicts that hold numbers: their annotations are the one list (the
    reader's number checks and the DataFrames' column types both derive from it)."""
    return frozenset(k for row in rows for k, h in typing.get_type_hints(row).items()
                     if _is_number_hint(h))
