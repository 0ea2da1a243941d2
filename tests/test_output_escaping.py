"""Hostile strings from result files and flags never become markup, terminal commands or
spreadsheet formulas (issue 21 items 4-6), and figures that cannot be throughputs (0, negative,
infinite) are left out with one line, never a traceback, `inf` or `Infinity` (items 8-9).

Result files travel between machines, so their strings are untrusted: each test puts hostile
strings into the env (cpu model, host, commit, GPU name), the configuration label, a failed run's
message and `--label DIR=NAME`, runs the verb, and checks what the user or a tool reads.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from test_compare import make_result, write_all

from bench.gate import compare
from bench.gate.compare import compare_runs, format_json, format_text
from bench.report import document, stats
from bench.results import export, flatten
from bench.results.escape import CSV_FORMULA_START, Markup, csv_cell, md, term
from bench.results.format import markdown_table, text_table, wrap_lines

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "heading": "\n# heading\n[x](javascript:alert(1))",
    "esc": "\x1b]0;pwned\x07\x1b[2J",
    "hyperlink": '=HYPERLINK("http://x","y")',
    "cmd": "=cmd|' /C calc'!A0",
    "sum": "@SUM(1+1)",
    "minus": "-2+3",
    "pipes": "|a|b|",
    "code": "`rm -rf` **bold** _em_ ![img](x.png)",
}
# what must never appear in a markdown output (raw markup from the strings above)
RAW_MARKUP = ("<script", "</script", "[x](javascript:", "\n# heading", "|a|b|", "`rm -rf`",
              "**bold**", "![img]", "\x1b", "\x07")
MD_SPECIAL = set("\\`*_[]#|!~$<>")
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _unescaped_markup(text: str) -> list[str]:
    """The markdown characters of `text` not escaped by a backslash, and any '&' that does not
    start one of md()'s entities."""
    found, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in MD_SPECIAL or (ch == "&" and not re.match(r"&(lt|gt|amp);", text[i:])):
            found.append(ch)
        i += 1
    return found


