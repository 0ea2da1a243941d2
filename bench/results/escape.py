"""One escaping rule per output format, for every string that comes from a result file or a
flag (device and CPU names, hosts, commits, labels, messages, `--label DIR=NAME`).

Result files travel between machines, so their strings are untrusted input. What they may not
do is become markup or commands where a person or a tool reads them:

- terminal (`term`): no control character reaches the screen (an `ESC ]0;` retitles the
  window, `ESC [2J` clears it, a newline fakes a line of our output);
- Markdown (`md`, report.md and the PR comment of `bench compare --format md`): no heading,
  link, image, HTML tag, code span, emphasis or table break; it is terminal-safe as well;
- CSV (`csv_cell`, `bench export`): no cell a spreadsheet runs as a formula (OWASP's rule).

HTML is `html.escape` (the history page); parquet and JSON keep raw values (typed data).
"""

from __future__ import annotations

from typing import Any

# Line breaks and tabs read as a space; every other control character (C0, DEL, C1 - 0x9b is
# an 8-bit CSI -, the Unicode line and paragraph separators, the bidirectional overrides that
# reorder what a reader sees) as U+FFFD, so that the reader sees that something was there.
_SPACE = "\t\n\v\f\r\x85\u2028\u2029"
_REPLACED = "".join(chr(c) for c in (*range(0x20), 0x7f, *range(0x80, 0xa0)))
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROLS = {ord(c): (" " if c in _SPACE else "\ufffd") for c in _REPLACED + _SPACE + _BIDI}

# Markdown: a backslash before the ASCII punctuation that starts or ends markup (CommonMark
# lets any of it be escaped so), entities for the characters HTML reads. Brackets cover links,
# images and footnotes (each needs a '['), so parentheses stay as they are.
_MARKDOWN = {**_CONTROLS, **{ord(c): "\\" + c for c in "\\`*_[]#|!~$"},
             ord("<"): "&lt;", ord(">"): "&gt;", ord("&"): "&amp;"}

# OWASP (CSV injection): a cell starting with one of these is a formula to a spreadsheet.
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Markup(str):
    """Text that is markdown already (our own emphasis, or escaped): `markdown_table` keeps it
    as it is, where it escapes every other cell."""


def term(text: Any) -> str:
    """`text` safe to print on a terminal: no control character left (see the module doc)."""
    return str(text).translate(_CONTROLS)


def md(text: Any) -> Markup:
    """`text` as literal Markdown text: inline, on one line, no markup from its characters."""
    return Markup(str(text).translate(_MARKDOWN))


def csv_cell(value: Any) -> Any:
    """A string cell starting like a formula gets a leading "'" (a spreadsheet shows it as
    text); numbers and every other value stay as they are: a negative number is a number."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        return "'" + value
    return value
