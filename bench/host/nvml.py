"""GPU telemetry through NVML: clocks, power, temperature and throttle reasons during a run.

A throughput figure taken while the GPU throttled (too hot, or at its power cap) is below what
the same GPU does when it is not; the result must say so. We sample at the engine's window
edges, where it has synchronised anyway, so sampling adds nothing to the timed steps, and keep
min/median/max per run in `summary.gpu_telemetry` (schema: `bench.results.schema.GpuTelemetry`).

The GPU is matched to the torch device by UUID, never by index: under CUDA_VISIBLE_DEVICES
torch's cuda:0 may be NVML's device 3. `pynvml` (the nvidia-ml-py package) is optional: without
it, or without a driver, every field is null and `reason` says why.
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import uuid as uuid_mod
from typing import TYPE_CHECKING, Any

from bench.errors import debug_trace
from bench.results.schema import GpuTelemetry

if TYPE_CHECKING:  # torch is imported where a device is read, so the warning stays torch-free
    import torch

# nvmlClocksEventReason* bits (nvml.h; the older name is nvmlClocksThrottleReason*).
THROTTLE_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that mean the GPU ran below its clocks because of heat or power: a warning.
THERMAL = frozenset({"sw_thermal_slowdown", "hw_thermal_slowdown"})
POWER = frozenset({"sw_power_cap", "hw_power_brake_slowdown", "hw_slowdown"})
FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c")
_CLOCK_SM, _CLOCK_MEM, _TEMPERATURE_GPU = 1, 2, 0  # NVML_CLOCK_SM, NVML_CLOCK_MEM, *_GPU


def decode_throttle(mask: int) -> list[str]:
    """The names of the reasons set in an NVML clocks-event bitmask (unknown bits by value)."""
    names = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_BITS)
    return names + ([f"unknown_0x{unknown:x}"] if unknown else [])


def normalise_uuid(value: Any) -> str:
    """'GPU-5a7d...' (NVML), '5a7d...' (torch) and bytes all compare as '5a7d...'."""
    raw = getattr(value, "bytes", None)  # torch's _CUuuid, should its str() be raw bytes
    if isinstance(raw, bytes) and len(raw) == 16:
        text = str(uuid_mod.UUID(bytes=raw))
    else:
        text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def torch_uuid(device: torch.device) -> str:
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    return normalise_uuid(torch.cuda.get_device_properties(index).uuid)


def _load_pynvml() -> tuple[Any, str | None]:
    """(module, None) when pynvml imports and NVML initialises, else (None, why)."""
    try:
        nv = importlib.import_module("pynvml")
    except ImportError:
        return None, "pynvml not installed (pip install nvidia-ml-py)"
    try:
        nv.nvmlInit()  # reference-counted by NVML: a second call is cheap and harmless
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        return None, f"NVML unavailable: {type(exc).__name__}: {exc}"
    return nv, None


def find_handle(nv: Any, uuid: str) -> tuple[Any, str | None]:
    """The NVML handle of the GPU whose UUID is `uuid` (normalised); (None, why) if none is."""
    seen = []
    for i in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(i)
        found = normalise_uuid(nv.nvmlDeviceGetUUID(handle))
        if found == uuid:
            return handle, None
        seen.append(found)
    return None, f"no NVML device has the torch device's UUID {uuid} (NVML has {seen})"


def _gpu_info(nv: Any, index: int, driver: str) -> dict[str, Any]:
    """One GPU's identity, power limit and clocks; a reading NVML refuses is None."""
    handle = nv.nvmlDeviceGetHandleByIndex(index)
    readers = {
        "uuid": lambda: normalise_uuid(nv.nvmlDeviceGetUUID(handle)),
        "power_limit_w": lambda: nv.nvmlDeviceGetPowerManagementLimit(handle) / 1000,
        "sm_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM),
        "max_sm_clock_mhz": lambda: nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM),
        "temperature_c": lambda: nv.nvmlDeviceGetTemperature(handle, 0),
    }
    info: dict[str, Any] = {"index": index, "driver": driver}
    for key, read in readers.items():
        try:
            info[key] = read()
        except Exception:  # NVMLError_NotSupported and the like: that reading is missing
            debug_trace(f"NVML reading {key}")
            info[key] = None
    return info


