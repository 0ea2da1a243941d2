"""Result files on disk: atomic writes, reading and validating, finding them in folders, and
rebuilding the newest run of a suite.

A result is never half-written: it goes to a temporary file in the same folder, is flushed and
fsync'ed, then renamed over the final name (rename is atomic on POSIX file systems). The same
helpers write every other output (tables, figures, exports), for the same reason.

A folder is read recursively except its `baselines/` and `reference/` subfolders: a recorded
baseline (a file holding a JSON list of result docs, written by `bench ci`) copies earlier runs,
and the committed reference runs (`results/reference/`) are someone else's; counted with the
user's own runs they would pose as repeats. Name a baseline file, the folder itself or a path
inside it to read it.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..defaults import BASELINES_SUBDIR
from ..defaults import RESULTS_DIR as DEFAULT_RESULTS_DIR
from ..errors import BenchError
from ..fsutil import writable_dir
from .frames import typed
from .rows import Key, docs_epochs, docs_frame, run_key
from .schema import SCHEMA_VERSION, STATUSES, Result, ResultDoc, upgrade

StrPath = str | os.PathLike[str]

REFERENCE_SUBDIR = "reference"  # results/reference/: committed reference runs (docs/perf.md)
# subfolders a folder's expansion leaves out (read only when named themselves)
SKIPPED_SUBDIRS = frozenset({BASELINES_SUBDIR, REFERENCE_SUBDIR})


# --------------------------------------------------------------------------- writing


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


STALE_TMP_S = 60.0  # a temp file this old has no live writer (a result is written in ms)


def prepare_out_dir(out: StrPath) -> list[str]:
    """Before any expensive work: the output folder exists and takes a file (one is created,
    written and removed), and temp files a killed writer left are recovered or removed.
    Returns one line per file it recovered or removed."""
    return recover_stale_tmp(writable_dir(out, "--out folder"))


def recover_stale_tmp(folder: Path) -> list[str]:
    """Result temp files (`.NAME.json.XXXX.tmp`) older than STALE_TMP_S: a complete one is
    renamed to its final name (the run had finished when it was killed), others removed."""
    notes = []
    for tmp in sorted(folder.glob(".*.json.*.tmp")):
        try:
            if time.time() - tmp.stat().st_mtime < STALE_TMP_S:
                continue
            final = folder / tmp.name[1:].rsplit(".", 2)[0]
            try:
                validate_doc(json.loads(tmp.read_text()), str(tmp))
                complete = True
            except (ValueError, UnicodeDecodeError, BenchError):
                complete = False
            if complete and not final.exists():
                os.replace(tmp, final)
                notes.append(f"recovered {final} (written by a run killed before its rename)")
            else:
                tmp.unlink()
                notes.append(f"removed {tmp} (an unfinished file of a killed writer)")
        except OSError:
            continue  # another process took care of it
    return notes


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as PNG, written atomically: readers never see half a picture."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"),
                 suffix=".png")


def write_result(result: Result, out_dir: StrPath) -> Path:
    """Write one result file atomically and return its path."""
    if result.status not in STATUSES:
        raise ValueError(f"bad status {result.status!r}")
    path = Path(out_dir) / result.file_name()
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=False) + "\n")
    return path


# --------------------------------------------------------------------------- reading


def validate_doc(doc: Any, where: str) -> ResultDoc:
    """Check a parsed document is a result this version understands; tag it with `where`."""
    if not isinstance(doc, dict) or "schema_version" not in doc or "config" not in doc:
        raise BenchError(f"{where}: not a bench result file (no schema_version/config)")
    version = doc["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise BenchError(f"{where}: schema_version must be a whole number, not {version!r}")
    if version > SCHEMA_VERSION:
        raise BenchError(
            f"{where}: result schema {version} is newer than this tool understands "
            f"({SCHEMA_VERSION}); upgrade bench"
        )
    for key, kind in _FIELD_TYPES.items():
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise BenchError(f"{where}: '{key}' is a {type(doc[key]).__name__}, expected a "
                             f"{kind.__name__} (a damaged or hand-edited result file?)")
    return upgrade({**doc, "_path": where})


# The sections readers index into: a wrong type there would be a traceback deep in a reader.
_FIELD_TYPES: dict[str, type] = {"config": dict, "env": dict, "summary": dict, "data": dict,
                                 "recipe": dict, "epochs": list, "evals": list, "windows": list}


def read_result(path: StrPath) -> ResultDoc:
    """Read and validate one result file; problems become a one-line BenchError."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BenchError(f"{p}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{p}: not a readable result file ({type(exc).__name__}: {exc})") from None
    return validate_doc(doc, str(p))


