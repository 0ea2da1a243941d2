"""The result schema (one JSON file per run), atomic writing, and loading into pandas.

A result is never half-written: it goes to a temporary file in the same folder, is flushed and
fsync'ed, then renamed over the final name (rename is atomic on POSIX file systems).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BenchError

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "nan", "interrupted", "error")

# The configuration fields that make two runs comparable (used by compare and the suite table).
CONFIG_KEYS = (
    "model", "dataset", "loader", "precision", "compile", "channels_last", "batch_size", "recipe",
    "world_size",
)


@dataclass
class EpochRow:
    """One training epoch (or the partial epoch a --max-steps run ends in)."""

    epoch: int
    steps: int
    images: int
    train_time_s: float
    images_per_s: float
    train_loss: float
    cumulative_train_time_s: float
    timed: bool  # False for the warm-up epoch, kept out of steady-state figures
    test_loss: float | None = None
    test_acc: float | None = None
    eval_time_s: float | None = None


@dataclass
class Result:
    config: dict[str, Any]
    env: dict[str, Any]
    status: str = "ok"
    message: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    loader: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    timed_window: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)  # every evaluation, with its step
    windows: list[dict[str, Any]] = field(default_factory=list)  # timed windows, warm-up first
    suite: str | None = None
    repeat: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    def file_name(self) -> str:
        c = self.config
        stamp = self.created.replace(":", "").replace("-", "").replace("+0000", "Z")[:15]
        parts = [stamp, c.get("model"), c.get("dataset"), c.get("loader"), c.get("precision"),
                 f"r{self.repeat}", self.run_id]
        return "-".join(str(p) for p in parts if p is not None) + ".json"


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as null (a NaN loss is recorded by status 'nan')."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call write(tmp_name) on a temporary file beside `path`, then rename it over `path`:
    readers see the old content or all of the new, never a part (rename is atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; our outputs are for sharing
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def write_result(result: Result, out_dir: str | os.PathLike[str]) -> Path:
    """Write one result file atomically and return its path."""
    if result.status not in STATUSES:
        raise ValueError(f"bad status {result.status!r}")
    path = Path(out_dir) / result.file_name()
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=False) + "\n")
    return path


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one result file; problems become a one-line BenchError."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BenchError(f"{p}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{p}: not a readable result file ({type(exc).__name__}: {exc})") from None
    return validate_doc(doc, str(p))


def validate_doc(doc: Any, where: str) -> dict[str, Any]:
    """Check a parsed document is a result this version understands; tag it with `where`."""
    if not isinstance(doc, dict) or "schema_version" not in doc or "config" not in doc:
        raise BenchError(f"{where}: not a bench result file (no schema_version/config)")
    version = doc["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BenchError(
            f"{where}: result schema {version} is newer than this tool understands "
            f"({SCHEMA_VERSION}); upgrade bench"
        )
    return {**doc, "_path": where}


def expand_paths(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to their *.json files (recursively), sorted."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise BenchError(f"{p}: no such file or folder")
    return out


def flatten(doc: dict[str, Any]) -> dict[str, Any]:
    """One flat row per run: config, summary and a few environment columns."""
    from .envinfo import device_label

    row: dict[str, Any] = {
        "run_id": doc.get("run_id"),
        "created": doc.get("created"),
        "status": doc.get("status"),
        "message": doc.get("message"),
        "suite": doc.get("suite"),
        "repeat": doc.get("repeat", 0),
        "path": doc.get("_path"),
    }
    cfg = doc.get("config", {})
    for k, v in cfg.items():
        row[k] = v
    for k, v in (doc.get("summary") or {}).items():
        row[k] = v
    env = doc.get("env", {})
    row["device_label"] = device_label(env, str(cfg.get("device", "cpu")).split(":")[0])
    row["host"] = env.get("host")
    row["git_commit"] = env.get("git_commit")
    row["real_data"] = (doc.get("data") or {}).get("real")
    return row


def load_results(items: Iterable[str | os.PathLike[str]]):  # -> pandas.DataFrame
    """Load any set of result files/folders into one DataFrame (one row per run)."""
    import pandas as pd

    docs = [read_result(p) for p in expand_paths(items)]
    return pd.DataFrame([flatten(d) for d in docs])


def load_epochs(items: Iterable[str | os.PathLike[str]]):  # -> pandas.DataFrame
    """Per-epoch rows of every run, with the run's configuration columns attached."""
    import pandas as pd

    rows = []
    for d in (read_result(p) for p in expand_paths(items)):
        base = flatten(d)
        for e in d.get("epochs", []):
            rows.append({**{k: base[k] for k in ("run_id", "device_label", *CONFIG_KEYS)
                            if k in base}, **e})
    return pd.DataFrame(rows)
