"""The `ffcv` loader: a verified .beton read by ffcv's compiled (numba) pipeline.

On first use the dataset's split is converted to a .beton (bench.data.ffcv.convert); every use
verifies the file against its sidecar first, because ffcv segfaults or silently returns wrong
images on damaged files. The ffcv pipeline stays uint8 end to end (decode, optional flip +
translate-with-zero-fill = torchvision RandomCrop(padding=4) + flip, ToTensor, ToDevice,
ToTorchImage); normalisation, the dtype cast (bf16 included), mnist-perm's pixel permutation
and the memory format are torch ops on the whole batch after ffcv yields it: ffcv's
NormalizeImage needs cupy and knows no bf16, and keeping our code out of ffcv's threads means
none of it can raise there.

Hangs: ffcv 1.0.2 runs the pipeline in an `EpochIterator` thread; if that thread raises, the
consumer waits on its queue forever. We start epochs with a subclass whose `run` catches the
exception and puts a marker in the queue, so the consumer gets a one-line BenchError instead.
(A segfault cannot be caught in-process; verification is what prevents those.) The
augmentation RNG is numba's per-thread generator, which ffcv 1.0.2 does not seed: the sample
order is reproducible from `cfg.seed`, the crops and flips are not.

Copies to the GPU (libffcv/ffcv#37): ffcv 1.0.2 owns `batches_ahead + 2` buffer slots, each a
set of pinned host buffers (the decoded, augmented uint8 batch) and device buffers. Its thread
fills slot s on the CPU, then ToDevice enqueues `dst.copy_(src, non_blocking=True)` on slot s's
CUDA stream and the thread moves on; `batches_ahead + 2` batches later it decodes the next batch
into the same host buffers. Nothing makes the host wait for the earlier copy: ffcv's per-slot
event (`cuda_event.wait()`) orders GPU work only, and the copy itself waits on the GPU for the
consumer's earlier kernels. When the GPU runs behind the CPU (a slow step, a deep queue of
launched kernels) numba overwrites pinned memory that the DMA engine has not read yet, and the
model trains on a batch that is partly the next one. No error, just wrong data. (Freeing is
safe, PyTorch's pinned allocator records the copy; overwriting in place is not.)
The fix keeps the copy asynchronous and fences each slot: after the pipeline of slot s is
enqueued the guarded iterator records a CUDA event on slot s's stream (`SlotFences.record`),
and before it runs the pipeline of slot s again the thread waits for that event on the host
(`SlotFences.wait`, `Event.synchronize`). The copy still overlaps the decoding of the next
batches; the thread blocks only when the GPU is a full ring of slots behind. The device
buffers need no fence of ours: ffcv's own event keeps them until the consumer's kernels are
enqueued, and `_finish` copies every batch into new tensors at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from queue import Full
from typing import Any

import torch

from bench.data.loaders.base import LoaderConfig
from bench.errors import BenchError
from bench.host.device import default_workers
from bench.spec.datasets import DatasetArrays

_DIED = object()  # what the consumer receives when the pipeline thread raised


class SlotFences:
    """One pending CUDA event per ffcv buffer slot: the copies that last read its host buffers.

    `record(slot, stream)` after the slot's pipeline (and its non-blocking copies) was enqueued
    on `stream`; `wait(slot)` before the slot's host buffers are written again: blocks the
    calling thread until those copies have finished. `new_event` makes an object with
    `record(stream)` and `synchronize()` (torch.cuda.Event; a fake in CPU tests).
    """

    def __init__(self, new_event: Callable[[], Any]) -> None:
        self._new_event = new_event
        self._pending: dict[int, Any] = {}

    def record(self, slot: int, stream: Any) -> None:
        event = self._new_event()
        event.record(stream)
        self._pending[slot] = event

    def wait(self, slot: int) -> None:
        event = self._pending.pop(slot, None)
        if event is not None:
            event.synchronize()


def _guarded_iterator_class(base: type | None = None,
                            new_event: Callable[[], Any] | None = None) -> type:
    """EpochIterator whose thread never dies silently and never overwrites a pinned buffer
    that a copy may still read (built lazily: ffcv is optional). `base` and `new_event`
    replace ffcv's EpochIterator and torch.cuda.Event in tests."""
    if base is None:
        from ffcv.loader.epoch_iterator import EpochIterator as base
    make_event = new_event or torch.cuda.Event

    class GuardedEpochIterator(base):  # type: ignore[misc, valid-type]
        error: BaseException | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.fences = SlotFences(make_event)  # before super(): its __init__ starts run()
            super().__init__(*args, **kwargs)

        def run_pipeline(self, b_ix: int, batch_indices: Any, batch_slot: int,
                         cuda_event: Any) -> Any:
            stream = self.cuda_streams[batch_slot]  # None when ffcv found no CUDA
            if stream is None:
                return super().run_pipeline(b_ix, batch_indices, batch_slot, cuda_event)
            self.fences.wait(batch_slot)  # the last copies out of this slot have finished
            result = super().run_pipeline(b_ix, batch_indices, batch_slot, cuda_event)
            self.fences.record(batch_slot, stream)  # this slot's copies, just enqueued
            return result

        def run(self) -> None:
            try:
                super().run()
            except BaseException as exc:  # noqa: BLE001 - reported to the consumer
                self.error = exc
                while not self.terminate_event.is_set():
                    try:  # (slot, result): ffcv's __next__ unpacks it and returns _DIED
                        self.output_queue.put((0, _DIED), timeout=0.5)
                        break
                    except Full:
                        continue

    return GuardedEpochIterator


