"""`bench export RESULTS... --to FILE.csv|FILE.parquet`: one table for spreadsheets/notebooks.

Rows are the flat run rows of `results.flatten` (or per-epoch rows with `--epochs`), typed as
`results.load_results` types them; `--label DIR=NAME` names the runs read from DIR as a system
(their `device_label`). The file is written to a temporary name and renamed, so an interrupted
export never leaves half a table. In CSV a text cell (or column name) that a spreadsheet would
run as a formula starts with "'" (`results.escape.csv_cell`); parquet keeps the raw values.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.results import (
    add_label_option,
    atomic_write,
    atomic_write_text,
    docs_epochs,
    docs_frame,
    labelled,
    load_docs,
    typed,
)
from bench.results.escape import csv_cell

FORMATS = (".csv", ".parquet")


def _scalar_columns(df):  # -> DataFrame
    """Nested values (dicts/lists) become JSON text: neither CSV nor parquet takes them as is."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, (dict, list))).any():
            df[col] = df[col].map(
                lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    return df


def _csv_safe(df):  # -> DataFrame
    """Every text cell and column name through `csv_cell`: strings from result files (a host,
    a device name, a message) must not become formulas; number columns are left alone."""
    import pandas as pd

    df = df.rename(columns=csv_cell)
    for col in df.columns:  # text: object columns, and pandas' string dtype (pandas 3)
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col].dtype):
            df[col] = df[col].map(csv_cell)
    return df


def _write_parquet(df, path: Path) -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise BenchError(f"--to {path}: parquet needs pyarrow: pip install pyarrow")
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False, engine="pyarrow"))


def export(items: Sequence[str | Path], to: str | Path, epochs: bool = False,
           labels: Sequence[str] = ()) -> Path:
    """Write the runs (or their epochs) of `items` to `to`; the suffix picks the format;
    `labels` are `--label DIR=NAME` values."""
    path = Path(to)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise BenchError(f"--to {path}: unknown format {suffix or '(none)'};"
                         " use a .csv or .parquet file name")
    docs = labelled(load_docs(items), labels)
    if not docs:
        raise BenchError("no result files found in " + ", ".join(map(str, items)))
    df = _scalar_columns(typed(docs_epochs(docs) if epochs else docs_frame(docs)))
    if suffix == ".csv":
        atomic_write_text(path, _csv_safe(df).to_csv(index=False))
    else:
        _write_parquet(df, path)
    return path


def handler(args: argparse.Namespace) -> int:
    path = export(args.results, args.to, args.epochs, args.label)
    print(path)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write results to CSV or parquet",
                       description="One row per run (or per epoch with --epochs).")
    p.add_argument("results", nargs="+", help="result files, baseline files or folders")
    p.add_argument("--to", required=True, help="output file: results.csv or results.parquet")
    p.add_argument("--epochs", action="store_true", help="one row per epoch instead of per run")
    add_label_option(p)
    p.set_defaults(func=handler)
