"""Issue 13, on a CPU: what the first GPU run would hit, each checked without a GPU.

A GPU that torch cannot use stops `--device auto|cuda` (fake nvidia-smi / /proc file); Triton's
compiler and headers are checked before a CUDA run; cuda:N becomes the current device; suite
runs are isolated; the seed recipes keep PyTorch's TF32 defaults; the CUDA fast recipes
compile in bf16; MFU is reported against the measured and the vendor's peak.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.host import device as devmod
from bench.host import toolchain
from bench.host.vendor_peaks import VENDOR_PEAKS, match_gpu, vendor_peak_tflops
from bench.measure import engine, runner, summary
from bench.spec.models import get_model_spec
from bench.spec.runspec import RunConfig
from bench.suites import policy as suites

DRIVER = "535.104.05"
COURSE_MODELS = ("fc", "cnn", "lenet", "vgg11", "vgg16")


def _cfg(tiny_data, tmp_path: Path, **kw) -> RunConfig:
    base = dict(model="fc", dataset="mnist", recipe="seed", device="cpu",
                data_dir=str(tiny_data[0]), out=str(tmp_path / "out"), quiet=True, max_steps=2)
    return RunConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- 1: no silent CPU
@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `nvidia-smi` on PATH that reports a driver, on a machine where torch sees no CUDA."""
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in\n  *--query-gpu=driver_version*--format=csv,noheader*)'
                   f' echo "{DRIVER}" ;;\n  *) exit 9 ;;\nesac\n')
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(devmod, "NVIDIA_SMI", "nvidia-smi")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return smi


def _is_the_driver_line(line: str) -> bool:
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    return all(w in line for w in (f"driver {DRIVER}", cuda, "TORCH_INDEX_URL=https://",
                                   "pip install -e .", "PYTHONPATH=. python -m bench"))


@pytest.mark.parametrize("dev", ["auto", "cuda", "cuda:1"])
def test_a_gpu_torch_cannot_use_stops_the_run(fake_nvidia_smi, tiny_data, tmp_path, bench_cli,
                                              dev) -> None:
    code, lines = bench_cli("run", "--model", "fc", "--device", dev, "--max-steps", "2",
                            "--data-dir", tiny_data[0], "--out", tmp_path / "out", "--quiet")
    assert code == 2 and len(lines) == 1 and _is_the_driver_line(lines[0]), lines
    assert f"--device {dev}:" in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))


def test_a_gpu_torch_cannot_use_stops_a_suite_before_its_first_run(fake_nvidia_smi, tiny_data,
                                                                   tmp_path, bench_cli) -> None:
    code, lines = bench_cli("suite", "smoke", "--data-dir", tiny_data[0], "--out",
                            tmp_path / "out", "--quiet")  # --device auto, as `make bench` runs
    assert code == 2 and len(lines) == 1 and _is_the_driver_line(lines[0]), lines


def test_the_proc_file_shows_a_driver_too(tmp_path, monkeypatch) -> None:
    proc = tmp_path / "version"
    proc.write_text(f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {DRIVER}  Release "
                    "Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jul 31 2025\nGCC version:  gcc "
                    "version 12.3.0\n")
    monkeypatch.setattr(devmod, "NVIDIA_PROC_VERSION", proc)
    monkeypatch.setattr(devmod, "NVIDIA_DEV_DIR", tmp_path / "dev")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "dev").mkdir()
    # a container without GPUs sees the host's /proc but has no device node: no GPU here
    assert devmod.nvidia_driver_version() is None
    (tmp_path / "dev" / "nvidia0").touch()
    assert devmod.nvidia_driver_version() == DRIVER
    with pytest.raises(BenchError, match=f"driver {DRIVER}"):
        devmod.resolve_device("auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden on purpose: the CPU it is
    assert devmod.resolve_device("auto") == torch.device("cpu")


def test_cpu_never_probes_and_a_broken_nvidia_smi_is_no_gpu(fake_nvidia_smi, monkeypatch) -> None:
    assert devmod.resolve_device("cpu") == torch.device("cpu")
    fake_nvidia_smi.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed because it could not '
                               'communicate with the NVIDIA driver."\nexit 9\n')
    assert devmod.nvidia_driver_version() is None  # nor a /proc file (tests/conftest.py)
    assert devmod.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(BenchError, match="no CUDA device is available"):
        devmod.resolve_device("cuda")
    monkeypatch.setattr(devmod, "nvidia_driver_version", lambda: pytest.fail("probed"))
    assert devmod.resolve_device("cpu") == torch.device("cpu")


