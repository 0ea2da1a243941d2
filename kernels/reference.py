"""Pure-torch batch preparation: the oracle for the fused Triton kernel and the CPU path.

One call turns a batch of dataset indices into the model's input: gather uint8 images, random
crop with zero padding (torchvision ``RandomCrop(padding=pad)`` semantics: crop of the padded
image, then horizontal flip of the crop), optional fixed pixel permutation (permuted MNIST),
scale to [0, 1], per-channel normalise, cast, channels-last memory.

The input is uint8, so scale + normalise is a function of (channel, byte) only: a table of
256 fp32 values per channel, :func:`normalisation_table`. It is computed once, on the host, by
that one function; this reference and the Triton kernel only look values up in it. No division
runs on the device, so the fp32 output cannot depend on a device's division unit (CUDA's ATen
divides by a CPU scalar as ``a * (1/b)``, one bit off for ~half the bytes; Triton's plain ``/``
is approximate): it is bit-identical everywhere by construction.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

TABLE_SIZE = 256  # one entry per uint8 value


def normalisation_table(
    mean: torch.Tensor | Sequence[float] | float,
    std: torch.Tensor | Sequence[float] | float,
    channels: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The (C, 256) fp32 table ``table[c, v] = ((v / 255) - mean[c]) / std[c]``.

    Why fp32 and not float64-rounded-once: these are exactly the values this reference
    computed on the CPU before the table, and what torchvision's ``ToTensor()`` + ``Normalize``
    compute on the CPU (the ``torch`` loader), so every loader feeds the model the same
    numbers; a float64 table differs from them by one fp32 step in over half of CIFAR-10's
    entries. Each operation is one IEEE-754 fp32 op, correctly rounded, computed on the host
    with numpy (not dispatched to any torch device kernel, and kept out of ``torch.compile``
    graphs, whose CUDA lowering turns ``/ 255`` into ``* (1/255)``), so the table is the same
    on every machine.

    mean, std: scalars or (C,) on the [0, 1] pixel scale, any device (read back to the host
    once: build the table once per loader, not per batch). channels: broadcast a scalar
    mean/std to C channels (default: their length). device: where to put the result.
    """
    build = _table_on_host
    if "torch._dynamo" in sys.modules:  # torch.compile may be tracing this call: run eagerly
        build = _untraced(build)
    return build(mean, std, channels, device)


def _table_on_host(
    mean: torch.Tensor | Sequence[float] | float,
    std: torch.Tensor | Sequence[float] | float,
    channels: int | None,
    device: torch.device | str | None,
) -> torch.Tensor:
    """:func:`normalisation_table`'s arithmetic: numpy float32 on the host."""
    m = _host_f32(mean)
    s = _host_f32(std)
    c = channels if channels is not None else max(m.size, s.size)
    if m.size not in (1, c) or s.size not in (1, c):
        raise ValueError(f"mean/std must have 1 or {c} entries, got {m.size} and {s.size}")
    v = np.arange(TABLE_SIZE, dtype=np.float32) / np.float32(255.0)  # (256,)
    m = np.broadcast_to(m, (c,))[:, None]
    s = np.broadcast_to(s, (c,))[:, None]
    table = (v[None, :] - m) / s  # (C, 256) float32, op order of (x / 255 - mean) / std
    out = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))
    return out if device is None else out.to(device)


_UNTRACED: dict[Callable[..., Any], Callable[..., Any]] = {}


def _untraced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped in ``torch.compiler.disable``, made on first need: importing dynamo at
    import time would import Triton and fix ``TRITON_INTERPRET`` too early."""
    if fn not in _UNTRACED:
        _UNTRACED[fn] = torch.compiler.disable(fn, reason="host-side normalisation table")
    return _UNTRACED[fn]


def _host_f32(x: torch.Tensor | Sequence[float] | float) -> np.ndarray:
    """Flat float32 numpy copy of a scalar, sequence or tensor (on any device)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).reshape(-1).numpy().copy()
    return np.asarray(x, dtype=np.float32).reshape(-1)


