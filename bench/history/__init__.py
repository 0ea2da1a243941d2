"""The history of measured speed: every `bench suite` / `bench ci` result can be appended to a
store of one JSON-lines file per device, and `bench history` draws it as a static page
(asv's "speed over commits", for training runs). docs/history.md describes both.

- `records`: result docs -> one record per (commit, device, configuration), pure;
- `store`: the append-only files (locking, torn lines) and reading them back;
- `series`: records -> series per configuration and device, and their regressions;
- `page`: the plotly page (plotly is imported only there);
- `hooks`: the `--history` flag and the calls `bench suite` and `bench ci` make;
- `verb`: `bench history`.
"""
