"""Column types of the run and epoch DataFrames, derived from the schema's typed rows.

A frame built from JSON rows leaves a column that is None in every run (time_to_accuracy_s
when no run reached its target, max_steps of full runs) as an object column of None, and
`created` as text. Here each column the schema types as a number becomes float (None -> NaN)
and `created` a UTC datetime, so notebooks can compute and plot without casting.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from bench.results.schema import EpochRow, RunRow

_NUMBER = (int, float)


def _is_number(hint: Any) -> bool:
    """int, float, or an optional of them (bool is no number here)."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    args = tuple(a for a in args if a is not type(None))
    return bool(args) and all(a in _NUMBER for a in args)


def _numeric_columns(*rows: type) -> frozenset[str]:
    return frozenset(name for row in rows for name, hint in typing.get_type_hints(row).items()
                     if _is_number(hint))


NUMERIC_COLUMNS = _numeric_columns(RunRow, EpochRow)


def typed(df):  # (pandas.DataFrame) -> pandas.DataFrame
    """The frame with numeric schema columns as numbers and `created` as a UTC datetime.

    A column pandas already holds as numbers (int64 without gaps, float64) is left alone;
    one of objects - None in every row, or numbers mixed with None - becomes float with NaN.
    """
    import pandas as pd

    df = df.copy()
    for col in df.columns:
        if col in NUMERIC_COLUMNS and df[col].dtype == object:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "created" in df:
        df["created"] = pd.to_datetime(df["created"], utc=True, errors="coerce", format="ISO8601")
    return df
