"""Device names as results show them: one label to group runs by, one slug for file names.

Kept apart from `bench.envinfo` (which reads the machine through torch) so that the readers -
compare, report, export - can label runs without importing torch.
"""

from __future__ import annotations

from typing import Any


def device_label(env: dict[str, Any], device_type: str) -> str:
    """Human label for grouping results: the GPU name on CUDA, the CPU model otherwise."""
    if device_type == "cuda" and env.get("gpus"):
        return str(env["gpus"][0]["name"])
    return f"CPU {env.get('cpu_model', '?')} x{env.get('torch_threads', '?')}"


def device_slug(label: str) -> str:
    """File-name-safe slug of a device label, e.g. 'nvidia-h100-80gb-hbm3'."""
    s = "".join(ch.lower() if ch.isalnum() else "-" for ch in label)
    while "--" in s:
        s = s.replace("--", "-")
    return s.strip("-")
