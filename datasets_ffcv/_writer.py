"""An ffcv `DatasetWriter` that cannot hang when a writer process dies.

ffcv 1.0.2's `_write_common` waits for a shared progress counter to reach the sample count; if
a worker process raises (disk full, a bad sample) the counter never gets there and the writer
spins forever. This copy of that method (same steps, same file layout) also watches the
workers' exit codes and turns a dead worker into a BenchError after cleaning up the shared
memory. Imported only after `require_ffcv()` succeeded. Tied to ffcv==1.0.2 (pinned).
"""

from __future__ import annotations

import ctypes
import queue
import time
from multiprocessing import Process, Queue, Value
from typing import Any

from ffcv.memory_allocator import MemoryAllocator
from ffcv.writer import DatasetWriter
from tqdm import tqdm

from bench.errors import BenchError


class GuardedWriter(DatasetWriter):
    """DatasetWriter with a liveness watchdog and a labelled progress bar."""

    def __init__(self, fname: str, fields: dict[str, Any], *, desc: str = "",
                 progress: bool = True, num_workers: int = 1) -> None:
        super().__init__(fname, fields, num_workers=num_workers)
        self.desc = desc
        self.progress = progress

    def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
        self.num_samples = num_samples
        self.prepare()
        workqueue: Queue = Queue()
        for todo in queue_content:
            workqueue.put(todo)
        allocations_queue: Queue = Queue()
        for _ in range(self.num_workers):
            workqueue.put(None)
        done_number = Value(ctypes.c_uint64, 0)
        allocator = MemoryAllocator(self.fname, self.data_region_start, self.page_size)
        worker_args = (workqueue, self.metadata_sm, self.metadata_type, self.fields,
                       allocator, done_number, allocations_queue, *extra_worker_args)
        processes = [Process(target=work_fn, args=worker_args) for _ in range(self.num_workers)]
        try:
            for p in processes:
                p.start()
            self._wait_for_samples(processes, done_number)
            allocation_list = _collect_allocations(processes, allocations_queue)
            for p in processes:
                p.join()
            self.finalize(allocation_list)
        finally:
            for p in processes:
                if p.is_alive():
                    p.terminate()
                    p.join()
            self.metadata_sm.close()
            self.metadata_sm.unlink()


    def _wait_for_samples(self, processes: list[Process], done_number: Any) -> None:
        """Follow the workers' shared counter to the sample count, watching them stay alive."""
        bar = tqdm(total=self.num_samples, desc=self.desc, unit="img",
                   disable=not self.progress, leave=False)
        previous = 0
        while previous != self.num_samples:
            val = done_number.value
            if val > previous:
                bar.update(val - previous)
            previous = val
            if previous != self.num_samples:
                _check_workers(processes)
                time.sleep(0.05)
        bar.close()


def _collect_allocations(processes: list[Process], allocations_queue: Queue) -> list:
    """Each worker's page allocations (one queue item per worker), watching them stay alive."""
    allocation_list: list = []
    for _ in processes:
        while True:
            try:
                allocation_list.extend(allocations_queue.get(timeout=0.5))
                break
            except queue.Empty:
                _check_workers(processes)
    return allocation_list


def _check_workers(processes: list[Process]) -> None:
    """Raise if a worker exited with an error or was killed (negative code: a signal)."""
    bad = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
    if bad:
        raise BenchError(f"ffcv writer process died (exit code {bad[0]}); no file was written")