# ----------------------------------------------------------------------------- 2: Triton toolchain
def test_toolchain_names_what_is_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    monkeypatch.setattr(toolchain, "python_include_dir", lambda: tmp_path)
    lacking = toolchain.missing()
    assert len(lacking) == 2 and "no C compiler" in lacking[0] and "Python.h" in lacking[1]
    with pytest.raises(BenchError, match="build-essential python3.*-dev") as err:
        toolchain.require("fc on cuda")
    assert "\n" not in str(err.value) and "Triton builds a C launcher" in str(err.value)

    (tmp_path / "Python.h").write_text("/* headers */\n")
    monkeypatch.setattr(toolchain.shutil, "which",
                        lambda name: f"/usr/bin/{name}" if name == "clang" else None)
    assert toolchain.missing() == [] and toolchain.c_compiler() == "/usr/bin/clang"
    toolchain.require("fc on cuda")
    monkeypatch.setenv("CC", "my-cc")  # Triton calls $CC itself, not gcc, when it is set
    assert toolchain.missing() == ["$CC='my-cc' is not a command here"]


def test_which_runs_need_triton() -> None:
    assert toolchain.uses_triton("cuda", "none", "device")
    assert toolchain.uses_triton("cuda", "default", "torch")
    assert not toolchain.uses_triton("cuda", "none", "torch")
    assert not toolchain.uses_triton("cpu", "reduce-overhead", "device")


