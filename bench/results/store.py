"""Result files on disk: atomic writes, reading and validating, finding them in folders, and
rebuilding the newest run of a suite.

A result is never half-written: it goes to a temporary file in the same folder, is flushed and
fsync'ed, then renamed over the final name (rename is atomic on POSIX file systems). The same
helpers write every other output (tables, figures, exports), for the same reason.

A folder is read recursively except its `baselines/`, `gates/` and `reference/` subfolders: a
baseline (`bench ci`) is a tag naming one job's runs, which lie beside it (older baselines held
copies of runs), `gates/` holds the verdicts of `bench ci` jobs (`bench.history.gates`), and the
committed reference runs (`results/reference/`) are someone else's; counted with the user's own
runs they would pose as repeats. Name a baseline file, the folder itself or a path inside it to
read it.

Every file is read through the guarded reader (`guarded.py`: regular files only, a size cap,
a depth limit, finite numbers), then checked here field by field (`doc_problem`). A file named
by the user that fails is one BenchError line; a file met while reading a folder is skipped with
one line on stderr, and the rest of the folder is read. A run present in several files of a
folder (a copy, a saved baseline) is read once, with one line.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.defaults import BASELINES_SUBDIR, GATES_SUBDIR
from bench.defaults import RESULTS_DIR as DEFAULT_RESULTS_DIR
from bench.errors import BenchError
from bench.fsutil import os_reason, warn, writable_dir
from bench.results.frames import typed
from bench.results.guarded import (
    MAX_RESULT_BYTES,
    date_problem,
    load_json,
    number_problem,
    parse_date,
    version_problem,
)
from bench.results.rows import Key, docs_epochs, docs_frame, run_key
from bench.results.schema import (
    SCHEMA_VERSION,
    STATUSES,
    EpochRow,
    EvalRow,
    Result,
    ResultDoc,
    RunConfigDoc,
    Summary,
    WindowRow,
    json_safe,
    number_fields,
    upgrade,
)
from bench.results.version import benchmark_of

StrPath = str | os.PathLike[str]

REFERENCE_SUBDIR = "reference"  # results/reference/: committed reference runs (docs/perf.md)
# subfolders a folder's expansion leaves out (read only when named themselves)
SKIPPED_SUBDIRS = frozenset({BASELINES_SUBDIR, GATES_SUBDIR, REFERENCE_SUBDIR})


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
            if time.time() - tmp.lstat().st_mtime < STALE_TMP_S:
                continue
            final = folder / tmp.name[1:].rsplit(".", 2)[0]
            try:  # through the guarded reader: a FIFO, a link out, a bomb is not "complete"
                validate_doc(load_json(tmp, within=folder), str(tmp))
                complete = True
            except BenchError:
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


def atomic_write_json(path: Path, doc: Any) -> None:
    """A document as strict JSON, written atomically: NaN is not JSON and our readers refuse
    it, so a non-finite figure is written as null."""
    atomic_write_text(path, json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as PNG, written atomically: readers never see half a picture."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"),
                 suffix=".png")


def write_result(result: Result, out_dir: StrPath) -> Path:
    """Write one result file atomically and return its path."""
    if result.status not in STATUSES:
        raise ValueError(f"bad status {result.status!r}")
    path = Path(out_dir) / result.file_name()
    doc = result.to_dict()
    doc["benchmark"] = benchmark_of(doc)  # what work it measured (results.version)
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


# --------------------------------------------------------------------------- reading


def validate_doc(doc: Any, where: str) -> ResultDoc:
    """Check a parsed document is a result this version understands; tag it with `where`."""
    if not isinstance(doc, dict) or "schema_version" not in doc or "config" not in doc:
        raise BenchError(f"{where}: not a bench result file (no schema_version/config)")
    problem = doc_problem(doc)
    if problem:
        raise BenchError(f"{where}: {problem}")
    return upgrade({**doc, "_path": where})


# The sections readers index into: a wrong type there would be a traceback deep in a reader.
_FIELD_TYPES: dict[str, type] = {"config": dict, "env": dict, "summary": dict, "data": dict,
                                 "benchmark": dict,
                                 "recipe": dict, "epochs": list, "evals": list, "windows": list}
# Throughputs: a figure of 0 or below is no measurement (the gate divides by them).
POSITIVE_FIELDS = frozenset({"images_per_s", "images_per_s_min", "images_per_s_max",
                             "images_per_s_q1", "images_per_s_q3", "images_per_s_median",
                             "images_per_probe", "probe_rate"})


# where the numbers of a result are: its sections, and the rows of its lists
_NUMBERS: dict[str, frozenset[str]] = {"": number_fields(ResultDoc),
                                       "config": number_fields(RunConfigDoc),
                                       "summary": number_fields(Summary)}
_ROW_NUMBERS: dict[str, frozenset[str]] = {"epochs": number_fields(EpochRow),
                                           "evals": number_fields(EvalRow),
                                           "windows": number_fields(WindowRow)}


def _mapping_problem(prefix: str, values: dict[str, Any], fields: frozenset[str]) -> str | None:
    """The first number field of `values` that is not a (finite; positive) number."""
    for key, value in values.items():
        if key in fields:
            positive = prefix == "summary." and key in POSITIVE_FIELDS
            problem = number_problem(f"{prefix}{key}", value, positive)
            if problem:
                return problem
    return None


def _section_problem(doc: dict[str, Any]) -> str | None:
    """A section or list row of the wrong type (readers index into them)."""
    for key, kind in _FIELD_TYPES.items():
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            return (f"'{key}' is a {type(doc[key]).__name__}, expected a {kind.__name__} "
                    "(a damaged or hand-edited result file?)")
    for key in _ROW_NUMBERS:
        bad = next((i for i, row in enumerate(doc.get(key) or []) if not isinstance(row, dict)),
                   None)
        if bad is not None:
            return f"{key}[{bad}] is a {type(doc[key][bad]).__name__}, expected an object"
    if not isinstance(doc.get("run_id", ""), str):
        return f"run_id is a {type(doc['run_id']).__name__}, expected a string"
    return None


def _numbers_problem(doc: dict[str, Any]) -> str | None:
    """The first number field anywhere in the doc that is not a number, by its full name."""
    for section, fields in _NUMBERS.items():
        values = (doc.get(section) or {}) if section else doc
        problem = _mapping_problem(f"{section}." if section else "", values, fields)
        if problem:
            return problem
    for section, fields in _ROW_NUMBERS.items():
        for i, row in enumerate(doc.get(section) or []):
            problem = _mapping_problem(f"{section}[{i}].", row, fields)
            if problem:
                return problem
    return None


def doc_problem(doc: dict[str, Any]) -> str | None:
    """Why a parsed result cannot be read (None: it can): the first field of a wrong type or
    out of range, by name. A string "400" where a number belongs is refused, not read as
    missing; a missing or unparseable `created` is refused, never taken as "now"."""
    return (version_problem("schema_version", doc["schema_version"], SCHEMA_VERSION, "result")
            or _section_problem(doc) or date_problem("created", doc.get("created"))
            or _numbers_problem(doc))


def _load(p: Path, within: Path | None = None) -> Any:
    """A file's JSON through the guarded reader; every problem one BenchError line."""
    try:
        return load_json(p, "result file", MAX_RESULT_BYTES, within)
    except FileNotFoundError:
        raise BenchError(f"{p}: no such result file") from None


