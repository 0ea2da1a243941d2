"""`bench peak`: the measured ceiling of this device, the denominator of every MFU figure.

Dense FLOP/s is probed two ways, torch.matmul (MKL/cuBLAS) and a 1x1 convolution in
channels-last (oneDNN/cuDNN), and the larger is kept: on the Zen 5 CPU here oneDNN reaches
about 2.5x more fp32 than MKL's matmul. Copy bandwidth counts bytes read + bytes written.
The best of several repeats is kept (a busy neighbour only ever slows a probe down), and
the figures are cached per machine fingerprint so runs can quote them without re-measuring.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.defaults import CACHE_HINT, cache_dir
from bench.defaults import precision as precision_spec
from bench.errors import BenchError
from bench.fsutil import os_reason, warn, writable_dir
from bench.host.device import resolve_device, synchronize
from bench.host.envinfo import fingerprint
from bench.measure.engine import set_tf32, tf32_flags
from bench.results import atomic_write_text
from bench.spec.runspec import add_run_flags


def _best_seconds(fn, device: torch.device, repeats: int, inner: int) -> float:
    fn()  # warm-up: library init, kernel selection
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def matmul_flops(device: torch.device, precision: str, n: int, repeats: int) -> float:
    a = torch.randn(n, n, device=device).to(precision_spec(precision).input_dtype)
    b = torch.randn(n, n, device=device).to(precision_spec(precision).input_dtype)
    sec = _best_seconds(lambda: torch.matmul(a, b), device, repeats, 3)
    return 2 * n ** 3 / sec


def conv1x1_flops(device: torch.device, precision: str, batch: int, ch: int, hw: int,
                  repeats: int) -> float:
    dt = precision_spec(precision).input_dtype
    x = torch.randn(batch, ch, hw, hw, device=device).to(dt).contiguous(
        memory_format=torch.channels_last)
    w = torch.randn(ch, ch, 1, 1, device=device).to(dt).contiguous(
        memory_format=torch.channels_last)
    sec = _best_seconds(lambda: F.conv2d(x, w), device, repeats, 3)
    return 2 * batch * hw * hw * ch * ch / sec


def copy_bandwidth(device: torch.device, n_bytes: int, repeats: int) -> float:
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    sec = _best_seconds(lambda: dst.copy_(src), device, repeats, 3)
    return 2 * n_bytes / sec


def _key(device: torch.device) -> str:
    env = fingerprint()
    ident = {"device": device.type, "cpu": env.get("cpu_model"), "host": env.get("host"),
             "threads": env.get("torch_threads"), "gpus": env.get("gpus"),
             "torch": env["packages"].get("torch")}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _cache_path(device: torch.device) -> Path:
    return cache_dir() / "peak" / f"{device.type}-{_key(device)}.json"


def measure_peak(device: torch.device, quick: bool = False) -> dict[str, Any]:
    """Measure and cache FLOP/s per precision (best of both probes) and copy GB/s."""
    cuda = device.type == "cuda"
    # No fp16 probe on CPU: without a native fp16 GEMM a 2048^3 product takes minutes there.
    precisions = ["fp32", "tf32", "bf16", "fp16"] if cuda else ["fp32", "bf16"]
    repeats = 3 if quick else 7
    n = 8192 if cuda else 2048
    convs = [(256, 1024, 32), (64, 2048, 16)] if cuda else [(32, 512, 28), (16, 1024, 16)]
    out: dict[str, Any] = {"device": str(device), "flops": {}, "probes": {}}
    # the probes switch TF32 (through the engine's helpers, the one owner of those flags); a
    # run in the same process (a suite) gets back what it had
    tf32_before = tf32_flags()
    try:
        for p in precisions:
            if cuda:
                set_tf32(matmul=p == "tf32", cudnn=p == "tf32")
            mm = matmul_flops(device, p, n, repeats)
            cv = max(conv1x1_flops(device, p, *shape, repeats) for shape in convs)
            out["probes"][p] = {"matmul": mm, "conv1x1": cv}
            out["flops"][p] = max(mm, cv)
    finally:
        set_tf32(*tf32_before)
    out["copy_bytes_per_s"] = copy_bandwidth(device, (1 << 30) if cuda else (256 << 20), repeats)
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out["threads"] = torch.get_num_threads()
    path = _cache_path(device)
    old = load_cached_peak(device)
    if old:  # keep the best ever seen: noise only lowers a ceiling
        for p, v in old.get("flops", {}).items():
            if v > out["flops"].get(p, 0):
                out["flops"][p] = v
        out["copy_bytes_per_s"] = max(out["copy_bytes_per_s"], old.get("copy_bytes_per_s", 0))
    try:
        atomic_write_text(path, json.dumps(out, indent=1))
    except OSError as exc:
        raise BenchError(f"cannot write the peak cache {path} ({os_reason(exc)}); "
                         f"{CACHE_HINT}") from None
    return out


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _peak_problem(doc: Any) -> str | None:
    """Why a parsed cache cannot be the MFU denominator (None: it can). Checked on every read:
    a hand-edited or damaged file must not end a finished run in a TypeError."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, expected an object"
    flops = doc.get("flops")
    if not isinstance(flops, dict) or not flops:
        return "no 'flops' table"
    bad = [k for k, v in flops.items() if not _positive(v)]
    if bad:
        return f"flops[{bad[0]!r}] is {flops[bad[0]]!r}, expected a positive number"
    if not _positive(doc.get("copy_bytes_per_s")):
        return f"copy_bytes_per_s is {doc.get('copy_bytes_per_s')!r}, expected a positive number"
    return None


