"""What a set of runs was measured with - code commit, dates, torch and CUDA versions, device -
read from the environment fingerprints the runs stored (`bench.host.envinfo.fingerprint`).

A comparison header shows it for each side: a ratio between two sides means little until one
knows whether the code, torch or the driver's CUDA changed along with the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.results.labels import device_label
from bench.results.schema import ResultDoc


@dataclass
class Provenance:
    """The distinct values of each field over the runs, sorted (dates: first and last day)."""

    runs: int
    systems: list[str] = field(default_factory=list)  # what runs are grouped by (--label names)
    devices: list[str] = field(default_factory=list)  # the devices themselves
    commits: list[str] = field(default_factory=list)  # short; '-dirty': uncommitted changes
    dates: list[str] = field(default_factory=list)  # YYYY-MM-DD, first and last
    torch: list[str] = field(default_factory=list)
    cuda: list[str] = field(default_factory=list)  # torch's CUDA build

    def line(self) -> str:
        """'NVIDIA A100 | commit 1a2b3c4d5e | 2026-11-22 | torch 2.14.1 | CUDA 13.0 | 3 runs'."""
        who = _some(self.systems)
        if self.devices and self.devices != self.systems:
            who += f" ({_some(self.devices)})"
        return " | ".join([who, f"commit {_some(self.commits)}", "..".join(self.dates) or "?",
                           f"torch {_some(self.torch)}", f"CUDA {_some(self.cuda)}",
                           f"{self.runs} run{'s' if self.runs != 1 else ''}"])


def _some(values: Sequence[str], shown: int = 2) -> str:
    """'a', 'a, b', 'a, b (+3)', or '?' when there is none."""
    if not values:
        return "?"
    more = f" (+{len(values) - shown})" if len(values) > shown else ""
    return ", ".join(values[:shown]) + more


def _short_commit(commit: str) -> str:
    sha, dirty, _ = commit.partition("-dirty")
    return sha[:10] + ("-dirty" if dirty else "")


def _distinct(values: Iterable[object]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")})


def provenance(docs: Sequence[ResultDoc]) -> Provenance:
    """Summarise the environment fingerprints of `docs` (a `--label` name is the system)."""
    envs = [d.get("env") or {} for d in docs]
    devices = [device_label(e, str((d.get("config") or {}).get("device", "cpu")).split(":")[0])
               for d, e in zip(docs, envs, strict=True)]
    days = _distinct(str(d.get("created") or "")[:10] for d in docs)
    return Provenance(
        runs=len(docs),
        systems=_distinct(d.get("_label") or dev for d, dev in zip(docs, devices, strict=True)),
        devices=_distinct(devices),
        commits=_distinct(_short_commit(str(e["git_commit"])) for e in envs
                          if e.get("git_commit")),
        dates=[days[0], days[-1]] if len(days) > 1 else days,
        torch=_distinct((e.get("packages") or {}).get("torch") for e in envs),
        cuda=_distinct(e.get("cuda_version") for e in envs),
    )