def read_result(path: StrPath) -> ResultDoc:
    """Read and validate one result file; problems become a one-line BenchError."""
    p = Path(path)
    return validate_doc(_load(p), str(p))


BASELINE_KIND = "bench-baseline"
# 1: a bare JSON list of result docs; 2: a dict with copies of the runs and the calibration;
# 3: a tag: the ids of one batch's runs, kept as result files beside it, and the calibration
BASELINE_VERSION = 3
BASELINE_RUNS_SUFFIX = ".runs"


def baseline_runs_dir(path: StrPath) -> Path:
    """Where a baseline's runs lie: the folder beside the tag named after it
    (`baselines/nvidia-a100.json` -> `baselines/nvidia-a100.runs/`; the suffix keeps a tag
    named like a folder of the user's, `results.json`, from taking that folder over)."""
    p = Path(path)
    return p.parent / f"{p.stem}{BASELINE_RUNS_SUFFIX}"


def _tagged_runs(doc: dict, p: Path) -> list[ResultDoc]:
    """The runs a version-3 baseline names, from its runs folder; every one must be there."""
    ids = doc.get("run_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BenchError(f"{p}: baseline without its list of run ids")
    folder = baseline_runs_dir(p)
    found = {d.get("run_id"): d for d in folder_docs(folder)} if folder.is_dir() else {}
    ids = list(dict.fromkeys(ids))  # a run named twice is still one run, not two repeats
    missing = [i for i in ids if i not in found]
    if missing:
        raise BenchError(f"{p}: {len(missing)} of its {len(ids)} runs are not in {folder}/ "
                         f"(run {missing[0]}; moved or deleted?): record the baseline again")
    return [found[i] for i in ids]


def _baseline_runs(doc: dict, p: Path) -> list[ResultDoc]:
    problem = (version_problem("version", doc.get("version"), BASELINE_VERSION, "baseline")
               or ("created" in doc and date_problem("created", doc["created"])) or None)
    if problem:
        raise BenchError(f"{p}: {problem}")
    if doc["version"] >= 3:
        return _tagged_runs(doc, p)
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise BenchError(f"{p}: baseline file without a list of runs")
    return [validate_doc(d, f"{p}#{i}") for i, d in enumerate(runs)]


def _docs_of(doc: Any, p: Path) -> list[ResultDoc]:
    """The result docs of a parsed file: one result, a list of them, or a baseline's runs."""
    if isinstance(doc, list):
        docs = [validate_doc(d, f"{p}#{i}") for i, d in enumerate(doc)]
    elif isinstance(doc, dict) and doc.get("kind") == BASELINE_KIND:
        docs = _baseline_runs(doc, p)
    else:
        docs = [validate_doc(doc, str(p))]
    return [{**d, "_file": str(p)} for d in docs]


def read_docs(path: StrPath, within: StrPath | None = None) -> list[ResultDoc]:
    """Docs of one file: a single result, or a baseline (a tag naming the runs in its folder;
    older ones: a list of results, or a `bench-baseline` document holding copies of them).

    Each doc is tagged with `_file`, the file it came from (`_path` adds `#i` inside an old
    baseline file), so that `--label DIR=NAME` can find the docs read from DIR. `within`: the
    folder being read, which a symlink must not point out of (None: a file the user named).
    """
    p = Path(path)
    return _docs_of(_load(p, Path(within) if within is not None else None), p)


def read_baseline(path: StrPath) -> tuple[list[ResultDoc], dict[str, Any] | None]:
    """A baseline's runs and its calibration (None when it has none, or is a bare list)."""
    p = Path(path)
    doc = _load(p)
    calibration = doc.get("calibration") if isinstance(doc, dict) else None
    return _docs_of(doc, p), calibration if isinstance(calibration, dict) else None


def _move_into(folder: Path, docs: Sequence[ResultDoc]) -> None:
    """Each doc's result file moved (renamed, never copied) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        src = Path(str(d.get("_path")))
        if src.parent.resolve() != folder.resolve():
            shutil.move(src, folder / src.name)


def write_baseline(path: StrPath, docs: Sequence[ResultDoc], device: str,
                   calibration: dict[str, Any] | None = None) -> None:
    """Tag `docs` (read from their result files) as the baseline at `path`: their files move
    into its runs folder, the tag naming them and the calibration is written atomically, then
    the runs of the baseline it replaced leave the folder."""
    folder = baseline_runs_dir(path)
    try:
        _move_into(folder, docs)
    except OSError as exc:
        raise BenchError(f"cannot move the baseline's runs into {folder}/ ({os_reason(exc)}); "
                         "no baseline recorded") from None
    ids = [str(d.get("run_id")) for d in docs]
    doc = {"kind": BASELINE_KIND, "version": BASELINE_VERSION, "device": device,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "batch_ids": sorted({str(d.get("batch_id")) for d in docs}),
           "calibration": calibration, "run_ids": ids}
    atomic_write_json(Path(path), doc)  # a calibration's NaN is written as null
    for old in folder_docs(folder):
        if old.get("run_id") not in ids:
            Path(str(old["_path"])).unlink(missing_ok=True)


def expand_paths(items: Iterable[StrPath]) -> list[Path]:
    """Files as given, folders expanded to their *.json files (recursively), sorted."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():  # a sub-folder named *.json is walked by rglob, not read as a file
            out.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")
                              and not (q.is_dir() and not q.is_symlink())))
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