def _unmd(text: str) -> str:
    """md()'s output read back as plain text (what a renderer shows)."""
    text = re.sub(r"\\(.)", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _pipes(line: str) -> int:
    """Unescaped '|' in a markdown table line (after an even run of backslashes): the column
    separators."""
    return sum(1 for m in re.finditer(r"(\\*)\|", line) if len(m.group(1)) % 2 == 0)


def _assert_tables_intact(text: str) -> None:
    """Every row of every markdown table has as many column separators as its header."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            want = _pipes(lines[i - 1])
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                assert _pipes(row) == want, row


def _assert_markdown_safe(text: str, our_headings: int) -> None:
    for raw in RAW_MARKUP:
        assert raw not in text, raw
    assert not CONTROL.search(text)
    assert sum(1 for line in text.splitlines() if line.startswith("#")) == our_headings
    _assert_tables_intact(text)


def _assert_terminal_safe(text: str) -> None:
    assert not CONTROL.search(text), repr(CONTROL.search(text))
    assert not any(line.startswith("# heading") for line in text.splitlines())


def _hostile_result(ips: float, repeat: int, device: str, **env: str):
    r = make_result("cnn", ips, repeat=repeat, device=device, recipe=HOSTILE["pipes"])
    r.env.update(env)
    return r


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders, one device each, every env string hostile; the baseline has a failed run
    whose message is hostile too."""
    base, cand = tmp_path / "base", tmp_path / "cand"
    env = dict(host=HOSTILE["hyperlink"], cpu_model=HOSTILE["sum"], git_commit=HOSTILE["cmd"])
    write_all(base, *(_hostile_result(1000 + 10 * i, i, HOSTILE["script"] + HOSTILE["esc"],
                                      **env) for i in range(3)))
    failed = make_result("fc", 10.0, status="error", device=HOSTILE["script"] + HOSTILE["esc"])
    failed.message = HOSTILE["heading"] + HOSTILE["esc"] + HOSTILE["cmd"]
    failed.env.update(env)
    write_all(base, failed)
    write_all(cand, *(_hostile_result(1500 + 10 * i, i, HOSTILE["heading"] + HOSTILE["pipes"],
                                      **env) for i in range(3)))
    return base, cand


# --------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_md_escapes_every_markup_character_and_loses_nothing(name):
    text = HOSTILE[name]
    out = md(text)
    assert isinstance(out, Markup) and "\n" not in out and not CONTROL.search(out)
    assert _unescaped_markup(out) == []
    assert _unmd(out) == term(text)  # a renderer shows the text itself, on one line


def test_md_turns_controls_into_spaces_or_a_visible_mark():
    assert md("a\nb\rc\td") == "a b c d"
    assert md("a\x1bb\x9bc\u202ed") == "a\ufffdb\ufffdc\ufffdd"
    assert md("1 < 2 & 3 > 2") == "1 &lt; 2 &amp; 3 &gt; 2"
    assert md("±5% (3 runs) Δ ✅ é") == "±5% (3 runs) Δ ✅ é"  # plain text stays as it is


def test_term_strips_every_control_character():
    every = "".join(chr(c) for c in (*range(0x20), 0x7f, *range(0x80, 0xa0), 0x2028, 0x202e))
    out = term(f"x{every}y")
    assert not CONTROL.search(out) and out.startswith("x") and out.endswith("y")
    assert term(HOSTILE["esc"]) == "\ufffd]0;pwned\ufffd\ufffd[2J"
    assert term("ok: ±1.0% Δ ✅ [1.0, 2.0] <b>") == "ok: ±1.0% Δ ✅ [1.0, 2.0] <b>"


@pytest.mark.parametrize("value, want", [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("@SUM(1+1)", "'@SUM(1+1)"),
    ("-2+3", "'-2+3"), ("+1", "'+1"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("NVIDIA A100", "NVIDIA A100"), ("", ""), ("a=b", "a=b"),
    (-2.5, -2.5), (-3, -3), (0, 0), (None, None), (True, True)])
def test_csv_cell_quotes_formulas_only(value, want):
    assert csv_cell(value) == want
    assert type(csv_cell(value)) is type(want)


def test_tables_escape_cells_but_keep_our_markup():
    table = markdown_table(["device", "x"], [[HOSTILE["pipes"], Markup("**2.0×**")],
                                             [HOSTILE["heading"], 3]])
    _assert_markdown_safe(table, our_headings=0)
    assert "| \\|a\\|b\\| | **2.0×** |" in table
    text = text_table(["device", "n"], [[HOSTILE["esc"], 1]]) + "\n".join(
        wrap_lines(HOSTILE["esc"] + HOSTILE["heading"], 40))
    _assert_terminal_safe(text)


# --------------------------------------------------------------------------- the verbs


def test_report_escapes_env_strings_and_labels(hostile, tmp_path, bench_cli, capsys):
    base, cand = hostile
    code, err = bench_cli("report", base, cand, "--out", tmp_path / "r1")
    assert code == 0, err
    report_md = (tmp_path / "r1" / "report.md").read_text()
    _assert_markdown_safe(report_md, our_headings=report_md.count("\n## ") + 1)
    assert "# Benchmark report" in report_md and "&lt;script&gt;" in report_md
    assert md(HOSTILE["heading"] + HOSTILE["pipes"]) in report_md  # escaped, not dropped
    code, err = bench_cli("report", base, cand, "--out", tmp_path / "r2",
                          "--label", f"{base}={HOSTILE['script']}",
                          "--label", f"{cand}={HOSTILE['code']}{HOSTILE['esc']}")
    assert code == 0, err
    labelled = (tmp_path / "r2" / "report.md").read_text()
    _assert_markdown_safe(labelled, our_headings=labelled.count("\n## ") + 1)
    assert md(HOSTILE["code"] + HOSTILE["esc"]) in labelled


def test_report_survives_a_dollar_in_a_device_name(tmp_path, bench_cli):
    """matplotlib would parse '$\\frac$' as mathtext and fail at savefig: it is text."""
    write_all(tmp_path / "r", *(make_result("cnn", 1000 + i, repeat=i, device=r"GPU $\frac$")
                                for i in range(2)))
    code, err = bench_cli("report", tmp_path / "r", "--out", tmp_path / "out")
    assert code == 0, err
    assert r"GPU \$\\frac\$" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("fmt", ["text", "md", "json"])
def test_compare_escapes_each_format(hostile, fmt, capsys):
    base, cand = hostile
    code = compare.main([str(base), str(cand), "--format", fmt])
    out, err = capsys.readouterr()
    assert code in (0, 1, 3), err
    _assert_terminal_safe(err)
    if fmt == "text":
        _assert_terminal_safe(out)
        assert "Skipped runs:" in out and "pwned" in out  # shown, defanged
    elif fmt == "md":
        _assert_markdown_safe(out, our_headings=1)
        assert md(HOSTILE["script"] + HOSTILE["esc"]) in out
    else:
        doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        # JSON is typed data: the strings are kept exactly (JSON escapes the controls)
        assert doc["cand_devices"] == [HOSTILE["heading"] + HOSTILE["pipes"]]
        assert "\x1b" not in out and "\\u001b" in out


def test_compare_label_flag_is_escaped(hostile, capsys):
    base, cand = hostile
    compare.main([str(base), str(cand), "--format", "md", "--label",
                  f"{cand}={HOSTILE['heading']}{HOSTILE['script']}"])
    out = capsys.readouterr().out
    _assert_markdown_safe(out, our_headings=1)
    compare.main([str(base), str(cand), "--label", f"{base}={HOSTILE['esc']}x"])
    _assert_terminal_safe(capsys.readouterr().out)


def test_export_csv_quotes_formulas_and_keeps_numbers(hostile, tmp_path, bench_cli):
    base, cand = hostile
    out = tmp_path / "runs.csv"
    code, err = bench_cli("export", base, cand, "--to", out, "--label",
                          f"{cand}={HOSTILE['minus']}")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 7
    for row in rows:
        for col, cell in row.items():
            if col in ("images_per_s", "epoch_time_s", "final_test_acc", "repeat"):
                float(cell)  # a number, unquoted
            elif cell:
                assert not cell.startswith(CSV_FORMULA_START), (col, cell)
    assert {r["host"] for r in rows} == {"'" + HOSTILE["hyperlink"]}
    assert {r["git_commit"] for r in rows} == {"'" + HOSTILE["cmd"]}
    assert "'" + HOSTILE["minus"] in {r["device_label"] for r in rows}


def test_csv_keeps_negative_numbers_numbers():
    df = pd.DataFrame({"delta": [-1.5, 2.0], "n": [-3, 4], "note": ["-2+3", "ok"],
                       "=x": [1, 2]})
    text = export._csv_safe(df).to_csv(index=False)
    assert text.splitlines() == ["delta,n,note,'=x", "-1.5,-3,'-2+3,1", "2.0,4,ok,2"]


# --------------------------------------------------------------------------- numbers


def _bad_docs(*values: float, device: str = "NVIDIA A100", side: str = "runs") -> list[dict]:
    """Docs of one configuration whose images/s are `values`, whatever they are: what a reader
    would refuse, handed to the verb anyway (`Result.to_dict` stores inf as null)."""
    docs = [{**make_result("cnn", 1000.0, repeat=i, device=device).to_dict(),
             "_path": f"{side}/{i}.json"} for i in range(len(values))]
    for d, v in zip(docs, values, strict=True):
        d["summary"]["images_per_s"] = v
    return docs


def _bad_frame(*values: float, device: str = "NVIDIA A100") -> list[dict]:
    return [flatten(d) for d in _bad_docs(*values, device=device)]


@pytest.mark.parametrize("bad", [0.0, -5.0, math.inf])
def test_compare_skips_runs_that_cannot_be_throughputs(bad):
    base = _bad_frame(1000, 1010, 990)
    cand = _bad_frame(1000, 1005, bad)
    cmp = compare_runs(base, cand, 0.05)
    (row,) = cmp.rows
    assert row.cand.n == 2 and math.isfinite(row.ips_ratio)
    (skip,) = cmp.skipped
    assert f"images_per_s is {bad:g}, not a positive finite number" in skip.reason
    assert "inf" not in format_text(cmp).split("Skipped runs")[0]


def test_compare_with_every_candidate_run_unusable_says_so():
    cmp = compare_runs(_bad_frame(1000, 1010), _bad_frame(0.0, -1.0, math.inf), 0.05)
    assert not cmp.rows and len(cmp.skipped) == 3 and cmp.failed and cmp.exit_code == 1
    text = format_text(cmp)
    assert text.count("not a positive finite number") == 3
    json.loads(format_json(cmp), parse_constant=lambda c: pytest.fail(c))


def test_compare_json_writes_non_finite_as_null_with_a_note():
    cmp = compare_runs(_bad_frame(1000, 1010), _bad_frame(900, 910), 0.05)
    cmp.rows[0].epoch_ratio = math.inf
    cmp.rows[0].base.spread = math.nan
    out = format_json(cmp)
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(c))
    assert doc["rows"][0]["epoch_ratio"] is None and doc["rows"][0]["base"]["spread"] is None
    assert doc["notes"] == ["rows[0].base.spread: nan is no JSON number, written as null",
                            "rows[0].epoch_ratio: inf is no JSON number, written as null"]
    assert "Infinity" not in out and "NaN" not in out


def test_compare_cli_with_unreadable_figures_is_one_line_each(tmp_path, monkeypatch, capsys):
    """Defence in depth: figures the reader would refuse, handed to the verb anyway."""
    docs = {"base": _bad_docs(1000, 1010, side="base"),
            "cand": _bad_docs(math.inf, 0.0, 950, side="cand")}
    monkeypatch.setattr(compare, "load_side", lambda item, side, _dir: docs[item])
    code = compare.main(["base", "cand", "--format", "json"])
    out, err = capsys.readouterr()
    assert code in (1, 3) and not err
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(c))
    assert [s["path"] for s in doc["skipped"]] == ["cand/0.json", "cand/1.json"]
    compare.main(["base", "cand"])
    text = " ".join(capsys.readouterr().out.split())  # long lines wrap
    for path, value in (("cand/0.json", "inf"), ("cand/1.json", "0")):
        assert f"images_per_s is {value}, not a positive finite number ({path})" in text