def gpu_inventory() -> list[dict[str, Any]] | str:
    """Every GPU's driver, UUID, power limit and clocks (the environment fingerprint's `nvml`);
    a string says why there are none."""
    nv, why = _load_pynvml()
    if nv is None:
        return str(why)
    try:
        driver = nv.nvmlSystemGetDriverVersion()
        return [_gpu_info(nv, i, driver) for i in range(nv.nvmlDeviceGetCount())]
    except Exception as exc:  # the driver went away between init and the count
        return f"NVML unavailable: {type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            nv.nvmlShutdown()


class Telemetry:
    """Samples of one GPU taken at window edges; `summary()` makes the result's figures."""

    def __init__(self, nv: Any = None, handle: Any = None, uuid: str | None = None,
                 reason: str | None = None) -> None:
        self.nv, self.handle, self.uuid, self.reason = nv, handle, uuid, reason
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def _read(self, key: str) -> Any:
        nv, h = self.nv, self.handle
        if key == "sm_clock_mhz":
            return nv.nvmlDeviceGetClockInfo(h, getattr(nv, "NVML_CLOCK_SM", _CLOCK_SM))
        if key == "mem_clock_mhz":
            return nv.nvmlDeviceGetClockInfo(h, getattr(nv, "NVML_CLOCK_MEM", _CLOCK_MEM))
        if key == "power_w":
            return nv.nvmlDeviceGetPowerUsage(h) / 1000.0  # milliwatts
        if key == "temperature_c":
            return nv.nvmlDeviceGetTemperature(h, getattr(nv, "NVML_TEMPERATURE_GPU",
                                                          _TEMPERATURE_GPU))
        getter = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or nv.nvmlDeviceGetCurrentClocksThrottleReasons)
        return int(getter(h))

    def sample(self) -> None:
        """One reading of every field; a field NVML refuses is left out, never raised."""
        if self.handle is None:
            return
        row: dict[str, Any] = {}
        for key in (*FIELDS, "throttle_mask"):
            try:
                row[key] = self._read(key)
            except Exception as exc:  # NVMLError_NotSupported on some boards, for one field
                if len(self.errors) < 5:
                    self.errors.append(f"{key}: {type(exc).__name__}")
        self.samples.append(row)

    def summary(self) -> GpuTelemetry:
        out = GpuTelemetry(available=self.handle is not None, reason=self.reason,
                           uuid=self.uuid, samples=len(self.samples))
        for key in FIELDS:
            values = [r[key] for r in self.samples if r.get(key) is not None]
            out[key] = ({"min": min(values), "median": statistics.median(values),
                         "max": max(values)} if values else None)
        mask = 0
        for r in self.samples:
            mask |= r.get("throttle_mask", 0)
        reasons = decode_throttle(mask) if self.handle is not None else None
        out["throttle_reasons"] = reasons
        out["throttled"] = (sorted(set(reasons) & (THERMAL | POWER))
                            if reasons is not None else None)
        if self.errors:
            out["errors"] = list(self.errors)
        return out


def open_telemetry(device: torch.device) -> Telemetry:
    """Telemetry of the GPU behind `device`; on a CPU, or without NVML, one that says why."""
    if device.type != "cuda":
        return Telemetry(reason="not a CUDA device")
    nv, why = _load_pynvml()
    if nv is None:
        return Telemetry(reason=why)
    try:
        uuid = torch_uuid(device)
        handle, why = find_handle(nv, uuid)
    except Exception as exc:  # a driver or binding error must never stop a run
        return Telemetry(reason=f"NVML device lookup failed: {type(exc).__name__}: {exc}")
    return Telemetry(nv, handle, uuid, why)


def throttle_warning(summary: Any) -> str | None:
    """One line for a run's summary when its GPU throttled for heat or power, else None."""
    tele = (summary or {}).get("gpu_telemetry") or {}
    throttled = tele.get("throttled")
    if not throttled:
        return None
    kinds = [k for k, group in (("thermal", THERMAL), ("power", POWER))
             if set(throttled) & group]
    sm = tele.get("sm_clock_mhz") or {}
    clocks = f", SM clock {sm['min']:.0f}-{sm['max']:.0f} MHz" if sm else ""
    return (f"WARNING: the GPU throttled ({'/'.join(kinds)}: {', '.join(throttled)}{clocks}); "
            "its figures are below what it sustains when cool and under its power cap")
