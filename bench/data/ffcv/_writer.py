"""An ffcv `DatasetWriter` that cannot hang its caller.

ffcv 1.0.2's `_write_common` waits for a shared progress counter to reach the sample count; if
a worker process raises (disk full, a bad sample) the counter never gets there and the writer
spins forever, and even when the caller gives up, the work queue's feeder thread (blocked on
a full pipe that no worker reads any more) makes the interpreter hang at exit. This copy of
that method (same steps, same file layout) adds:

- a watchdog: the workers' exit codes and the counter's progress are watched; a dead worker
  (its error reported through shared memory, in one line) or no progress for `stall_s`
  seconds becomes a BenchError;
- children that are detached (`_proc.detach_child`: own process group, killed with the
  parent, no inherited lock) and always stopped (terminate, then kill) on the way out;
- queues whose feeder threads are never joined at exit (`cancel_join_thread`), shared
  memory always unlinked.

Imported only after `require_ffcv()` succeeded. Tied to ffcv==1.0.2 (pinned).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import time
from collections.abc import Callable
from multiprocessing import Array, Process, Queue, Value
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from ffcv.memory_allocator import MemoryAllocator
from ffcv.writer import DatasetWriter
from tqdm import tqdm

from bench.data.ffcv._proc import detach_child, shielded
from bench.errors import BenchError

STALL_S = 300.0  # no progress for this long with live workers: give up (a chunk takes < 1 s)
_ERR_BYTES = 400  # a worker's error message, one line
_STOP_S = 5.0  # grace for a terminated worker before SIGKILL


def _child_main(work_fn: Callable[..., None], parent_pid: int, err: Any, *args: Any) -> None:
    """A writer process: detach, work, and on failure report one line (no traceback on the
    user's terminal) and exit at once (nothing of a failed write is worth flushing)."""
    detach_child(parent_pid)
    try:
        work_fn(*args)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        err.value = msg.encode("utf-8", "replace")[:_ERR_BYTES - 1]
        os._exit(1)


class GuardedWriter(DatasetWriter):
    """DatasetWriter with a liveness watchdog, detached workers and a labelled progress bar."""

    def __init__(self, fname: str, fields: dict[str, Any], *, desc: str = "",
                 progress: bool = True, num_workers: int = 1, stall_s: float = STALL_S) -> None:
        super().__init__(fname, fields, num_workers=num_workers)
        self.desc = desc
        self.progress = progress
        self.stall_s = stall_s

    def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
        self.num_samples = num_samples
        self.metadata_sm = None
        queues: list[Queue] = []
        processes: list[Process] = []
        try:
            self.prepare()
            workqueue: Queue = Queue()
            allocations_queue: Queue = Queue()
            queues += [workqueue, allocations_queue]
            for todo in queue_content:
                workqueue.put(todo)
            for _ in range(self.num_workers):
                workqueue.put(None)
            done_number = Value(ctypes.c_uint64, 0)
            err = Array(ctypes.c_char, _ERR_BYTES)
            allocator = MemoryAllocator(self.fname, self.data_region_start, self.page_size)
            worker_args = (workqueue, self.metadata_sm, self.metadata_type, self.fields,
                           allocator, done_number, allocations_queue, *extra_worker_args)
            processes += [Process(target=_child_main, daemon=True,
                                  args=(work_fn, os.getpid(), err, *worker_args))
                          for _ in range(self.num_workers)]
            for p in processes:
                p.start()
            watch = _Watchdog(processes, err, self.stall_s)
            self._wait_for_samples(done_number, watch)
            allocation_list = _collect_allocations(allocations_queue, watch)
            for p in processes:
                p.join(_STOP_S)
            self.finalize(allocation_list)
        finally:
            with shielded():  # a second Ctrl-C must not leave a child or shared memory behind
                _stop(processes)
                _close(queues)
                self._free_metadata()

    def _free_metadata(self) -> None:
        sm = self.metadata_sm
        if isinstance(sm, SharedMemory):
            sm.close()
            with contextlib.suppress(FileNotFoundError):
                sm.unlink()

    def _wait_for_samples(self, done_number: Any, watch: _Watchdog) -> None:
        """Follow the workers' shared counter to the sample count, watching them stay alive."""
        bar = tqdm(total=self.num_samples, desc=self.desc, unit="img",
                   disable=not self.progress, leave=False)
        try:
            previous = 0
            while previous != self.num_samples:
                val = done_number.value
                if val > previous:
                    bar.update(val - previous)
                    watch.progressed()
                previous = val
                if previous != self.num_samples:
                    watch.check()
                    time.sleep(0.05)
        finally:
            bar.close()


class _Watchdog:
    """Raises BenchError when a worker died (with its one-line error) or nothing progressed
    for `stall_s` seconds while the workers live (a hang ffcv alone would never leave)."""

    def __init__(self, processes: list[Process], err: Any, stall_s: float) -> None:
        self.processes, self.err, self.stall_s = processes, err, stall_s
        self.last = time.monotonic()

    def progressed(self) -> None:
        self.last = time.monotonic()

    def check(self) -> None:
        bad = [p.exitcode for p in self.processes if p.exitcode not in (None, 0)]
        if bad:
            why = self.err.value.decode("utf-8", "replace")
            raise BenchError(f"ffcv writer process failed ({why or f'exit code {bad[0]}'}); "
                             "no file was written")
        if time.monotonic() - self.last > self.stall_s:
            raise BenchError(f"ffcv writer made no progress for {self.stall_s:.0f} s; stopped "
                             "it, no file was written")


def _collect_allocations(allocations_queue: Queue, watch: _Watchdog) -> list:
    """Each worker's page allocations (one queue item per worker), watching them stay alive."""
    allocation_list: list = []
    for _ in watch.processes:
        while True:
            try:
                allocation_list.extend(allocations_queue.get(timeout=0.5))
                watch.progressed()
                break
            except queue.Empty:
                watch.check()
    return allocation_list


def _stop(processes: list[Process]) -> None:
    """Terminate live workers, then kill the stubborn; reap them all (no zombie, no orphan)."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        if p.pid is None:
            continue
        p.join(_STOP_S)
        if p.is_alive():
            p.kill()
            p.join(_STOP_S)


def _close(queues: list[Queue]) -> None:
    """Never wait at exit for a feeder thread pushing into a pipe nobody reads any more."""
    for q in queues:
        q.cancel_join_thread()
        q.close()