def resolve_table(
    table: torch.Tensor | None,
    mean: torch.Tensor | None,
    std: torch.Tensor | None,
    channels: int,
    device: torch.device,
) -> torch.Tensor:
    """The table to gather from: the given one (checked, no copy if already on ``device``) or
    one built from mean/std (a host computation and one host-to-device copy per call)."""
    if table is None:
        if mean is None or std is None:
            raise ValueError("pass mean and std, or a precomputed table=")
        return normalisation_table(mean, std, channels, device)
    if mean is not None or std is not None:
        raise ValueError("pass mean and std, or table=, not both")
    if tuple(table.shape) != (channels, TABLE_SIZE) or table.dtype != torch.float32:
        raise ValueError(
            f"table must be ({channels}, {TABLE_SIZE}) float32 (see normalisation_table), got "
            f"{tuple(table.shape)} {table.dtype}"
        )
    return table.to(device)


def prepare_batch_reference(
    data: torch.Tensor,
    indices: torch.Tensor,
    crop_offsets: torch.Tensor | None = None,
    flips: torch.Tensor | None = None,
    *,
    pad: int = 0,
    perm: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.float32,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the normalised batch, logical NCHW in channels-last memory.

    data: (N, H, W, C) uint8 on the target device. indices: (B,) int64.
    crop_offsets: (B, 2) int (dy, dx) in [0, 2*pad], offsets into the zero-padded image;
    None means no crop (centre, i.e. (pad, pad)). flips: (B,) bool, None means no flip.
    perm: (H*W,) int64 with out_flat[i] = img_flat[perm[i]], applied after crop and flip.
    mean, std: (C,) or scalar float, on the [0, 1] pixel scale; or instead ``table``, the
    :func:`normalisation_table` for them, built once by the caller (the ``device`` loader) so
    no batch pays a host computation and host-to-device copy. Padding is byte 0, so it
    becomes ``table[c, 0] = -mean[c] / std[c]``. fp32 values are table entries; other dtypes
    are those entries cast (round to nearest even).
    """
    _, h, w, c = data.shape
    dev = data.device
    lut = resolve_table(table, mean, std, c, dev)
    imgs = _crop_flip_perm(data, indices, crop_offsets, flips, pad, perm)  # (B, H, W, C) uint8
    b = imgs.shape[0]
    # out[n, c] = lut[c, byte[n, c]]: a gather along the 256 axis of the (256, C) transpose.
    x = lut.t().contiguous().gather(0, imgs.reshape(b * h * w, c).long()).view(b, h, w, c)
    # NHWC contiguous storage viewed as NCHW is exactly channels-last memory.
    return x.to(out_dtype).permute(0, 3, 1, 2)


def _crop_flip_perm(
    data: torch.Tensor,
    indices: torch.Tensor,
    crop_offsets: torch.Tensor | None,
    flips: torch.Tensor | None,
    pad: int,
    perm: torch.Tensor | None,
) -> torch.Tensor:
    """The batch's uint8 pixels after gather, zero-padded crop, flip and permutation."""
    _, h, w, c = data.shape
    b = indices.shape[0]
    dev = data.device
    imgs = data.index_select(0, indices.to(dev))  # (B, H, W, C) uint8
    if crop_offsets is not None and pad > 0:
        padded = torch.zeros((b, h + 2 * pad, w + 2 * pad, c), dtype=torch.uint8, device=dev)
        padded[:, pad : pad + h, pad : pad + w] = imgs
        dy = crop_offsets[:, 0].to(dev, torch.long)
        dx = crop_offsets[:, 1].to(dev, torch.long)
        rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # (B, H)
        cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # (B, W)
        bidx = torch.arange(b, device=dev)[:, None, None]
        imgs = padded[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    if flips is not None:
        flipped = imgs.flip(2)
        imgs = torch.where(flips.to(dev, torch.bool)[:, None, None, None], flipped, imgs)
    if perm is not None:
        imgs = imgs.reshape(b, h * w, c)[:, perm.to(dev, torch.long)].reshape(b, h, w, c)
    return imgs