def test_report_leaves_out_and_counts_runs_that_cannot_be_throughputs(tmp_path, monkeypatch,
                                                                       capsys):
    docs = [*_bad_docs(1000, 1010, device="A"), *_bad_docs(1000, 1010, 0.0, -3.0, math.inf,
                                                           device="B")]
    for i, d in enumerate(docs):
        d["_path"] = f"runs/{i}.json"
    monkeypatch.setattr(document, "load_docs", lambda items: docs)
    paths = document.write_report(["runs"], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "4 runs from 2 device(s): A, B. 3 more left out" in text
    assert "## Runs left out" in text and all(f"runs/{i}.json" in text for i in (4, 5, 6))
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(": images_per_s")[0] for ln in err] == [
        f"bench: report: left out runs/{i}.json" for i in (4, 5, 6)]
    assert paths[-1].name == "report.md"


def test_report_numbers_never_take_a_log_of_zero_or_less():
    """Rows built elsewhere (a DataFrame, not the reader) with such figures: no math error."""
    rows = [flatten(d) for d in (*_bad_docs(1000, 0.0, device="A"),
                                 *_bad_docs(-5.0, math.inf, device="B"),
                                 *_bad_docs(2000, 2100, device="C"))]
    summary = stats.summarize(rows)
    assert {s["device"]: s["ips"] for s in summary} == {"A": [1000.0], "B": [], "C": [2000.0,
                                                                                       2100.0]}
    ratios = stats.device_ratios(summary, "A", "throughput")
    assert [r["device"] for r in ratios] == ["C"]  # B has no figure: no ratio, no error
    assert math.isnan(stats.geomean([0.0, -1.0])) and stats.geomean([2.0, 8.0, 0.0]) == 4.0