MAX_SKIP_LINES = 5  # lines naming skipped files per folder; the rest are counted


def _say_skipped(folder: Path, bad: Sequence[str]) -> None:
    for line in bad[:MAX_SKIP_LINES]:
        warn(f"warning: skipped {line}")
    if len(bad) > MAX_SKIP_LINES:
        warn(f"warning: skipped {len(bad) - MAX_SKIP_LINES} more unreadable file(s) "
             f"under {folder}")


def unique_runs(docs: Sequence[ResultDoc], where: StrPath) -> list[ResultDoc]:
    """Each run once, the first read: one run id in several files (a copy, a saved baseline)
    is one run, and counted again it would pose as a repeat (narrower bounds than the data
    supports). One line says how many were left out."""
    first: dict[str, ResultDoc] = {}
    copies: dict[str, int] = {}
    out: list[ResultDoc] = []
    for d in docs:
        rid = d.get("run_id")
        if isinstance(rid, str) and rid in first:
            copies[rid] = copies.get(rid, 1) + 1
            continue
        if isinstance(rid, str):
            first[rid] = d
        out.append(d)
    if copies:
        rid, n = next(iter(copies.items()))
        warn(f"warning: {where}: {len(copies)} run(s) found in more than one file (a copy, or "
             f"a saved baseline?), each read once; e.g. run {rid} is in {n} files, read from "
             f"{first[rid].get('_path')}")
    return out


