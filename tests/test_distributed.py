"""Data-parallel runs through torchrun on CPU (gloo): sharding, parameter sync, one result,
and a failing rank that ends the job with an error result instead of a hang."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.data.loaders import LoaderConfig, make_loader
from bench.errors import BenchError
from bench.measure.distributed import _merge, _peer_loss, torchrun_command, wrap_ddp
from bench.measure.runner import RunConfig, run
from bench.results import Result, read_result
from bench.spec.datasets import load_dataset

ROOT = Path(__file__).resolve().parent.parent
PROBE = "tests.dist_probe:spec"  # fc with the faults and shard records these tests need
RUN_FLAGS = ["--model", PROBE, "--dataset", "mnist", "--device", "cpu", "--max-steps", "8",
             "--batch-size", "32", "--loader", "device", "--quiet"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIST_PROBE")}
    env.update(OMP_NUM_THREADS="1", BENCH_DIST_TIMEOUT="30", PYTHONPATH=str(ROOT), **extra)
    return env


def _hashes(loader) -> list[str]:
    return [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest()
            for x, _ in loader for r in x.reshape(len(x), -1).float().numpy()]


@pytest.mark.parametrize("name", ["device", "torch"])
def test_loader_shards_are_disjoint_and_cover_the_data(tiny_data, name: str) -> None:
    data = load_dataset("mnist", str(tiny_data[0]), seed=0)
    seen = []
    for rank in (0, 1):
        ld = make_loader(name, data, LoaderConfig(
            split="train", batch_size=16, device=torch.device("cpu"), shuffle=True,
            drop_last=True, seed=3, rank=rank, world_size=2))
        ld.set_epoch(1)
        seen.append(_hashes(ld))
    n = len(data.train_y)
    assert len(seen[0]) == len(seen[1]) == n // 2
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == n


def test_ddp_keeps_the_optimizer_parameters(tmp_path: Path) -> None:
    """The optimiser is built on the unwrapped model: DDP must train those very tensors."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)
    try:
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ddp = wrap_ddp(model, torch.device("cpu"))
        assert all(a is b for a, b in zip(ddp.parameters(), model.parameters(), strict=True))
        before = model.weight.detach().clone()
        ddp(torch.randn(8, 4)).sum().backward()
        opt.step()
        assert not torch.equal(before, model.weight)
    finally:
        dist.destroy_process_group()


def test_torchrun_command_drops_nproc() -> None:
    cmd = torchrun_command(["run", "--model", "fc", "--nproc", "2", "--nproc=3", "--quiet"], 4)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4" and "--standalone" in cmd
    assert cmd[-5:] == ["bench", "run", "--model", "fc", "--quiet"]


def test_merge_names_the_root_cause() -> None:
    res = Result(config={"device": "cpu"}, env={}, summary={"images_per_s": 10.0})
    victim = {"rank": 0, "status": "error", "message": "LauncherStop: stopped", "fail_seq": 1,
              "windows": []}
    root = {"rank": 2, "status": "oom", "message": "out of memory", "fail_seq": 2,
            "windows": []}
    _merge(res, {0: victim, 2: root}, [1], 3, "/nonexistent", 5.0)
    assert res.status == "oom" and res.message.startswith("rank 2 failed: out of memory")
    assert "(1 had not reported within 5s)" in res.message and _peer_loss(victim["message"])
    res = Result(config={"device": "cpu"}, env={}, summary={})
    _merge(res, {0: victim}, [1], 2, "/nonexistent", 5.0)
    assert res.status == "error" and res.message.startswith("rank 1 did not report within 5s")


