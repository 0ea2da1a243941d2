"""A fixed reference workload timed between a throughput run's windows: how fast the machine
was at that moment, so a stored baseline can be compared with a run taken hours later.

Why: `bench ci` against a stored baseline compares runs from different jobs. On a shared
machine the whole machine drifts between jobs (the gate campaign in docs/ci.md saw every model
5-9% slower in some jobs than in the calibration), and the calibration, taken inside one job,
never sees that drift: A/A jobs then raise false alarms. The probe's code does not depend on
the model, recipe or loader under test, so `images_per_s / probe_rate` (`images_per_probe`)
cancels the machine's speed and keeps a slowdown of the training code. The gate uses it
whenever both sides have one of the same version (`ci.metric.gate_metric`), stored-baseline and
`--against` alike; otherwise it gates on images/s.

What it does not cancel: a change that slows the whole process the same way (a global thread
setting, a slower torch build) slows the probe too. Change `PROBE_VERSION` whenever the
workload changes: probes of different versions are never compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.host.device import synchronize

PROBE_VERSION = 1
SHARE = 0.25  # probe seconds per second of timed training
MIN_WINDOW_S = 0.005  # shortest probe window worth timing
# (batch, channels, side) of the probe's activations: small on a CPU, enough to keep a GPU busy.
SHAPES = {"cpu": (4, 16, 32), "cuda": (256, 64, 32)}


def _workload(device: torch.device) -> tuple[torch.nn.Module, torch.Tensor]:
    """A conv, a matmul-heavy linear layer and elementwise work: the mix a training step has."""
    batch, channels, side = SHAPES.get(device.type, SHAPES["cpu"])
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(1), torch.nn.Linear(channels * side * side, 64))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    x = torch.randn(batch, channels, side, side, generator=gen)
    return net.to(device).eval(), x.to(device)


@dataclass
class ReferenceProbe:
    """Times the workload in windows of a fixed iteration count (device synced at each edge)."""

    device: torch.device
    iterations: int = 1  # per window, set by `calibrate`

    def __post_init__(self) -> None:
        self._net, self._x = _workload(self.device)

    def _run(self, n: int) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(n):
                self._net(self._x)
        synchronize(self.device)
        return time.perf_counter() - start

    def calibrate(self, window_s: float) -> None:
        """Warm the workload up and size a window to about `window_s` seconds (untimed)."""
        n, seconds = 1, self._run(1)
        while seconds < max(MIN_WINDOW_S, window_s / 4) and n < 1 << 20:
            n *= 2
            seconds = self._run(n)
        self.iterations = max(1, round(n * max(window_s, MIN_WINDOW_S) / max(seconds, 1e-9)))

    def window(self) -> float:
        """One timed window; its rate in iterations/s."""
        seconds = self._run(self.iterations)
        return self.iterations / seconds if seconds > 0 else float("nan")