BASELINE_KIND = "bench-baseline"
BASELINE_VERSION = 2  # 1: a bare JSON list of result docs; 2: a dict with runs + calibration


def _baseline_runs(doc: dict, p: Path) -> list[ResultDoc]:
    version = doc.get("version")
    if not isinstance(version, int) or version > BASELINE_VERSION:
        raise BenchError(f"{p}: baseline format {version!r} is newer than this tool understands "
                         f"({BASELINE_VERSION}); upgrade bench")
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise BenchError(f"{p}: baseline file without a list of runs")
    return [validate_doc(d, f"{p}#{i}") for i, d in enumerate(runs)]


def read_docs(path: StrPath) -> list[ResultDoc]:
    """Docs of one file: a single result, or a baseline file (a list of results, or a
    `bench-baseline` document holding them with its calibration).

    Each doc is tagged with `_file`, the file it came from (`_path` adds `#i` inside a baseline
    file), so that `--label DIR=NAME` can find the docs read from DIR. Anything unreadable is
    handed to `read_result`, which owns the one-line error messages.
    """
    p = Path(path)
    return [{**d, "_file": str(p)} for d in _file_docs(p)]


def _file_docs(p: Path) -> list[ResultDoc]:
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return [read_result(p)]
    if isinstance(doc, list):
        return [validate_doc(d, f"{p}#{i}") for i, d in enumerate(doc)]
    if isinstance(doc, dict) and doc.get("kind") == BASELINE_KIND:
        return _baseline_runs(doc, p)
    return [read_result(p)]


def read_baseline(path: StrPath) -> tuple[list[ResultDoc], dict[str, Any] | None]:
    """A baseline file's runs and its calibration (None when it has none, or is a bare list)."""
    p = Path(path)
    docs = read_docs(p)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return docs, None
    calibration = doc.get("calibration") if isinstance(doc, dict) else None
    return docs, calibration if isinstance(calibration, dict) else None


def write_baseline(path: StrPath, docs: Sequence[ResultDoc], device: str,
                   calibration: dict[str, Any] | None = None) -> None:
    """Write (replace) a baseline atomically: the runs, and the calibration when measured."""
    clean = [{k: v for k, v in d.items() if not k.startswith("_")} for d in docs]
    doc = {"kind": BASELINE_KIND, "version": BASELINE_VERSION, "device": device,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "calibration": calibration, "runs": clean}
    atomic_write_text(Path(path), json.dumps(doc, indent=1) + "\n")


def expand_paths(items: Iterable[StrPath]) -> list[Path]:
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


def result_files(item: StrPath) -> list[Path]:
    """A file as given; a folder's *.json files, recursively, except under `baselines/` and
    `reference/` below it (SKIPPED_SUBDIRS; naming such a folder reads it)."""
    p = Path(item)
    files = expand_paths([p])
    if not p.is_dir():
        return files
    return [f for f in files if not SKIPPED_SUBDIRS & set(f.relative_to(p).parts[:-1])]