_WARNED: set[Path] = set()


def load_cached_peak(device: torch.device) -> dict[str, Any] | None:
    """The cached measurement, or None when absent or unusable (said once per file on stderr:
    a corrupt cache is treated as absent, MFU is then unknown, and `bench peak` overwrites it).
    Read through the guarded reader: a FIFO, a link to a device, a huge or deeply nested file
    is one line too, never a hang or a traceback."""
    from bench.results.guarded import MAX_CACHE_BYTES, Refused, load_json

    path = _cache_path(device)
    try:
        doc = load_json(path, "peak cache", MAX_CACHE_BYTES)
        problem = _peak_problem(doc)
    except FileNotFoundError:
        return None
    except Refused as exc:
        problem = exc.reason
    except OSError as exc:
        problem = f"unreadable: {os_reason(exc)}"
    if problem is None:
        return doc
    if path not in _WARNED:
        _WARNED.add(path)
        warn(f"warning: ignoring the peak cache {path} ({problem}); `bench peak` rewrites it")
    return None


def cached_peak_flops(device: torch.device, precision: str) -> float | None:
    """Peak FLOP/s for the run's precision, if `bench peak` has measured this machine."""
    doc = load_cached_peak(device)
    if not doc:
        return None
    flops = doc.get("flops", {})
    if precision == "tf32" and device.type != "cuda":
        precision = "fp32"  # TF32 does not exist on CPU
    return flops.get(precision)


def mfu(flops_per_image: float, images_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the measured peak."""
    return flops_per_image * images_per_s / peak_flops


def format_peak(doc: dict[str, Any]) -> str:
    lines = ["| precision | matmul GFLOP/s | 1x1 conv GFLOP/s | peak GFLOP/s |",
             "|---|---|---|---|"]
    for p, v in doc["flops"].items():
        pr = doc["probes"].get(p, {})
        lines.append(f"| {p} | {pr.get('matmul', 0) / 1e9:,.0f} | {pr.get('conv1x1', 0) / 1e9:,.0f}"
                     f" | {v / 1e9:,.0f} |")
    lines.append(f"\ncopy: {doc['copy_bytes_per_s'] / 1e9:,.1f} GB/s (read + write), "
                 f"{doc['threads']} threads")
    return "\n".join(lines)


def cmd_peak(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    # before the minutes of measuring: a cache that cannot be written would lose them
    writable_dir(_cache_path(device).parent, "peak cache folder", CACHE_HINT)
    doc = measure_peak(device, quick=args.quick)
    print(format_peak(doc))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("peak", help="measure this device's FLOP/s and copy GB/s (cached)")
    add_run_flags(p, include=("device",))
    p.add_argument("--quick", action="store_true", help="fewer repeats per probe")
    p.set_defaults(func=cmd_peak)