class FfcvLoader:
    """Loader protocol over one .beton split (see bench.data.loaders.base)."""

    def __init__(self, data: DatasetArrays, cfg: LoaderConfig, beton: Any) -> None:
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.ndarray import NDArrayDecoder
        from ffcv.fields.rgb_image import SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import (
            RandomHorizontalFlip,
            RandomTranslate,
            Squeeze,
            ToDevice,
            ToTensor,
            ToTorchImage,
        )

        self.cfg = cfg
        self.beton = beton  # bench.data.ffcv.convert.BetonInfo
        self.family = data.family
        channels = int(beton.meta["image_shape"][-1])
        mean, std = cfg.mean_std
        if len(mean) != channels:
            raise BenchError(f"norm {cfg.norm!r} has {len(mean)} channels, the images "
                             f"have {channels}")
        dev = cfg.device
        # (x / 255 - m) / s == x * (1 / (255 s)) + (-m / s): one fused pass from uint8
        # (addcmul promotes), 2x faster than convert + sub + div; within 2 ulp of the latter.
        m_t = torch.tensor(mean, dtype=torch.float64)
        s_t = torch.tensor(std, dtype=torch.float64)
        self._scale = (1.0 / (255.0 * s_t)).to(torch.float32).view(1, -1, 1, 1).to(dev)
        self._shift = (-m_t / s_t).to(torch.float32).view(1, -1, 1, 1).to(dev)
        self._perm = (torch.as_tensor(data.perm, dtype=torch.long, device=dev)
                      if data.perm is not None else None)

        opts = cfg.options
        self.os_cache = bool(opts.get("os_cache", True))
        self.batches_ahead = int(opts.get("batches_ahead", 3))
        self.workers_requested = cfg.workers or default_workers()
        import numba

        # numba refuses more threads than NUMBA_NUM_THREADS (default: the cores)
        self.workers = max(1, min(self.workers_requested, numba.config.NUMBA_NUM_THREADS))
        self.order = "random" if cfg.shuffle else "sequential"

        decoder = (SimpleRGBImageDecoder() if beton.meta["fields"]["image"]["type"]
                   == "RGBImageField" else NDArrayDecoder())
        image_ops: list[Any] = [decoder]
        self.augment_ops: list[str] = []
        if cfg.augment:
            image_ops += [RandomHorizontalFlip()]
            self.augment_ops = ["RandomHorizontalFlip(0.5)"]
        if cfg.augment and cfg.pad:
            image_ops += [RandomTranslate(padding=cfg.pad, fill=(0,) * channels)]
            self.augment_ops += [f"RandomTranslate(padding={cfg.pad}, fill=0)"]
        image_ops += [ToTensor(), ToDevice(dev, non_blocking=True),
                      ToTorchImage(channels_last=True)]  # a view: NCHW shape, NHWC memory
        label_ops = [IntDecoder(), ToTensor(), Squeeze(1), ToDevice(dev, non_blocking=True)]

        distributed = cfg.world_size > 1
        if distributed:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise BenchError("ffcv loader with world_size > 1 needs torch.distributed "
                                 "initialised (ffcv takes rank and world size from it)")
            if (dist.get_rank(), dist.get_world_size()) != (cfg.rank, cfg.world_size):
                raise BenchError(f"ffcv loader: torch.distributed says rank "
                                 f"{dist.get_rank()}/{dist.get_world_size()}, config says "
                                 f"{cfg.rank}/{cfg.world_size}")
        t0 = time.perf_counter()
        self._loader = Loader(
            str(beton.path), batch_size=cfg.batch_size, num_workers=self.workers,
            os_cache=self.os_cache,
            order=OrderOption.RANDOM if cfg.shuffle else OrderOption.SEQUENTIAL,
            distributed=distributed, seed=cfg.seed, drop_last=cfg.drop_last,
            batches_ahead=self.batches_ahead,
            pipelines={"image": image_ops, "label": label_ops},
        )
        self.construct_s = time.perf_counter() - t0
        self._iter_cls = _guarded_iterator_class()
        self.compile_s: float | None = None  # first batch of the first epoch: numba JIT
        self.first_epoch_s: float | None = None

    # ------------------------------------------------------------------ protocol
    def set_epoch(self, epoch: int) -> None:
        """ffcv's RANDOM order draws permutation(seed + epoch): choose that epoch next."""
        self._loader.next_epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def num_samples(self) -> int:
        if self.cfg.drop_last:
            return len(self) * self.cfg.batch_size
        return int(len(self._loader.first_traversal_order))

    def _start_epoch(self) -> Any:
        """ffcv's Loader.__iter__, but with the guarded iterator thread."""
        from ffcv.pipeline.compiler import Compiler

        ld = self._loader
        Compiler.set_num_threads(ld.num_workers)
        order = ld.next_traversal_order()
        selected = order[: len(ld) * ld.batch_size]
        ld.next_epoch += 1
        if ld.code is None or ld.recompile:
            ld.generate_code()
        return self._iter_cls(ld, selected)

    def __iter__(self):
        first_epoch = self.first_epoch_s is None
        t0 = time.perf_counter()
        it = self._start_epoch()
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    break
                if item is _DIED:
                    err = it.error
                    raise BenchError(f"ffcv pipeline failed in its loader thread "
                                     f"({type(err).__name__}: {err})")
                if self.compile_s is None:
                    self.compile_s = time.perf_counter() - t0
                images, labels = item
                yield self._finish(images, labels)
            if first_epoch:
                self.first_epoch_s = time.perf_counter() - t0
        finally:
            it.close()

    def _finish(self, images: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, C, H, W) view in NHWC memory -> the model's input. Always allocates new
        tensors: ffcv reuses its batch buffers a few batches later."""
        x = images
        if self._perm is not None:
            b, c, h, w = x.shape
            nhwc = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
            x = nhwc.index_select(1, self._perm).view(b, h, w, c).permute(0, 3, 1, 2)
        if not self.cfg.channels_last:
            x = x.contiguous()  # cheapest while still uint8
        xf = torch.addcmul(self._shift, x, self._scale)  # float32, keeps the memory format
        if self.cfg.dtype != torch.float32:
            xf = xf.to(self.cfg.dtype)
        return xf, labels.to(torch.long, copy=True)

    def describe(self) -> dict[str, Any]:
        from bench.data.ffcv import ffcv_version

        b = self.beton
        return {
            "name": "ffcv", "ffcv_version": ffcv_version(), "workers": self.workers,
            "workers_requested": self.workers_requested, "order": self.order,
            "os_cache": self.os_cache, "drop_last": self.cfg.drop_last,
            "batch_size": self.cfg.batch_size, "batches_ahead": self.batches_ahead,
            "distributed": self.cfg.world_size > 1, "augment": self.augment_ops,
            "normalise": "torch after ffcv: x * (1/(255 std)) - mean/std",
            "permuted": self._perm is not None,
            "beton": str(b.path), "beton_sha256": b.meta["beton"]["sha256"],
            "beton_status": b.status, "prepare_s": round(b.seconds, 3),
            "construct_s": round(self.construct_s, 3),
            "compile_s": None if self.compile_s is None else round(self.compile_s, 3),
            "first_epoch_s": None if self.first_epoch_s is None else round(
                self.first_epoch_s, 3),
        }


def build(data: DatasetArrays, cfg: LoaderConfig) -> FfcvLoader:
    """Convert (first use) and verify the split's .beton, then open it with ffcv.

    cfg.options: beton_dir (default <cache>/ffcv), os_cache (True), batches_ahead (3),
    progress (True: conversion progress bar on stderr).
    """
    from bench.data.ffcv import require_ffcv
    from bench.data.ffcv.convert import ensure_betons

    if cfg.split not in ("train", "test"):
        raise BenchError(f"unknown split {cfg.split!r}")
    out = cfg.options.get("beton_dir")
    # Verify (or convert) first: a damaged file is reported without importing ffcv at all.
    infos = ensure_betons(data, Path(out) if out else None, [cfg.split], repair=False,
                          progress=bool(cfg.options.get("progress", True)))
    require_ffcv()
    return FfcvLoader(data, cfg, infos[cfg.split])


__all__ = ["FfcvLoader", "build"]