def folder_docs(folder: Path) -> list[ResultDoc]:
    """The docs of a folder's result files: a bad file is skipped with one line on stderr (the
    rest is read), and a run found in several files is read once."""
    docs: list[ResultDoc] = []
    bad: list[str] = []
    for p in result_files(folder):
        try:
            docs.extend(read_docs(p, within=folder))
        except BenchError as exc:
            bad.append(str(exc))
    _say_skipped(folder, bad)
    return unique_runs(docs, folder)


def load_docs(items: StrPath | Iterable[StrPath]) -> list[ResultDoc]:
    """All docs of a path, paths or glob patterns (folders recursively, without `baselines/` and
    `reference/`), in path order. A named file that cannot be read is an error; a bad file in a
    folder is skipped with one line (`folder_docs`)."""
    return [d for item in _items(items)
            for d in (folder_docs(item) if item.is_dir() else
                      [d for p in result_files(item) for d in read_docs(p)])]


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
    return parse_date(doc.get("created")) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


def newest_suite_batch(docs: Sequence[ResultDoc], suite: str) -> list[ResultDoc]:
    """The newest run of `suite` among `docs`: every result of the newest one's invocation
    (`batch_id`, which `bench suite` gives each invocation's runs: two suites run at once
    into one folder stay apart).

    Older files carry no batch id, so their batch is rebuilt from the newest result of the
    suite: walking back in `created` order through results in the same folder from the same
    host, it takes each (configuration, repeat) once and stops at the first one seen again -
    that is where the previous invocation of the suite ends.
    """
    runs = sorted((d for d in docs if d.get("suite") == suite), key=_created, reverse=True)
    if not runs:
        return []
    if runs[0].get("batch_id"):
        return [d for d in runs if d.get("batch_id") == runs[0]["batch_id"]]
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
    return folder_docs(results_dir) if results_dir.is_dir() else []


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