@pytest.fixture
def no_toolchain(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    monkeypatch.setattr(toolchain, "python_include_dir", lambda: tmp_path / "no-include")


def test_a_cuda_run_that_needs_triton_stops_before_it_starts(no_toolchain, tmp_path, monkeypatch,
                                                            bench_cli) -> None:
    monkeypatch.setattr(devmod, "resolve_device", lambda name: torch.device("cuda"))
    code, lines = bench_cli("run", "--model", "fc", "--recipe", "fast", "--device", "cuda",
                            "--out", tmp_path / "out")
    assert code == 2 and len(lines) == 1 and "Triton builds a C launcher" in lines[0], lines
    assert "compile reduce-overhead" in lines[0] and "no C compiler" in lines[0]
    seed = runner.recipe_for(RunConfig(model="fc"), "cuda")  # torch loader, eager: no Triton
    runner.check_toolchain(RunConfig(model="fc"), seed, torch.device("cuda"))
    with pytest.raises(BenchError, match="the suite's runs of cnn, fc, lenet, vgg11, vgg16 on"):
        suites._check_toolchain(suites.suite_configs("default", True)[0], torch.device("cuda"))


# ----------------------------------------------------------------------------- 3: cuda:N
class _Stop(Exception):
    pass


def test_cuda_index_becomes_the_current_device(tiny_data, tmp_path, monkeypatch) -> None:
    calls: list[torch.device] = []

    def set_device(dev: torch.device) -> None:
        calls.append(torch.device(dev))
        raise _Stop  # nothing further can run on a CPU-only machine

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(devmod, "resolve_device", lambda name: torch.device(name))
    plan = runner.resolve(_cfg(tiny_data, tmp_path, device="cuda:1"))
    assert plan.device == torch.device("cuda:1")
    with pytest.raises(_Stop):
        runner.build(plan)
    assert calls == [torch.device("cuda:1")]
    devmod.select(torch.device("cuda"))  # no index: the current device stays
    devmod.select(torch.device("cpu"))
    assert calls == [torch.device("cuda:1")]


# ----------------------------------------------------------------------------- 4: isolation
def test_suite_runs_are_isolated_and_say_so(tiny_data, tmp_path, monkeypatch) -> None:
    import torch._dynamo  # noqa: F401  (loaded: isolate() has compiled state to reset)

    events: list[str] = []
    cfgs = [RunConfig(model="fc", dataset="mnist", max_steps=2),
            RunConfig(model="cnn", dataset="mnist", max_steps=2)]
    monkeypatch.setattr(suites, "suite_configs", lambda name, on_gpu: (cfgs, "test"))
    monkeypatch.setattr(suites, "_ensure_peak", lambda device: None)
    monkeypatch.setattr(torch.compiler, "reset", lambda: events.append("reset"))
    real_run = suites.run
    monkeypatch.setattr(suites, "run", lambda c: (events.append(f"run {c.model}"),
                                                  real_run(c))[1])
    paths = suites.run_suite("x", data_dir=str(tiny_data[0]), out_dir=str(tmp_path),
                             device="cpu", quiet=True)
    assert events == ["reset", "run fc", "reset", "run cnn"]
    docs = [json.loads(p.read_text()) for p in paths]
    assert [d["status"] for d in docs] == ["ok", "ok"]
    assert all(d["config"]["isolated"] is True for d in docs)
    single, _ = runner.run(_cfg(tiny_data, tmp_path))
    assert single.config["isolated"] is False  # a lone `bench run` is not reset before


def test_isolate_frees_the_cuda_cache_only_on_cuda(monkeypatch) -> None:
    freed: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    devmod.isolate(torch.device("cpu"))
    assert freed == []
    devmod.isolate(torch.device("cuda"))
    assert freed == [True]


# ----------------------------------------------------------------------------- 7: seed = defaults
@pytest.fixture
def tf32_flags():
    """Put every TF32/autotune flag and the thread count back as they were."""
    saved, benchmark = engine.tf32_flags(), torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()  # build() applies a recipe's threads; run() restores them
    yield
    engine.set_tf32(*saved)
    torch.backends.cudnn.benchmark = benchmark
    torch.set_num_threads(threads)


def _scramble() -> None:
    """What an earlier run of the process (bench peak's tf32 probe, a tf32 run) may leave."""
    engine.set_tf32(matmul=True, cudnn=False)
    torch.backends.cudnn.benchmark = True


def test_seed_recipes_run_with_pytorch_defaults(tf32_flags, tiny_data, tmp_path) -> None:
    _scramble()
    built = runner.build(runner.resolve(_cfg(tiny_data, tmp_path, recipe="seed")))
    assert engine.tf32_flags() == (False, True)  # PyTorch's defaults, set again
    assert torch.backends.cudnn.benchmark is False
    c = built.result.config
    assert (c["tf32_matmul"], c["tf32_cudnn"], c["cudnn_benchmark"]) == (False, True, False)
    assert built.result.recipe["torch_defaults"] is True

    _scramble()  # fc's fast recipe is fp32: true fp32, no TF32 anywhere
    built = runner.build(runner.resolve(_cfg(tiny_data, tmp_path, recipe="fast")))
    assert engine.tf32_flags() == (False, False)
    assert built.result.config["tf32_cudnn"] is False


def _every_reader() -> dict[str, object]:
    """Each way torch code reads the TF32 state, legacy and per-backend: none may raise."""
    readers = {"matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
               "cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
               "get_float32_matmul_precision": torch.get_float32_matmul_precision}
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        readers["matmul.fp32_precision"] = lambda: torch.backends.cuda.matmul.fp32_precision
        readers["cudnn.conv.fp32_precision"] = lambda: torch.backends.cudnn.conv.fp32_precision
    return {name: read() for name, read in readers.items()}


@pytest.mark.parametrize("matmul, cudnn", [(True, True), (True, False), (False, True),
                                           (False, False)])
def test_tf32_switches_round_trip_and_every_reader_agrees(tf32_flags, matmul: bool,
                                                          cudnn: bool) -> None:
    """Issue 25.12: one owner sets and reads TF32 (the engine), without a warning, and leaves
    torch's legacy and per-backend states in step: setting only the new `fp32_precision`
    attributes makes every later legacy read (inductor and dynamo make some) raise "mix of the
    legacy and new APIs" on torch 2.11 and 2.14."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine.set_tf32(matmul=matmul, cudnn=cudnn)
        assert engine.tf32_flags() == (matmul, cudnn)
        settings = engine.backend_settings()
        assert (settings["tf32_matmul"], settings["tf32_cudnn"]) == (matmul, cudnn)
        seen = _every_reader()
    assert [str(w.message) for w in caught] == []
    assert seen["matmul.allow_tf32"] is matmul and seen["cudnn.allow_tf32"] is cudnn
    assert seen["get_float32_matmul_precision"] == ("high" if matmul else "highest")
    if "matmul.fp32_precision" in seen:
        assert seen["matmul.fp32_precision"] == ("tf32" if matmul else "ieee")
        assert (seen["cudnn.conv.fp32_precision"] == "tf32") is cudnn


def test_tf32_flags_read_a_state_set_through_the_new_api_only(tf32_flags) -> None:
    """Other code in the process (a user's model file) may set only the new API: the engine's
    read must not raise then."""
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("torch before 2.9 has no fp32_precision API")
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    with pytest.raises(RuntimeError, match="mix of the legacy and new"):
        torch.get_float32_matmul_precision()  # what the engine's own switch avoids
    assert engine.tf32_flags() == (True, False)
    engine.set_tf32(matmul=False, cudnn=True)  # and the engine's switch mends it
    assert _every_reader()["get_float32_matmul_precision"] == "highest"


def test_bench_peak_switches_tf32_through_the_engine(tf32_flags, monkeypatch) -> None:
    """peak.py's per-precision probes toggle TF32 with the engine's helpers and give the
    process back what it had (a run in the same suite keeps its settings)."""
    from bench.measure import peak

    engine.set_tf32(matmul=False, cudnn=True)
    during: list[tuple[str, tuple[bool, bool]]] = []
    monkeypatch.setattr(peak, "matmul_flops",
                        lambda d, p, n, r: during.append((p, engine.tf32_flags())) or 1e12)
    monkeypatch.setattr(peak, "conv1x1_flops", lambda d, p, *a: 1e12)
    monkeypatch.setattr(peak, "copy_bandwidth", lambda d, n, r: 1e11)
    monkeypatch.setattr(peak, "atomic_write_text", lambda path, text: None)
    monkeypatch.setattr(peak, "load_cached_peak", lambda device: None)
    peak.measure_peak(torch.device("cuda"), quick=True)
    assert dict(during) == {"fp32": (False, False), "tf32": (True, True),
                            "bf16": (False, False), "fp16": (False, False)}
    assert engine.tf32_flags() == (False, True)


@pytest.mark.parametrize("name", COURSE_MODELS)
def test_only_the_seed_recipes_keep_torch_defaults(name: str) -> None:
    spec = get_model_spec(name)
    for dev in ("cpu", "cuda"):
        assert spec.recipe("seed", dev).torch_defaults
        assert not spec.recipe("fast", dev).torch_defaults


# ----------------------------------------------------------------------------- 10: GPU recipes
# The CPU-tuned fast recipes as they were tuned (docs/perf.md): (batch, lr, epochs, precision)
CPU_FAST = {"fc": (32, 0.03, 0.2495, "fp32"), "cnn": (32, 0.03, 0.2495, "bf16"),
            "lenet": (128, 0.08, 2.75, "bf16"), "vgg11": (64, 0.07, 2.4, "bf16"),
            "vgg16": (64, 0.07, 3.25, "bf16")}


@pytest.mark.parametrize("name", COURSE_MODELS)
def test_cuda_fast_recipes_compile_in_bf16(name: str) -> None:
    spec = get_model_spec(name)
    gpu, cpu = spec.recipe("fast", "cuda"), spec.recipe("fast", "cpu")
    assert gpu.name == "fast" and gpu.compile != "none" and gpu.precision == "bf16"
    assert gpu.loader == "device" and gpu.channels_last == (name != "fc")
    assert gpu.compile == ("default" if name.startswith("vgg") else "reduce-overhead")
    # the CPU recipe's batch: the one shown to reach the target (no larger one was, docs/perf.md)
    assert gpu.batch_size == cpu.batch_size and gpu.stop_at_target
    assert cpu.compile == "none" and cpu == spec.recipes["fast"]
    assert (cpu.batch_size, cpu.lr, cpu.epochs, cpu.precision) == CPU_FAST[name]


# ----------------------------------------------------------------------------- 6: two MFUs
@pytest.mark.parametrize("gpu, entry", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"),
    ("NVIDIA GH200 480GB", "GH200"), ("NVIDIA A100-SXM4-80GB", "A100 SXM"),
    ("NVIDIA A100-SXM4-40GB", "A100 SXM"), ("NVIDIA A100 80GB PCIe", "A100 PCIe"),
    ("NVIDIA A100-PCIE-40GB", "A100 PCIe"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", "L40"), ("NVIDIA A10", "A10"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 4090 D", None), ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
    ("NVIDIA H100", None), ("NVIDIA A10G", None), ("Tesla V100-SXM2-16GB", None), (None, None),
])
def test_vendor_table_matches_gpu_names(gpu: str | None, entry: str | None) -> None:
    found = match_gpu(gpu)
    assert (found.name if found else None) == entry


def test_vendor_peaks_are_the_dense_datasheet_figures() -> None:
    assert [vendor_peak_tflops("NVIDIA H100 80GB HBM3", p) for p in ("fp32", "tf32", "bf16")] \
        == [67.0, 494.5, 989.5]
    assert vendor_peak_tflops("NVIDIA H200", "bf16") == vendor_peak_tflops("NVIDIA H100 SXM5",
                                                                          "bf16")
    assert [vendor_peak_tflops("NVIDIA A100-SXM4-80GB", p) for p in ("fp32", "tf32", "bf16")] \
        == [19.5, 156.0, 312.0]
    assert vendor_peak_tflops("NVIDIA L4", "bf16") == 121.0
    assert vendor_peak_tflops("NVIDIA L40S", "bf16") == 362.05
    assert vendor_peak_tflops("NVIDIA GeForce RTX 4090", "bf16") == 165.2
    for e in VENDOR_PEAKS:  # every entry: all four precisions, ordered as the hardware is
        t = e.tflops
        assert set(t) == {"fp32", "tf32", "bf16", "fp16"}
        assert 0 < t["fp32"] <= t["tf32"] < t["bf16"] == t["fp16"], e.name


def test_summary_gives_both_mfus_each_named(tiny_data, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(devmod, "gpu_name", lambda device: "NVIDIA H100 80GB HBM3")
    s = summary._vendor_mfu({"achieved_tflops": 98.95}, torch.device("cuda"), "bf16")
    assert s["vendor_gpu"] == "H100 SXM" and s["vendor_peak_tflops"] == 989.5
    assert s["mfu_vendor"] == pytest.approx(0.1)
    assert s["mfu_basis"] == "measured peak (bench peak)"
    monkeypatch.setattr(devmod, "gpu_name", lambda device: "NVIDIA Quadro K2200")
    s = summary._vendor_mfu({"achieved_tflops": 1.0}, torch.device("cuda"), "bf16")
    assert s["vendor_peak_tflops"] is None and s["mfu_vendor"] is None


def test_fp32_with_tf32_on_is_measured_against_the_peak_of_each_kind() -> None:
    """The seed recipes keep cuDNN's TF32 on (PyTorch's default) and cuBLAS's off: their
    convolutions run on tensor cores, their matmuls in true fp32. Each kind of FLOP is divided
    by the peak of the math it runs on (issue 25.9a)."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    seed = {"tf32_matmul": False, "tf32_cudnn": True}
    assert engine.peak_precision("fp32", cuda, seed) == "tf32 conv + fp32 matmul"
    # fc has no convolutions: its seed run is pure fp32 matmuls, not the TF32 peak
    assert engine.peak_precision("fp32", cuda, seed, {"conv": 0.0, "matmul": 5e4}) == "fp32"
    assert engine.peak_precision("fp32", cuda, seed, {"conv": 7e5, "matmul": 3e4}) \
        == "tf32 conv + fp32 matmul"
    assert engine.peak_precision("fp32", cuda, {"tf32_matmul": False, "tf32_cudnn": False}) \
        == "fp32"
    assert engine.peak_precision("fp32", cuda, {"tf32_matmul": True, "tf32_cudnn": True}) \
        == "tf32"
    assert engine.peak_precision("fp32", cpu, seed) == "fp32"
    assert engine.peak_precision("bf16", cuda, seed) == "bf16"


def test_without_a_driver_auto_picks_the_cpu_and_names_its_mfu(tiny_data, tmp_path, bench_cli,
                                                               monkeypatch) -> None:
    """No nvidia-smi, no /proc file (tests/conftest.py): auto is the CPU, as before."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devmod.resolve_device("auto") == torch.device("cpu")
    code, _ = bench_cli("run", "--model", "fc", "--device", "auto", "--max-steps", "2",
                        "--data-dir", tiny_data[0], "--out", tmp_path / "out", "--quiet")
    (path,) = (tmp_path / "out").glob("*.json")
    doc = json.loads(path.read_text())
    assert code == 0 and doc["config"]["device"] == "cpu"
    s = doc["summary"]
    assert s["mfu_basis"] == "measured peak (bench peak)" and "mfu" in s
    assert s["vendor_peak_tflops"] is None and s["mfu_vendor"] is None and s["vendor_gpu"] is None
    assert s["peak_precision"] == "fp32"  # the seed recipe on a CPU: no TF32 there
    assert s["images_per_s_source"]  # where images/s came from, named (issue 25.8)
