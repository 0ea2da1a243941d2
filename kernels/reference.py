"""Pure-torch batch preparation: the oracle for the fused Triton kernel and the CPU path.

One call turns a batch of dataset indices into the model's input: gather uint8 images, random
crop with zero padding (torchvision ``RandomCrop(padding=pad)`` semantics: crop of the padded
image, then horizontal flip of the crop), optional fixed pixel permutation (permuted MNIST),
scale to [0, 1], per-channel normalise, cast, channels-last memory.
"""

from __future__ import annotations

import torch


def prepare_batch_reference(
    data: torch.Tensor,
    indices: torch.Tensor,
    crop_offsets: torch.Tensor | None = None,
    flips: torch.Tensor | None = None,
    *,
    pad: int = 0,
    perm: torch.Tensor | None = None,
    mean: torch.Tensor,
    std: torch.Tensor,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Return the normalised batch, logical NCHW in channels-last memory.

    data: (N, H, W, C) uint8 on the target device. indices: (B,) int64.
    crop_offsets: (B, 2) int (dy, dx) in [0, 2*pad], offsets into the zero-padded image;
    None means no crop (centre, i.e. (pad, pad)). flips: (B,) bool, None means no flip.
    perm: (H*W,) int64 with out_flat[i] = img_flat[perm[i]], applied after crop and flip.
    mean, std: (C,) float, on the [0, 1] pixel scale.
    """
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
    x = imgs.to(torch.float32).div_(255.0)
    x = (x - mean.to(dev, torch.float32)) / std.to(dev, torch.float32)
    # NHWC contiguous storage viewed as NCHW is exactly channels-last memory.
    return x.to(out_dtype).permute(0, 3, 1, 2)
