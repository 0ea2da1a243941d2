"""bench.host.nvml with a fake NVML: UUID matching (CUDA_VISIBLE_DEVICES reorders indices), the
per-run statistics, throttle-reason decoding and the summary-line warning."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch

from bench.cli import _run_line
from bench.host import nvml
from bench.measure.engine import TrainState, Window
from bench.measure.summary import summarise
from bench.results import Result

UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-1111-1111-1111-111111111111",
         "GPU-cccccccc-2222-2222-2222-222222222222"]


def fake_pynvml(readings: dict[int, list[dict[str, Any]]], fail_init: bool = False
                ) -> types.ModuleType:
    """A pynvml stand-in: three GPUs; readings[i] is consumed one dict per sample of GPU i."""
    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM, nv.NVML_TEMPERATURE_GPU = 1, 2, 0
    calls = {i: 0 for i in readings}

    def init() -> None:
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def current(h: int) -> dict[str, Any]:
        rows = readings[h]
        return rows[min(calls[h], len(rows) - 1)]

    def reasons(h: int) -> int:  # the last field read per sample: advance to the next reading
        value = current(h)["mask"]
        calls[h] += 1
        return value

    nv.nvmlInit = init
    nv.nvmlDeviceGetCount = lambda: len(UUIDS)
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetUUID = lambda h: UUIDS[h].encode()  # older bindings return bytes
    nv.nvmlDeviceGetClockInfo = lambda h, kind: current(h)["sm" if kind == 1 else "mem"]
    nv.nvmlDeviceGetPowerUsage = lambda h: current(h)["mw"]
    nv.nvmlDeviceGetTemperature = lambda h, kind: current(h)["temp"]
    nv.nvmlDeviceGetCurrentClocksThrottleReasons = reasons
    return nv


def _reading(sm: int, mask: int = 0, temp: int = 60) -> dict[str, Any]:
    return {"sm": sm, "mem": 2619, "mw": 350_000, "temp": temp, "mask": mask}


@pytest.fixture
def cuda_index(monkeypatch: pytest.MonkeyPatch):
    """Pretend torch sees GPUs whose UUIDs are, in torch's order, NVML's GPUs `order`."""

    def install(order: list[int]) -> None:
        props = [types.SimpleNamespace(uuid=UUIDS[i][4:]) for i in order]  # torch: no "GPU-"
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    return install


def test_the_gpu_is_matched_by_uuid_not_index(monkeypatch, cuda_index) -> None:
    # CUDA_VISIBLE_DEVICES=2,0: torch's cuda:0 is NVML's device 2, cuda:1 is NVML's 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    cuda_index([2, 0])
    readings = {0: [_reading(1000)], 1: [_reading(1500)], 2: [_reading(1980)]}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(readings))
    t0 = nvml.open_telemetry(torch.device("cuda:0"))
    t1 = nvml.open_telemetry(torch.device("cuda", 1))
    assert (t0.handle, t1.handle) == (2, 0)
    t0.sample()
    s = t0.summary()
    assert s["available"] and s["uuid"] == UUIDS[2][4:] and s["sm_clock_mhz"]["max"] == 1980


def test_an_unmatched_uuid_gives_null_fields_with_the_reason(monkeypatch, cuda_index) -> None:
    cuda_index([0])
    nv = fake_pynvml({0: [_reading(1)], 1: [_reading(1)], 2: [_reading(1)]})
    nv.nvmlDeviceGetUUID = lambda h: f"GPU-other-{h}"
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    t = nvml.open_telemetry(torch.device("cuda:0"))
    t.sample()
    s = t.summary()
    assert not s["available"] and s["sm_clock_mhz"] is None and s["throttled"] is None
    assert "no NVML device has the torch device's UUID aaaaaaaa" in s["reason"]


def test_without_pynvml_or_a_driver_the_fields_are_null(monkeypatch, cuda_index) -> None:
    cuda_index([0])
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    s = nvml.open_telemetry(torch.device("cuda:0")).summary()
    assert s["reason"].startswith("pynvml not installed") and s["power_w"] is None
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml({0: [_reading(1)]}, fail_init=True))
    s = nvml.open_telemetry(torch.device("cuda:0")).summary()
    assert "NVML unavailable" in s["reason"] and "Not Found" in s["reason"]
    assert nvml.open_telemetry(torch.device("cpu")).summary()["reason"] == "not a CUDA device"


def test_statistics_and_throttle_reasons(monkeypatch, cuda_index) -> None:
    cuda_index([0])
    rows = [_reading(1980), _reading(1755, mask=0x1), _reading(1410, mask=0x20 | 0x4, temp=88),
            _reading(1600, mask=0x1000)]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml({0: rows}))
    t = nvml.open_telemetry(torch.device("cuda:0"))
    for _ in rows:
        t.sample()
    s = t.summary()
    assert s["samples"] == 4
    assert s["sm_clock_mhz"] == {"min": 1410, "median": (1600 + 1755) / 2, "max": 1980}
    assert s["temperature_c"]["max"] == 88 and s["power_w"]["median"] == 350.0
    assert s["throttle_reasons"] == ["gpu_idle", "sw_power_cap", "sw_thermal_slowdown",
                                     "unknown_0x1000"]
    assert s["throttled"] == ["sw_power_cap", "sw_thermal_slowdown"]


def test_decode_throttle() -> None:
    assert nvml.decode_throttle(0) == []
    assert nvml.decode_throttle(0x40 | 0x80) == ["hw_thermal_slowdown", "hw_power_brake_slowdown"]


def test_a_field_nvml_refuses_is_left_out(monkeypatch, cuda_index) -> None:
    cuda_index([0])
    nv = fake_pynvml({0: [_reading(1500)]})

    def not_supported(h: int) -> int:
        raise RuntimeError("Not Supported")

    nv.nvmlDeviceGetPowerUsage = not_supported
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    t = nvml.open_telemetry(torch.device("cuda:0"))
    t.sample()
    s = t.summary()
    assert s["power_w"] is None and s["sm_clock_mhz"]["min"] == 1500
    assert s["errors"] == ["power_w: RuntimeError"]


class _FixedTelemetry:
    def __init__(self, throttled: list[str]) -> None:
        self.throttled, self.sampled = throttled, 0

    def sample(self) -> None:
        self.sampled += 1

    def summary(self) -> dict[str, Any]:
        return {"available": True, "throttled": self.throttled,
                "sm_clock_mhz": {"min": 1410.0, "median": 1700.0, "max": 1980.0}}


@pytest.mark.parametrize("throttled,warned", [(["hw_thermal_slowdown"], "thermal"),
                                              (["sw_power_cap"], "power"), ([], None)])
def test_the_run_line_warns_when_the_gpu_throttled(throttled, warned) -> None:
    state = TrainState(windows=[Window(0, 2, 64, 0.1, False)], steps=2, train_time_s=0.1,
                       telemetry=_FixedTelemetry(throttled))
    s = summarise(state, 64, None, 10, None, torch.device("cpu"), "fp32")
    assert s["gpu_telemetry"]["throttled"] == throttled
    result = Result(config={"model": "fc", "dataset": "mnist", "loader": "torch",
                            "precision": "bf16", "batch_size": 32}, env={}, summary=s)
    line = _run_line(result, None)
    if warned is None:
        assert "WARNING" not in line
    else:
        assert f"WARNING: the GPU throttled ({warned}: {throttled[0]}" in line
        assert "SM clock 1410-1980 MHz" in line


@pytest.mark.parametrize("measure", ["train", "throughput"])
def test_the_engine_samples_at_window_edges(tiny_data, tmp_path, monkeypatch, measure) -> None:
    import bench.measure.engine
    import bench.measure.throughput
    from bench.measure.runner import RunConfig, run

    made: list[_FixedTelemetry] = []

    def fake_open(device: torch.device) -> _FixedTelemetry:
        made.append(_FixedTelemetry(["hw_slowdown"]))
        return made[-1]

    monkeypatch.setattr(bench.measure.engine, "open_telemetry", fake_open)
    monkeypatch.setattr(bench.measure.throughput, "open_telemetry", fake_open)
    result, _ = run(RunConfig(model="fc", dataset="mnist", device="cpu", max_steps=6,
                              batch_size=32, data_dir=str(tiny_data[0]), window_steps=2,
                              warmup_steps=2, out=str(tmp_path), quiet=True, write=False,
                              measure=measure, budget_s=0.05, evaluate=measure == "train"))
    assert result.status == "ok" and len(made) == 1
    timed = [w for w in result.windows if not w["warmup"]]  # the warm-up pass is not sampled
    assert made[0].sampled == len(timed) > 0
    assert result.summary["gpu_telemetry"]["throttled"] == ["hw_slowdown"]


def test_on_a_cpu_the_telemetry_says_why_it_is_empty(tiny_data, tmp_path) -> None:
    from bench.measure.runner import RunConfig, run

    result, _ = run(RunConfig(model="fc", dataset="mnist", device="cpu", max_steps=2,
                              batch_size=32, data_dir=str(tiny_data[0]), out=str(tmp_path),
                              quiet=True, write=False))
    tele = result.summary["gpu_telemetry"]
    assert result.status == "ok" and tele["available"] is False
    assert tele["reason"] == "not a CUDA device" and tele["samples"] == 0


def test_uuid_forms_compare_equal() -> None:
    import uuid

    plain = "aaaaaaaa-0000-0000-0000-000000000000"
    as_bytes = types.SimpleNamespace(bytes=uuid.UUID(plain).bytes)
    assert {nvml.normalise_uuid(v) for v in (f"GPU-{plain.upper()}", plain.encode(), plain,
                                             as_bytes)} == {plain}


def test_the_environment_lists_every_gpu_through_the_one_reader(monkeypatch) -> None:
    """The fingerprint's inventory (`nvml.gpu_inventory`): each GPU by index with its UUID; a
    reading NVML refuses is None, never a crash; no NVML is a reason, not a list."""
    nv = fake_pynvml({i: [_reading(1400 + i)] for i in range(3)})
    nv.nvmlSystemGetDriverVersion = lambda: "580.95"
    nv.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    nv.nvmlShutdown = lambda: None  # no max clock: that reading is refused

    monkeypatch.setitem(sys.modules, "pynvml", nv)
    gpus = nvml.gpu_inventory()
    assert [g["uuid"] for g in gpus] == [u[4:] for u in UUIDS]  # normalised as torch has them
    assert gpus[2]["sm_clock_mhz"] == 1402
    assert gpus[0]["power_limit_w"] == 700 and gpus[0]["max_sm_clock_mhz"] is None
    assert gpus[1]["driver"] == "580.95"
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml({}, fail_init=True))
    assert "NVML unavailable" in nvml.gpu_inventory()
