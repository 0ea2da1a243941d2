"""The ffcv loader's host-to-device copies never read a pinned buffer that ffcv already reuses
(libffcv/ffcv#37; the race and the fix are in bench/data/loaders/ffcv_loader.py's docstring).

The mechanism runs here on a CPU against a fake of ffcv's EpochIterator: a ring of host buffer
slots, a pipeline that decodes each batch into its slot in place and enqueues an asynchronous
copy on the slot's stream, and fake streams that run their copies only when an event is waited
on (or at the very end: a GPU that runs behind). Without the fences the late copies read the
next batches' pixels; with them every batch arrives intact.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable

import numpy as np
import pytest

from bench.data.loaders.ffcv_loader import SlotFences, _guarded_iterator_class

HAVE_FFCV = importlib.util.find_spec("ffcv") is not None
SLOTS, BATCHES, PIXELS = 3, 8, 4


class FakeStream:
    """A CUDA stream that runs its queued work only when made to (an event, or the end)."""

    def __init__(self) -> None:
        self.ops: list[Callable[[], None]] = []
        self.done = 0

    def run_until(self, mark: int) -> None:
        while self.done < mark:
            self.ops[self.done]()
            self.done += 1


class FakeEvent:
    """torch.cuda.Event's record/synchronize over a FakeStream."""

    made: list[FakeEvent] = []

    def __init__(self) -> None:
        self.waited = False
        FakeEvent.made.append(self)

    def record(self, stream: FakeStream) -> None:
        self.stream, self.mark = stream, len(stream.ops)

    def synchronize(self) -> None:
        self.waited = True
        self.stream.run_until(self.mark)


class FakeEpochIterator:
    """ffcv 1.0.2's EpochIterator reduced to its buffer ring: `run` calls `run_pipeline` per
    batch on slot b % SLOTS; the pipeline decodes into the slot's host buffer in place and
    enqueues a non-blocking copy of it on the slot's stream."""

    def __init__(self, cuda: bool = True) -> None:
        self.cuda_streams = [FakeStream() if cuda else None for _ in range(SLOTS)]
        self.host = np.zeros((SLOTS, PIXELS), dtype=np.int64)  # the pinned buffers
        self.device: dict[int, np.ndarray] = {}  # batch -> what its copy read

    def run(self) -> None:
        for b in range(BATCHES):
            self.run_pipeline(b, [b], b % SLOTS, None)
        for stream in self.cuda_streams:  # the GPU catches up eventually
            if stream is not None:
                stream.run_until(len(stream.ops))

    def run_pipeline(self, b_ix, batch_indices, batch_slot, cuda_event):
        self.host[batch_slot][:] = b_ix  # numba decodes the batch into the slot's buffer
        src = self.host[batch_slot]
        copy = lambda: self.device.__setitem__(b_ix, src.copy())
        stream = self.cuda_streams[batch_slot]
        if stream is None:
            copy()
        else:
            stream.ops.append(copy)  # dst.copy_(src, non_blocking=True)


def arrived_intact(it: FakeEpochIterator) -> list[bool]:
    return [bool((it.device[b] == b).all()) for b in range(BATCHES)]


def test_unfenced_async_copies_read_reused_buffers() -> None:
    """The race, in the fake: copies that run late read the batch decoded after theirs."""
    it = FakeEpochIterator()
    it.run()
    assert not all(arrived_intact(it))


def test_fenced_copies_deliver_every_batch_intact() -> None:
    FakeEvent.made.clear()
    it = _guarded_iterator_class(FakeEpochIterator, FakeEvent)()
    it.run()
    assert arrived_intact(it) == [True] * BATCHES
    # one event per batch; each slot's event waited before the slot's next decode
    assert len(FakeEvent.made) == BATCHES
    assert [e.waited for e in FakeEvent.made] == [True] * (BATCHES - SLOTS) + [False] * SLOTS


def test_no_events_without_cuda_streams() -> None:
    """On a machine without CUDA ffcv's streams are None: nothing is recorded or waited."""
    FakeEvent.made.clear()
    it = _guarded_iterator_class(FakeEpochIterator, FakeEvent)(cuda=False)
    it.run()
    assert arrived_intact(it) == [True] * BATCHES and FakeEvent.made == []


def test_slot_fences_wait_once_per_record() -> None:
    FakeEvent.made.clear()
    fences, stream = SlotFences(FakeEvent), FakeStream()
    fences.wait(0)  # nothing recorded yet: no event, no error
    fences.record(0, stream)
    fences.wait(0)
    fences.wait(0)  # already waited: the slot is free
    assert [e.waited for e in FakeEvent.made] == [True]


@pytest.mark.ffcv
@pytest.mark.skipif(not HAVE_FFCV, reason="ffcv not installed")
def test_real_epoch_iterator_has_the_hooks_the_fix_overrides() -> None:
    """ffcv's EpochIterator still runs each batch through run_pipeline(b_ix, batch_indices,
    batch_slot, cuda_event) with one stream per slot in cuda_streams."""
    from ffcv.loader.epoch_iterator import EpochIterator

    params = list(inspect.signature(EpochIterator.run_pipeline).parameters)
    assert params == ["self", "b_ix", "batch_indices", "batch_slot", "cuda_event"]
    assert "self.run_pipeline(" in inspect.getsource(EpochIterator.run)
    assert "self.cuda_streams" in inspect.getsource(EpochIterator.__init__)
    guarded = _guarded_iterator_class()
    assert issubclass(guarded, EpochIterator)
    assert guarded.run_pipeline is not EpochIterator.run_pipeline
