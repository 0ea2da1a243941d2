"""The vendors' dense peak FLOP/s per precision: the second MFU denominator beside the measured one.

MFU against the best measured peak (`bench peak`) says how close a run comes to what this
machine demonstrably does; MFU against the datasheet says how close it comes to what was paid
for (PaLM's definition). Results carry both (`mfu`, `mfu_vendor`), each named.

Every figure is the vendor's datasheet number for DENSE math, in TFLOP/s: where a datasheet
quotes "with sparsity" (2:4 structured sparsity doubles the tensor-core figures) we halve it.
fp32 is the non-tensor (CUDA core) rate; tf32/bf16/fp16 are tensor-core rates with fp32
accumulation (what PyTorch uses; GeForce cards run fp16-accumulate at twice the rate, which we
never quote). Boost clocks: a throttled card cannot reach them, which is one reason the measured
peak sits below. Sources, per entry:
- A100 (SXM4 and PCIe, 40/80 GB): NVIDIA A100 Tensor Core GPU datasheet (the two form factors
  quote the same peaks).
- H100 SXM / PCIe / NVL: NVIDIA H100 Tensor Core GPU datasheet (figures there are with sparsity).
- H200 SXM / NVL: NVIDIA H200 Tensor Core GPU datasheet (same compute as H100 SXM / NVL).
- GH200: NVIDIA GH200 Grace Hopper Superchip datasheet (its GPU is H100 SXM-class).
- L4, L40, L40S, A10: their NVIDIA datasheets (tensor figures with sparsity there).
- GeForce RTX 4090: NVIDIA Ada Lovelace architecture whitepaper, appendix table (FP16/BF16
  tensor with FP32 accumulate 165.2 dense, TF32 82.6 dense, FP32 82.6).
A GPU not in this table (or a name that does not say which variant it is, e.g. a bare "H100")
gets no vendor figure rather than a guess. A run whose convolutions and matmuls run in different
precisions (fp32 with only cuDNN's TF32 on) is divided by these figures combined per kind of
FLOP, as the measured peak is (`bench.measure.engine.effective_peak`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class VendorPeak:
    name: str  # the table entry, e.g. "H100 SXM"
    pattern: str  # regex searched (case-insensitive) in torch.cuda.get_device_name()
    tflops: dict[str, float]  # precision -> dense TFLOP/s


def _peaks(fp32: float, tf32: float, bf16: float, fp16: float | None = None) -> dict[str, float]:
    return {"fp32": fp32, "tf32": tf32, "bf16": bf16, "fp16": bf16 if fp16 is None else fp16}


_H100_SXM = _peaks(67.0, 494.5, 989.5)  # datasheet: tf32 989, bf16/fp16 1,979 with sparsity
_H100_NVL = _peaks(60.0, 417.5, 835.5)  # datasheet: tf32 835, bf16/fp16 1,671 with sparsity
_A100 = _peaks(19.5, 156.0, 312.0)  # datasheet: tf32 156 (312 sparse), bf16/fp16 312 (624)

# Tried in order, first match wins: the more specific names first (GH200 before H200, NVL and
# PCIe before the SXM default, L40S before L40 before L4).
VENDOR_PEAKS: tuple[VendorPeak, ...] = (
    VendorPeak("GH200", r"GH200", _H100_SXM),
    VendorPeak("H200 NVL", r"H200.*NVL", _H100_NVL),
    VendorPeak("H200 SXM", r"\bH200\b", _H100_SXM),
    VendorPeak("H100 NVL", r"H100.*NVL", _H100_NVL),
    VendorPeak("H100 PCIe", r"H100.*PCIe", _peaks(51.0, 378.0, 756.5)),  # sparse: 756 / 1,513
    VendorPeak("H100 SXM", r"H100.*(SXM|HBM3)", _H100_SXM),
    VendorPeak("A100 SXM", r"A100.*SXM", _A100),
    VendorPeak("A100 PCIe", r"A100.*PCIe", _A100),
    VendorPeak("L40S", r"\bL40S\b", _peaks(91.6, 183.0, 362.05)),  # sparse: 366 / 733
    VendorPeak("L40", r"\bL40\b", _peaks(90.5, 90.5, 181.05)),  # sparse: 181 / 362.1
    VendorPeak("L4", r"\bL4\b", _peaks(30.3, 60.0, 121.0)),  # sparse: 120 / 242
    VendorPeak("A10", r"\bA10\b", _peaks(31.2, 62.5, 125.0)),  # sparse: 125 / 250
    # not the 4090 D nor the laptop part (other chips)
    VendorPeak("RTX 4090", r"RTX 4090(?!\s*(D\b|Laptop))", _peaks(82.6, 82.6, 165.2)),
)


def match_gpu(name: str | None) -> VendorPeak | None:
    """The table entry for a GPU name as torch reports it; None when it is not in the table."""
    if not name:
        return None
    return next((p for p in VENDOR_PEAKS if re.search(p.pattern, name, re.IGNORECASE)), None)


def vendor_peak_tflops(name: str | None, precision: str) -> float | None:
    """The dense datasheet peak (TFLOP/s) of that GPU in that precision, or None."""
    entry = match_gpu(name)
    return entry.tflops.get(precision) if entry else None
