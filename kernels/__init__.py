"""Batch preparation for the ``device`` loader: fused Triton kernel with a pure-torch fallback.

``prepare_batch`` picks the Triton kernel for CUDA data when Triton imports, else the reference.
Importing this package never imports Triton (it is probed on first use), so it works on machines
without Triton and leaves ``TRITON_INTERPRET`` free to be set later.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

from kernels.reference import normalisation_table, prepare_batch_reference

__all__ = [
    "interpreter_active",
    "normalisation_table",
    "prepare_batch",
    "prepare_batch_reference",
    "triton_available",
]

_BACKENDS = ("auto", "triton", "reference")


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when ``import triton`` succeeds (cached: the import is slow and its result fixed)."""
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception:  # ImportError, or a broken install raising something else
        return False
    return True


def interpreter_active() -> bool:
    """True when ``TRITON_INTERPRET`` is set truthy, i.e. Triton kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def prepare_batch(
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
    backend: str = "auto",
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prepare one batch; same semantics as :func:`prepare_batch_reference`.

    backend: "auto" uses Triton for CUDA data when available (and for an ``out_dtype`` the kernel
    stores), else the reference; "triton" forces the kernel (CUDA data, or CPU data under
    ``TRITON_INTERPRET=1``) and raises if it cannot run; "reference" forces pure torch.
    Give mean/std, or ``table`` (:func:`normalisation_table`, built once per loader): both
    backends gather from that one table, so they agree bit for bit in fp32.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    kwargs = dict(pad=pad, perm=perm, mean=mean, std=std, out_dtype=out_dtype, table=table)
    if backend == "reference":
        return prepare_batch_reference(data, indices, crop_offsets, flips, **kwargs)

    from kernels.triton_batch import SUPPORTED_OUT_DTYPES, prepare_batch_triton

    if backend == "auto":
        if data.is_cuda and out_dtype in SUPPORTED_OUT_DTYPES and triton_available():
            return prepare_batch_triton(data, indices, crop_offsets, flips, **kwargs)
        return prepare_batch_reference(data, indices, crop_offsets, flips, **kwargs)

    # backend == "triton": fail loudly rather than silently measuring the wrong thing.
    if not triton_available():
        raise RuntimeError("backend='triton' requested but triton cannot be imported")
    if not data.is_cuda and not interpreter_active():
        raise RuntimeError(
            "backend='triton' needs CUDA data, or TRITON_INTERPRET=1 (set before triton is "
            "imported) to run the kernel on CPU"
        )
    return prepare_batch_triton(data, indices, crop_offsets, flips, **kwargs)