def test_report_with_only_unusable_runs_is_one_line(tmp_path, monkeypatch, bench_cli):
    docs = _bad_docs(0.0)
    monkeypatch.setattr(document, "load_docs", lambda items: docs)
    code, err = bench_cli("report", tmp_path, "--out", tmp_path / "out")
    assert code == 2 and len(err) == 2 and err[-1].startswith("bench: error: no run to report")


# --------------------------------------------------------------------------- flags and help


@pytest.mark.parametrize("verb", ["history", "ci"])
def test_alpha_errors_name_alpha(verb, bench_cli, tmp_path):
    code, err = bench_cli(verb, "--alpha", "2", *([tmp_path] if verb == "history" else []))
    assert code == 2 and len(err) == 1
    assert "--alpha '2'" in err[0] and "--threshold" not in err[0]
    code, err = bench_cli(verb, "--threshold", "x", *([tmp_path] if verb == "history" else []))
    assert code == 2 and "--threshold 'x'" in err[0]


def test_compare_help_lists_every_exit_code():
    parser = argparse.ArgumentParser(prog="bench")
    compare.register(parser.add_subparsers())
    text = " ".join(parser._subparsers._group_actions[0].choices["compare"]  # type: ignore
                    .format_help().split())
    for code, what in ((0, "pass"), (1, "regression"), (2, "bad input"), (3, "could not gate")):
        assert f"{code} {what}" in text


def test_run_line_is_one_terminal_safe_line():
    from types import SimpleNamespace

    from bench.measure import summary

    doc = make_result(HOSTILE["esc"] + "\nfake: line").to_dict()
    line = summary.run_line(SimpleNamespace(status="ok", config=doc["config"],
                                            summary=doc["summary"]), "p\x1b[2J")
    _assert_terminal_safe(line)
    assert "\n" not in line and "pwned" in line


def test_the_table_check_catches_a_broken_row():
    """The checker the tests above rely on fails on an injected column."""
    with pytest.raises(AssertionError):
        _assert_tables_intact("| a | b |\n|---|---|\n| x | y | z |")
    _assert_tables_intact("| a | b |\n|---|---|\n| x \\| y | z |")
