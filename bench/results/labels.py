"""Device names as results show them: one label to group runs by, one slug for file names, and
the system names `--label DIR=NAME` gives the runs read from a path.

Kept apart from `bench.host.envinfo` (which reads the machine through torch) so that the readers -
compare, report, export - can label runs without importing torch.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.results.schema import ResultDoc

LABEL_HELP = ("name the runs read from DIR (a folder or file among the inputs) as system NAME,"
              " in place of their device label: two folders from one device become two systems;"
              " repeatable")


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


def add_label_option(parser: argparse.ArgumentParser) -> None:
    """`--label DIR=NAME`, the same on every reader verb (compare, report, export)."""
    parser.add_argument("--label", action="append", default=[], metavar="DIR=NAME",
                        help=LABEL_HELP)


def parse_labels(specs: Sequence[str]) -> dict[Path, str]:
    """`--label` values -> {resolved path: name}. Bad syntax, a missing path, or two names for
    one path is a one-line BenchError."""
    out: dict[Path, str] = {}
    for spec in specs:
        path, sep, name = spec.rpartition("=")
        path, name = path.strip(), name.strip()
        if not sep or not path or not name:
            raise BenchError(f"--label {spec!r}: expected DIR=NAME, e.g. results/a100=A100-fast")
        where = Path(path)
        if not where.exists():
            raise BenchError(f"--label {spec!r}: {path}: no such file or folder")
        key = where.resolve()
        if out.get(key, name) != name:
            raise BenchError(f"--label {path}: two names given ({out[key]!r} and {name!r})")
        out[key] = name
    return out


def _label_of(file: Path, labels: Mapping[Path, str]) -> Path | None:
    """The most specific labelled path that is `file` or one of its folders."""
    hits = [p for p in labels if p == file or p in file.parents]
    return max(hits, key=lambda p: len(p.parts)) if hits else None


def apply_labels(docs: Sequence[ResultDoc], labels: Mapping[Path, str]) -> list[ResultDoc]:
    """The docs, those read from a labelled path tagged `_label` (which `rows.flatten` uses as
    the device label). A label that names no loaded run is an error: a typo would otherwise
    leave two systems silently merged."""
    if not labels:
        return list(docs)
    used: set[Path] = set()
    out: list[ResultDoc] = []
    for doc in docs:
        hit = _label_of(Path(str(doc.get("_file") or doc.get("_path", ""))).resolve(), labels)
        if hit is None:
            out.append(doc)
            continue
        used.add(hit)
        out.append({**doc, "_label": labels[hit]})
    unused = [os.path.relpath(p) for p in labels if p not in used]
    if unused:
        raise BenchError(f"--label: no result was read from {', '.join(unused)}")
    return out


def labelled(docs: Sequence[ResultDoc], specs: Sequence[str]) -> list[ResultDoc]:
    """`apply_labels(docs, parse_labels(specs))`: what each reader verb calls."""
    return apply_labels(docs, parse_labels(specs))