def _items(items: StrPath | Iterable[StrPath]) -> list[Path]:
    """One path or many; a pattern (`results/*/`, `runs/**/*.json`) that names no existing path
    is expanded as a glob (sorted; `**` recurses). A pattern that matches nothing is an error."""
    given = [items] if isinstance(items, (str, os.PathLike)) else list(items)
    out: list[Path] = []
    for item in given:
        text = os.fspath(item)
        if Path(text).exists() or not any(c in text for c in "*?["):
            out.append(Path(text))
            continue
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise BenchError(f"{text}: no file or folder matches")
        out.extend(map(Path, matches))
    return out


def load_docs(items: StrPath | Iterable[StrPath]) -> list[ResultDoc]:
    """All docs of a path, paths or glob patterns (folders recursively, without `baselines/` and
    `reference/`), in path order."""
    return [d for item in _items(items) for p in result_files(item) for d in read_docs(p)]


def load_results(items: StrPath | Iterable[StrPath]):  # -> pandas.DataFrame
    """Result files/folders (a path, a list of them or a glob) as one DataFrame, one row per run
    (`rows.flatten`): numeric columns as float with NaN, `created` as a UTC datetime."""
    return typed(docs_frame(load_docs(items)))


def load_epochs(items: StrPath | Iterable[StrPath]):  # -> pandas.DataFrame
    """Per-epoch rows of every run, with the run's identity and configuration columns (typed
    like `load_results`)."""
    return typed(docs_epochs(load_docs(items)))


# --------------------------------------------------------------------------- suite batches


def _created(doc: ResultDoc) -> _dt.datetime:
    """Parse `created`; unparseable stamps sort first so they never count as newest."""
    try:
        t = _dt.datetime.fromisoformat(str(doc.get("created")))
    except ValueError:
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def newest_suite_batch(docs: Sequence[ResultDoc], suite: str) -> list[ResultDoc]:
    """The newest run of `suite` among `docs`.

    Result files carry no batch id, so a batch is rebuilt from the newest result of the suite:
    walking back in `created` order through results in the same folder from the same host, it
    takes each (configuration, repeat) once and stops at the first one seen again - that is
    where the previous invocation of the suite ends.
    """
    runs = sorted((d for d in docs if d.get("suite") == suite), key=_created, reverse=True)
    if not runs:
        return []
    folder = Path(str(runs[0].get("_path"))).parent
    host = (runs[0].get("env") or {}).get("host")
    batch: list[ResultDoc] = []
    seen: set[tuple[Key, Any]] = set()
    for d in runs:
        if Path(str(d.get("_path"))).parent != folder or (d.get("env") or {}).get("host") != host:
            continue
        k = (run_key(d.get("config") or {}), d.get("repeat"))
        if k in seen:
            break
        seen.add(k)
        batch.append(d)
    return batch


def _scan_results(results_dir: Path) -> list[ResultDoc]:
    """Every readable result under results_dir except the recorded baselines (copies)."""
    docs: list[ResultDoc] = []
    bad: list[str] = []
    for p in result_files(results_dir) if results_dir.is_dir() else []:
        try:
            docs.extend(read_docs(p))
        except BenchError as exc:
            bad.append(str(exc))
    if bad:
        print(f"bench: warning: skipped {len(bad)} unreadable file(s) under {results_dir}"
              f" (first: {bad[0]})", file=sys.stderr)
    return docs


def load_side(item: str, side: str, results_dir: StrPath = DEFAULT_RESULTS_DIR
              ) -> list[ResultDoc]:
    """Docs of one side of a comparison: a path, or else a suite name; never empty.

    A suite name means the newest run of that suite under `results_dir` (`newest_suite_batch`).
    """
    p = Path(item)
    if p.exists():
        docs = load_docs([p])
        if not docs:
            raise BenchError(f"{side} {item}: no result files in it")
        return docs
    if "/" in item or item.endswith(".json"):
        raise BenchError(f"{side} {item}: no such file or folder")
    docs = newest_suite_batch(_scan_results(Path(results_dir)), item)
    if not docs:
        raise BenchError(
            f"{side} {item!r}: no such file or folder, and no run of a suite of that name"
            f" under {results_dir}/"
        )
    return docs
