"""The history of measured speed, as a view of the result store: `bench history` draws every
result in a folder as a static page, a point per job and configuration, over commits (asv's
"speed over commits", for training runs). docs/history.md describes it.

- `records`: result docs -> one record per (job, device, commit, configuration), pure;
- `gates`: the `bench ci` verdicts kept beside the runs (`RESULTS/gates/`);
- `view`: a results folder -> its records, with the verdicts and any old JSON-lines store;
- `jsonl`: reading the JSON-lines stores of earlier versions (nothing writes them now);
- `series`: records -> series per configuration and device, and their regressions;
- `page`: the plotly page (plotly is imported only there);
- `hooks`: the old `--history` flag, ignored with one line;
- `verb`: `bench history`.
"""
