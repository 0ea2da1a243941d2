"""The results library: one JSON file per run, and everything that reads them.

Writers (runner, sweep, peak) and readers (compare, report, export, ci, suite tables) meet here,
so each fact - a key, a label, a file layout, a table format - has one home:

- `schema`: the `Result` a run fills in and the typed rows of a result doc;
- `store`: atomic writes, reading/validating files, loading folders, suite batches;
- `guarded`: the one reader of every JSON file and line (regular files, size caps, depth,
  finite numbers), and the field checks the formats share;
- `rows`: configuration keys and labels, flat rows per run or epoch, DataFrames of them;
- `format`: markdown/text tables and the number formats of their cells;
- `labels`: device label, file-name slug, and `--label DIR=NAME` system names;
- `frames`: column types of the run/epoch DataFrames;
- `provenance`: what a set of runs was measured with (commit, dates, versions, devices);
- `suite_tables`: the tables `bench suite` prints;
- `guarded`: the one reader of JSON from disk (regular files, size caps, depth, finite numbers);
- `escape`: one escaping rule per output format (terminal, Markdown, CSV);
- `archive`: one .tar.gz of a run's files (what a lent machine sends back).

Nothing here imports torch, and pandas only where a DataFrame is built.
"""

from __future__ import annotations

from bench.results.format import (
    fmt_ips,
    fmt_num,
    fmt_percent,
    markdown_escape,
    markdown_table,
    text_table,
    wrap_lines,
)
from bench.results.frames import typed
from bench.results.guarded import Refused, load_json
from bench.results.labels import (
    add_label_option,
    apply_labels,
    device_label,
    device_slug,
    labelled,
    parse_labels,
)
from bench.results.provenance import Provenance, provenance
from bench.results.rows import (
    CONFIG_KEYS,
    Key,
    config_label,
    docs_epochs,
    docs_frame,
    docs_rows,
    flatten,
    norm,
    num,
    run_key,
)
from bench.results.schema import (
    SCHEMA_VERSION,
    STATUSES,
    EpochRow,
    EvalRow,
    Result,
    ResultDoc,
    RunConfigDoc,
    RunRow,
    Summary,
    WindowRow,
)
from bench.results.store import (
    BASELINES_SUBDIR,
    DEFAULT_RESULTS_DIR,
    REFERENCE_SUBDIR,
    atomic_write,
    atomic_write_text,
    baseline_runs_dir,
    doc_problem,
    expand_paths,
    folder_docs,
    load_docs,
    load_epochs,
    load_results,
    load_side,
    newest_suite_batch,
    prepare_out_dir,
    read_baseline,
    read_docs,
    read_result,
    result_files,
    save_figure,
    unique_runs,
    validate_doc,
    write_baseline,
    write_result,
)
from bench.results.suite_tables import experiments_table, repeats_table, runs_table, suite_table

__all__ = [
    "BASELINES_SUBDIR", "CONFIG_KEYS", "DEFAULT_RESULTS_DIR", "SCHEMA_VERSION", "STATUSES",
    "EpochRow", "EvalRow", "Key", "Result", "ResultDoc", "RunConfigDoc", "RunRow", "Summary",
    "WindowRow",
    "atomic_write", "atomic_write_text", "config_label", "device_label", "device_slug",
    "docs_epochs", "docs_frame", "docs_rows", "expand_paths", "experiments_table", "flatten",
    "fmt_ips",
    "fmt_num", "fmt_percent", "load_docs", "load_epochs", "load_results", "load_side",
    "markdown_escape", "markdown_table", "newest_suite_batch", "norm", "num", "read_docs",
    "read_result", "repeats_table", "result_files", "run_key", "runs_table", "save_figure",
    "suite_table", "text_table", "validate_doc", "write_result", "read_baseline",
    "write_baseline", "prepare_out_dir", "REFERENCE_SUBDIR", "typed", "add_label_option",
    "apply_labels", "labelled", "parse_labels", "Provenance", "provenance", "wrap_lines",
    "Refused", "doc_problem", "folder_docs", "load_json", "unique_runs", "baseline_runs_dir",
]
