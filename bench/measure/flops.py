"""Training FLOPs per image, counted by torch's FlopCounterMode (forward + backward)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.defaults import precision as precision_spec
from bench.spec.datasets import FAMILIES
from bench.spec.models import build_model, get_model_spec


def input_shape(model_name: str) -> tuple[int, int, int]:
    """(C, H, W) of one image of the model's dataset family."""
    return FAMILIES[get_model_spec(model_name).family].input_shape


def _is_conv(op: object) -> bool:
    """aten.convolution, aten.convolution_backward, aten._convolution...: cuDNN's work (its TF32
    switch); every other op FlopCounterMode counts (mm, addmm, bmm, attention) is a matmul."""
    return "convolution" in str(op)


@functools.cache
def flop_counts(model_name: str, batch: int = 2) -> dict[str, float]:
    """FLOPs per image (1 multiply-add = 2 FLOPs) of the forward pass and of a training step,
    and the training step's split into convolution and matmul FLOPs: the two run on different
    libraries with separate TF32 switches, so each is bounded by its own peak (MFU)."""
    model = build_model(model_name)
    x = torch.randn(batch, *input_shape(model_name))
    y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as fwd:
        out = model(x)
    forward = fwd.get_total_flops()
    with FlopCounterMode(display=False) as full:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    del out
    train = full.get_total_flops()
    conv = sum(n for op, n in full.get_flop_counts().get("Global", {}).items() if _is_conv(op))
    return {"forward_flops_per_image": forward / batch, "train_flops_per_image": train / batch,
            "conv_train_flops_per_image": conv / batch,
            "matmul_train_flops_per_image": (train - conv) / batch}


def train_flops_per_image(model_name: str) -> float:
    return flop_counts(model_name)["train_flops_per_image"]


def train_flop_split(model_name: str) -> dict[str, float]:
    """Training FLOPs per image by kind ({"conv": ..., "matmul": ...}, `engine.FLOP_KINDS`),
    what `engine.effective_peak` weighs the per-kind peaks by."""
    counts = flop_counts(model_name)
    return {"conv": counts["conv_train_flops_per_image"],
            "matmul": counts["matmul_train_flops_per_image"]}


def leaf_output_elements(model: torch.nn.Module, sample_shape: tuple[int, ...]) -> int:
    """Elements of every leaf module's output for one sample (the tensors a step writes): the
    activation size behind the roofline's traffic model and the batch-size search. `model`
    must be in eval mode (BatchNorm in training mode refuses one sample) and on the CPU."""
    total = 0

    def hook(_m: torch.nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *sample_shape))
    finally:
        for h in handles:
            h.remove()
    return total


@functools.cache
def activation_elements_per_image(model_name: str) -> int:
    return leaf_output_elements(build_model(model_name).eval(), input_shape(model_name))


def train_bytes_per_image(model_name: str, batch_size: int, precision: str) -> float:
    """A simple traffic model of one training step, per image, for the roofline.

    Activations: written in the forward pass, read in the backward, their gradients written and
    read (4 passes) in the compute dtype. Parameters (fp32): read forward and backward, gradient
    written, optimizer reads param, grad and two moments and writes three (about 10 passes),
    shared by the batch. Input images: read once. Caches are ignored, so this is an upper bound
    of DRAM traffic and the intensity a lower bound.
    """
    act_bytes = precision_spec(precision).activation_bytes
    spec = get_model_spec(model_name)
    input_elems = math.prod(input_shape(model_name))
    return (4 * activation_elements_per_image(model_name) * act_bytes
            + 10 * 4 * spec.params / max(batch_size, 1) + input_elems * act_bytes)


def arithmetic_intensity(model_name: str, batch_size: int, precision: str) -> float:
    """Training FLOPs per byte moved (see `train_bytes_per_image` for the traffic model)."""
    return train_flops_per_image(model_name) / train_bytes_per_image(model_name, batch_size,
                                                                      precision)