def test_two_process_run(tiny_data, tmp_path: Path, monkeypatch) -> None:
    """`bench run --nproc 2`: disjoint shards covering the data, parameters in sync, one result
    with the job's throughput and the scaling efficiency against a single-process run."""
    out, shards = tmp_path / "out", tmp_path / "shards"
    shards.mkdir()
    monkeypatch.chdir(ROOT)  # the probe model is imported from the checkout
    single, _ = run(RunConfig(model=PROBE, dataset="mnist", device="cpu", max_steps=8,
                              batch_size=32, loader="device", data_dir=str(tiny_data[0]),
                              out=str(out), quiet=True))
    assert single.status == "ok"
    for k, v in _env(DIST_PROBE_SHARDS=str(shards)).items():
        monkeypatch.setenv(k, v)
    code = main(["run", "--nproc", "2", *RUN_FLAGS, "--data-dir", str(tiny_data[0]),
                 "--out", str(out)])
    assert code == 0
    docs = [read_result(p) for p in out.iterdir()]
    (doc,) = [d for d in docs if d["config"]["world_size"] == 2]
    assert len(docs) == 2 and doc["status"] == "ok"
    s, d = doc["summary"], doc["summary"]["distributed"]
    assert doc["config"]["per_rank_batch_size"] == 16 and s["steps"] == 8
    assert d["params_in_sync"] is True and d["ranks_reported"] == 2
    assert [r["rank"] for r in d["per_rank"]] == [0, 1]
    assert d["per_rank_images_per_s_min"] <= d["per_rank_images_per_s_max"]
    assert s["images_per_s"] > d["per_rank_images_per_s_min"]
    assert s["scaling_efficiency"] == pytest.approx(
        s["images_per_s"] / (2 * single.summary["images_per_s"]))
    assert 0 <= s["final_test_acc"] <= 1 and doc["evals"][-1]["step"] == 8
    r0, r1 = ((shards / f"rank{r}.txt").read_text().split() for r in (0, 1))
    n = len(tiny_data[1]["train_y"])
    assert len(set(r0)) == len(set(r1)) == n // 2  # 8 steps x 16 = each rank's whole shard
    assert not set(r0) & set(r1) and len(set(r0) | set(r1)) == n


@pytest.mark.parametrize("kind", ["raise", "exit"])
def test_failing_rank_ends_the_job_with_an_error_result(tiny_data, tmp_path: Path,
                                                        kind: str) -> None:
    """A rank that raises (or dies outright) at step 2: non-zero exit soon, and rank 0 writes
    one result with status error naming that rank. `exit` goes through plain torchrun."""
    out = tmp_path / "out"
    args = ["run", *RUN_FLAGS, "--data-dir", str(tiny_data[0]), "--out", str(out)]
    cmd = ([sys.executable, "-m", "bench", *args[:1], "--nproc", "2", *args[1:]]
           if kind == "raise" else torchrun_command(args, 2))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_env(DIST_PROBE_FAULT_RANK="1", DIST_PROBE_FAULT_STEP="2",
                                   DIST_PROBE_FAULT_KIND=kind))
    assert proc.returncode != 0 and time.monotonic() - t0 < 100, proc.stderr[-3000:]
    (doc,) = [read_result(p) for p in out.iterdir()]
    assert doc["status"] == "error" and doc["config"]["world_size"] == 2
    if kind == "raise":
        assert proc.returncode == 1
        assert doc["message"].startswith("rank 1 failed: RuntimeError: injected fault on rank "
                                         "1 at step 2")
    else:
        assert doc["message"].startswith("rank 1 did not report within"), doc["message"]


def test_a_batch_that_does_not_divide_among_the_ranks_is_refused(capsys) -> None:
    """A remainder would be dropped silently (fewer images than the result says): one line,
    exit 2, before torchrun starts anything."""
    from bench.spec.recipes import BatchSize

    assert BatchSize(64, 4).per_rank == 16 and BatchSize(64, 4).total == 64
    with pytest.raises(BenchError, match="does not divide among 3 processes"):
        BatchSize(32, 3)
    with pytest.raises(BenchError, match="smaller than the world size"):
        BatchSize(2, 4)
    assert main(["run", "--nproc", "3", *RUN_FLAGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "32 does not divide among 3 processes (2 left over)" in err[0]
