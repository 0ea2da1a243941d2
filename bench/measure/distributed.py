"""Data-parallel runs: torchrun start-up, DDP wrapping, and one result per job from rank 0.

`bench run --nproc N` re-launches itself through torch.distributed.run (torchrun), the standard
elastic launcher, so single- and multi-node runs take the same path; `torchrun ... -m bench run`
works as well. Each process joins the process group in `DistContext.join` (NCCL on CUDA, gloo on
CPU) with a finite timeout, so a dead rank cannot block the others forever.

End of a run (`finish`): every rank publishes a small JSON report (status, timings, parameter
checksum) in the rendezvous key-value store, and rank 0 waits for all reports with a timeout,
merges them and writes the only result. The store, not a collective, carries the reports:
after a rank fails the collectives are unusable (a gloo peer is gone, an NCCL op would wait for
a partner that never comes), while the store (hosted by the torchrun agent) still answers.

Failure: a rank that fails publishes its report (numbered, so the first failure is the root
cause rank 0 names) and exits at once (rank 0 first writes the result). Its exit is what frees
the others: gloo peers blocked in a collective with it see the connection close (neither
destroying nor aborting a gloo group that DDP still references does that), and torchrun sends
SIGTERM to the survivors. A survivor inside the training loop turns that SIGTERM into an error
the runner records; rank 0 then has torchrun's 30 s grace before SIGKILL to collect reports and
write the result, and names any rank that never reported. On NCCL a survivor blocked in a
collective may instead be ended by NCCL's watchdog at the timeout (not tested here: one GPU).

Throughput: per timed window, the job's images/s is the images of all ranks over the slowest
rank's window time (wall-clock throughput of the job); `summary.images_per_s` is the median of
that over the steady windows, the same statistic a single-process run reports.

The tests' faults and shard records live in their own model (tests/dist_probe.py), not here.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from bench.defaults import EXIT_CODES
from bench.errors import BenchError, debug_trace

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
DEFAULT_TIMEOUT_S = 300.0
# How long rank 0 still waits for missing reports once torchrun has asked it to stop (SIGTERM):
# the agent sends SIGKILL 30 s after SIGTERM, and the result must be written before that.
TERMINATING_WAIT_S = 5.0
# How long a failed rank 0 waits for the others' reports: the ranks still blocked in a
# collective with it only fail once rank 0 exits, so waiting longer cannot bring them.
FAILED_WAIT_S = 5.0
POLL_S = 0.05



class LauncherStop(Exception):
    """torchrun stopped this rank (SIGTERM), nearly always because another rank exited."""


def timeout_s() -> float:
    """Seconds a collective (and rank 0's wait for reports) may take: $BENCH_DIST_TIMEOUT."""
    raw = os.environ.get("BENCH_DIST_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise BenchError(f"BENCH_DIST_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise BenchError(f"BENCH_DIST_TIMEOUT must be positive, got {raw}")
    return value


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or with its environment set by hand)."""
    return all(k in os.environ for k in TORCHRUN_ENV)


# ----------------------------------------------------------------------------- start-up
@dataclass
class DistContext:
    """This process's place in a torchrun job, and what the end of a run needs to know.

    Made once per process by `join` and passed to every run (the runner, the step hooks,
    `finish`); repeated runs in one process share the process group and count themselves in
    `runs`, which namespaces their keys in the store.
    """

    rank: int
    world: int
    device: torch.device  # this rank's device (cuda:LOCAL_RANK on GPUs)
    backend: str
    store: Any  # the rendezvous store, kept past destroy_process_group
    runs: int = 0  # runs finished in this process
    phase: str = "train"  # "train" until finish() starts, then "finish"; "done" after a failure
    terminating: bool = False  # SIGTERM seen
    stop_raised: bool = False  # LauncherStop raised once already
    in_training_loop: bool = False  # inside `training_loop()`: raising on SIGTERM is safe

    @classmethod
    def join(cls, device: torch.device) -> DistContext:
        """Join the process group described by torchrun's environment.

        On CUDA each local rank owns cuda:LOCAL_RANK (whatever index --device named), because
        NCCL needs one GPU per rank. Idempotent: a second join reuses the group.
        """
        import torch.distributed as dist

        if not launched_by_torchrun():
            raise BenchError("not started by torchrun (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR "
                             "unset): use --nproc N")
        if not dist.is_available():
            raise BenchError("this torch build has no torch.distributed; cannot run under "
                             "torchrun")
        device = _rank_device(device, int(os.environ["LOCAL_RANK"]))
        fresh = not dist.is_initialized()
        if fresh:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=_dt.timedelta(seconds=timeout_s()))
            atexit.register(_destroy)
        ctx = cls(rank=dist.get_rank(), world=dist.get_world_size(), device=device,
                  backend=dist.get_backend(), store=dist.distributed_c10d._get_default_store())
        if fresh:
            signal.signal(signal.SIGTERM, ctx.on_sigterm)
        return ctx

    @contextlib.contextmanager
    def training_loop(self) -> Iterator[None]:
        """Mark the span in which a SIGTERM may be raised as LauncherStop (see on_sigterm)."""
        self.in_training_loop = True
        try:
            yield
        finally:
            self.in_training_loop = False

    def on_sigterm(self, signum: int, frame: Any) -> None:
        """torchrun sends SIGTERM to the survivors when a rank exits (or when it is stopped).

        Inside the training loop, raise once: the runner records the error and rank 0 still
        writes the result. Anywhere else (the runner's own error handling, finishing) raising
        could lose the result, so only note it: rank 0 then shortens its wait for reports so
        the result is written before torchrun's SIGKILL. After a failed run's finish, die as
        asked.
        """
        self.terminating = True
        if self.phase == "done":
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if self.phase == "train" and self.in_training_loop and not self.stop_raised:
            self.stop_raised = True
            raise LauncherStop("stopped by the launcher (SIGTERM), usually because another "
                               "rank exited")


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise BenchError(f"LOCAL_RANK {local_rank} but only {n} CUDA device(s) are visible: "
                         "use --nproc_per_node <= the GPUs per node")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def _destroy() -> None:
    """Leave the process group at exit (registered by DistContext.join)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # exiting anyway; a broken group must not hide the real outcome
            debug_trace("destroying the process group")


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the (possibly compiled) model.

    DDP keeps the module's own parameter tensors (it broadcasts rank 0's values into them in
    place), so an optimiser built on the unwrapped model steps the parameters DDP synchronises.
    Compiling before wrapping means the gradient all-reduce starts after the compiled backward
    rather than overlapping it; torch.compile(DDP(model)) would overlap but is not what the
    runner does.

    Going back to training mode after an evaluation waits for all ranks (a barrier): every
    rank evaluates the full test set, and without it the faster rank would spend the slower
    one's remaining evaluation inside its next timed window, at the first all-reduce. The wait
    is thus counted as evaluation time, which is off the training clock, as in a 1-process run.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    class _DDP(DDP):
        def train(self, mode: bool = True) -> _DDP:
            resuming = mode and not self.training
            super().train(mode)
            if resuming and dist.is_initialized():
                dist.barrier()
            return self

    if device.type == "cuda":
        return _DDP(model, device_ids=[device.index], output_device=device.index)
    return _DDP(model)


# ----------------------------------------------------------------------------- evaluation
def rank0_evaluate(model: nn.Module, loader: Any, device: torch.device, precision: str,
                   ctx: DistContext) -> Callable[[], tuple[float, float]]:
    """Evaluation for the engine: every rank evaluates the full test set, then all take rank 0's
    (loss, accuracy). Stop-at-target then stops every rank at the same step even where the
    ranks' figures could differ in the last bit (other GPUs or hosts); a rank that stopped
    alone would leave the others blocked in their next all-reduce."""
    import torch.distributed as dist

    from bench.measure.engine import evaluate

    on = device if ctx.backend == "nccl" else torch.device("cpu")

    def fn() -> tuple[float, float]:
        loss, acc = evaluate(model, loader, device, precision)
        t = torch.tensor([loss, acc], dtype=torch.float64, device=on)
        dist.broadcast(t, src=0)
        return float(t[0]), float(t[1])

    return fn


# ----------------------------------------------------------------------------- finishing
def params_checksum(model: nn.Module) -> str:
    """Hash of every parameter's bytes: equal on all ranks iff DDP kept them in sync."""
    h = hashlib.sha256()
    with torch.no_grad():
        for p in model.parameters():
            h.update(p.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy()
                     .tobytes())
    return h.hexdigest()[:16]


def _local_report(result: Any, model: nn.Module, rank: int) -> dict[str, Any]:
    s = result.summary
    try:
        checksum: str | None = params_checksum(model)
    except Exception:  # a broken device (after an error) must not stop the report
        debug_trace("the parameters' checksum")
        checksum = None
    return {
        "rank": rank, "host": os.uname().nodename, "status": result.status,
        "message": result.message, "images_per_s": s.get("images_per_s"),
        "total_train_time_s": s.get("total_train_time_s"), "steps": s.get("steps"),
        "windows": [[w["images"], w["seconds"], w["warmup"], w["steps"]] for w in result.windows],
        "params_checksum": checksum,
    }


def _wait_for(ctx: DistContext, keys: list[str], timeout: float) -> list[str]:
    """Poll the store until all keys exist or the timeout passes; return the missing keys.

    Polling (not store.wait) keeps the main thread in Python so SIGTERM is handled promptly.
    """
    deadline = time.monotonic() + timeout
    missing = list(keys)
    while True:
        missing = [k for k in missing if not ctx.store.check([k])]
        if not missing:
            return []
        if ctx.terminating:
            deadline = min(deadline, time.monotonic() + TERMINATING_WAIT_S)
        if time.monotonic() >= deadline:
            return missing
        time.sleep(POLL_S)


def _job_windows(reports: list[dict[str, Any]]) -> list[tuple[int, float, bool, int]] | None:
    """Per window: (images of all ranks, the slowest rank's seconds, warm-up, steps); None if
    the ranks' windows do not line up (they do whenever every rank ran the same steps)."""
    per_rank = [r["windows"] for r in reports]
    if not per_rank or any(len(w) != len(per_rank[0]) for w in per_rank):
        return None
    return [(sum(w[0] for w in ws), max(w[1] for w in ws), ws[0][2],
             ws[0][3] if len(ws[0]) > 3 else 1) for ws in zip(*per_rank, strict=True)]


def _single_process_baseline(result: Any, out_dir: str) -> dict[str, Any] | None:
    """Latest ok single-process result in out_dir with the same CONFIG_KEYS and device type."""
    from bench.results import CONFIG_KEYS, expand_paths, read_result

    cfg = result.config
    best: dict[str, Any] | None = None
    try:
        paths = expand_paths([out_dir]) if Path(out_dir).is_dir() else []
    except BenchError:
        return None
    for p in paths:
        try:
            doc = read_result(p)
        except BenchError:
            continue
        c = doc.get("config") or {}
        ips = (doc.get("summary") or {}).get("images_per_s")
        if (doc.get("status") != "ok" or not ips or c.get("world_size", 1) not in (1, None)
                or any(c.get(k) != cfg.get(k) for k in CONFIG_KEYS if k != "world_size")
                or str(c.get("device", "")).split(":")[0] != str(cfg["device"]).split(":")[0]
                or (doc.get("env") or {}).get("host") != (result.env or {}).get("host")):
            continue
        if best is None or doc.get("created", "") > best.get("created", ""):
            best = doc
    return best


PEER_LOSS_SIGNS = ("LauncherStop", "Connection closed by peer", "Connection reset by peer",
                   "Broken pipe", "Timed out waiting", "DistBackendError", "NCCL communicator")


def _peer_loss(message: str | None) -> bool:
    """True for the errors a rank gets when another rank failed (not a failure of its own)."""
    return any(sign in (message or "") for sign in PEER_LOSS_SIGNS)


def _short(message: str | None, n: int = 160) -> str:
    m = message or ""
    return m if len(m) <= n else m[:n] + "..."


def _merge(result: Any, reports: dict[int, dict[str, Any]], missing: list[int], world: int,
           out_dir: str, waited_s: float, backend: str | None = None) -> None:
    """Rank 0: turn its own result into the job's result (status, throughput, spread)."""
    import statistics

    from bench.measure.engine import Window, steady_state

    s = result.summary
    ranked = [reports[r] for r in sorted(reports)]
    # Root cause: a rank's own failure before one that merely saw a peer go, then the first
    # failure published.
    failed = sorted((r for r in ranked if r["status"] != "ok"),
                    key=lambda r: (_peer_loss(r["message"]), r.get("fail_seq") or 0, r["rank"]))
    if missing and (not failed or _peer_loss(failed[0]["message"])):
        who = f"rank {missing[0]}" if len(missing) == 1 else f"ranks {missing}"
        result.status = "error"
        result.message = f"{who} did not report within {waited_s:.0f}s (it exited or hung)"
        if failed:
            result.message += "; then " + "; ".join(
                f"rank {r['rank']}: {_short(r['message'])}" for r in failed)
    elif failed:
        root = failed[0]
        result.status = root["status"]
        verb = ":" if root["status"] == "interrupted" else " failed:"
        result.message = f"rank {root['rank']}{verb} {root['message']}"
        others = [str(r["rank"]) for r in failed[1:]]
        if others:
            result.message += f" (then rank{'s' * (len(others) > 1)} {', '.join(others)} " \
                              "stopped too)"
        if missing:
            result.message += f" ({', '.join(map(str, missing))} had not reported within " \
                              f"{waited_s:.0f}s)"
    rates = [r["images_per_s"] for r in ranked if r.get("images_per_s")]
    checks = {r.get("params_checksum") for r in ranked}
    dist_info: dict[str, Any] = {
        "world_size": world, "backend": backend, "ranks_reported": len(ranked),
        "images_per_s_method": "median over steady windows of (images of all ranks / slowest "
                               "rank's window seconds)",
        "per_rank": [{k: r.get(k) for k in ("rank", "host", "status", "images_per_s",
                                            "total_train_time_s", "steps")} for r in ranked],
        "per_rank_images_per_s_min": min(rates) if rates else None,
        "per_rank_images_per_s_max": max(rates) if rates else None,
        "images_per_s_sum_of_ranks": sum(rates) if len(rates) == world else None,
        "params_in_sync": (len(checks) == 1 and None not in checks
                           if len(ranked) == world else None),
        "params_checksum": next(iter(checks)) if len(checks) == 1 else None,
        "windows_and_epochs": "rank 0's (per-rank images)",
    }
    job = _job_windows(ranked) if len(ranked) == world else None
    per_rank_rate = s.get("images_per_s")
    if job:  # the job's images_per_s and its min/max/q1/q3, as steady_state defines them
        s.update(steady_state([Window(0, steps, images, seconds, warm)
                               for images, seconds, warm, steps in job]))
    elif rates and len(rates) == world:
        s["images_per_s"] = sum(rates)
        dist_info["images_per_s_method"] = "sum over ranks of each rank's steady images/s"
    else:
        s["images_per_s"] = None
    times = [r["total_train_time_s"] for r in ranked if r.get("total_train_time_s")]
    dist_info["total_train_time_s_max"] = max(times) if times else None
    dist_info["total_train_time_s_spread"] = (max(times) - min(times)) if times else None
    if s.get("achieved_tflops") and per_rank_rate and s.get("images_per_s"):
        s["achieved_tflops"] *= s["images_per_s"] / per_rank_rate
        _job_mfus(s, world)
    base = _single_process_baseline(result, out_dir)
    s["scaling_efficiency"] = None
    if base is not None and s.get("images_per_s"):
        single = base["summary"]["images_per_s"]
        s["scaling_efficiency"] = s["images_per_s"] / (world * single)
        dist_info["single_process_images_per_s"] = single
        dist_info["single_process_result"] = base.get("_path")
    if rates:
        dist_info["per_rank_images_per_s_median"] = statistics.median(rates)
    s["distributed"] = dist_info


def _job_mfus(s: dict[str, Any], world: int) -> None:
    """The job's MFUs: its FLOP/s over `world` times one GPU's peak, measured and vendor's."""
    from bench.results.format import checked_mfus

    for mfu, peak in (("mfu", "peak_tflops"), ("mfu_vendor", "vendor_peak_tflops")):
        if s.get(peak):
            s[mfu] = s["achieved_tflops"] / (world * s[peak])
    s.update(checked_mfus(s))  # a figure above 100% becomes a note, as in one process


def _rank0_finish(ctx: DistContext, result: Any, prefix: str, failed: bool, out_dir: str,
                  write: bool) -> Path | None:
    """Rank 0: wait for every report (briefly when it failed itself), merge, write, tell."""
    from bench.results import write_result

    keys = [prefix + f"report/{r}" for r in range(ctx.world)]
    timeout = timeout_s()
    t0 = time.monotonic()
    missing_keys = _wait_for(ctx, keys, min(timeout, FAILED_WAIT_S) if failed else timeout)
    waited = time.monotonic() - t0
    reports = {r: json.loads(ctx.store.get(k)) for r, k in enumerate(keys)
               if k not in missing_keys}
    missing = [r for r, k in enumerate(keys) if k in missing_keys]
    _merge(result, reports, missing, ctx.world, out_dir, waited, ctx.backend)
    path = write_result(result, out_dir) if write else None
    verdict = {"status": result.status, "message": result.message}
    ctx.store.set(prefix + "verdict", json.dumps(verdict))
    status_file = os.environ.get("BENCH_LAUNCH_STATUS")
    if status_file:
        Path(status_file).write_text(result.status)
    return path


def finish(ctx: DistContext, result: Any, model: nn.Module, out_dir: str,
           write: bool) -> Path | None:
    """Exchange reports, write the job's one result on rank 0; return its path there.

    A rank that failed returns at once with its own status (its exit frees the peers); a rank
    that did not waits for rank 0's verdict and takes the job's status, so it exits with the
    same code as rank 0.
    """
    ctx.phase = "finish"
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    prefix = f"bench/{attempt}/{ctx.runs}/"
    ctx.runs += 1
    report = _local_report(result, model, ctx.rank)
    failed = report["status"] != "ok"
    if failed:
        report["fail_seq"] = ctx.store.add(prefix + "fail_seq", 1)
    ctx.store.set(prefix + f"report/{ctx.rank}", json.dumps(report))
    path = None
    if ctx.rank == 0:
        path = _rank0_finish(ctx, result, prefix, failed, out_dir, write)
    elif failed:  # exit now: that frees the peers blocked in a collective with this rank
        print(f"bench: rank {ctx.rank}: {report['status']}: {report['message']}",
              file=sys.stderr, flush=True)
    elif not _wait_for(ctx, [prefix + "verdict"], timeout_s() + 30):
        # adopt the job's status, so that every rank exits with the same code
        verdict = json.loads(ctx.store.get(prefix + "verdict"))
        result.status, result.message = verdict["status"], verdict["message"]
    ctx.phase = "done" if result.status != "ok" else "train"
    return path


# ----------------------------------------------------------------------------- launching
def _strip_nproc(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def torchrun_command(argv: Sequence[str], nproc: int) -> list[str]:
    """The torchrun command for `bench <argv>` on this node with nproc workers."""
    args = _strip_nproc(argv)
    if not args or args[0] != "run":
        args = ["run", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc), "-m", "bench", *args]


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run `bench run` in nproc processes on this node through torchrun; return an exit code.

    torchrun runs in its own session so that Ctrl-C reaches it exactly once (forwarded from
    here); it then stops the workers, and rank 0 records the interruption. The exit code is the
    bench exit code of the job's status (torchrun itself only says 0 or 1).
    """
    if nproc < 1:
        raise BenchError(f"--nproc must be positive, got {nproc}")
    fd, status_file = tempfile.mkstemp(prefix="bench-launch-", suffix=".status")
    os.close(fd)
    env = {**os.environ, "BENCH_LAUNCH_STATUS": status_file}
    proc = subprocess.Popen(torchrun_command(argv, nproc), env=env, start_new_session=True)

    def forward(signum: int, frame: Any) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward)
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        status = Path(status_file).read_text().strip()
        os.unlink(status_file)
    if status in EXIT_CODES:
        return EXIT_CODES[status]
    if rc < 0:  # killed by a signal
        return 128 + -rc
    return rc
