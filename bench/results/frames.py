"""Column types of the run and epoch DataFrames, derived from the schema's typed rows.

A frame built from JSON rows leaves a column that is None in every run (time_to_accuracy_s
when no run reached its target, max_steps of full runs) as an object column of None, and
`created` as text. Here each column the schema types as a number becomes float (None -> NaN)
and `created` a UTC datetime, so notebooks can compute and plot without casting.
"""

from __future__ import annotations

from bench.results.schema import EpochRow, RunRow, number_fields

NUMERIC_COLUMNS = number_fields(RunRow, EpochRow)


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
