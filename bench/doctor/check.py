"""What a doctor check is, what it may read, and how it says skip or fail: the types shared
by the doctor's table (`verb`) and the checks themselves (`checks`, `first_contact`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Skip(Exception):
    """The check does not apply here; its message is the reason (a `skip` row)."""


class Fail(Exception):
    """The check found a problem; its message is the row (a `fail` row)."""


@dataclass
class Context:
    """What every check may read: the device asked for and as resolved, and where to write."""

    device_name: str
    work_dir: Path  # a temporary folder for results the checks write
    data_dir: str | None = None
    full: bool = False  # the whole matrix, also on a CPU and past the time budget
    device: Any = None  # torch.device once the device check resolved it, else None

    @property
    def cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"


CheckFn = Callable[[Context], str]


@dataclass(frozen=True)
class Check:
    """One named check: `fn` returns its pass line, raises Skip/Fail (or anything: a fail)."""

    name: str
    fn: CheckFn
    timeout_s: float = 60.0
    needs_cuda: bool = False
    needs_device: bool = True  # skipped when the device could not be resolved
    budgeted: bool = True  # skipped when it does not fit the time budget (essential: False)
    estimate_s: float = 5.0  # its typical cost where it is meant to run (a GPU for CUDA rows)
