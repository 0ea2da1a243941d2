"""Plain-text renderings shared by the readers: markdown and terminal tables, and the few number
formats (a dash for a missing value) that their cells use.

No pandas: pandas' to_markdown needs tabulate, which may be absent.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.results.escape import Markup, md, term

MISSING = "-"


def fmt_num(v: Any, spec: str) -> str:
    """format(v, spec), or '-' for a missing (None or NaN) value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return format(v, spec)


def fmt_percent(v: Any, spec: str = ".2f") -> str:
    """A fraction as a percentage without the sign (0.9712 -> '97.12'), '-' when missing."""
    return fmt_num(v * 100 if v is not None else None, spec)


# MFU: a fraction of a peak, so never a figure above 1. The one home of that rule and of its
# note: the writer (bench.measure.summary) stores None and the note, the readers
# (results.flatten, the suite tables, the report) apply it again to older files that hold such
# a figure.
MFU_PEAKS = {"mfu": "the measured peak", "mfu_vendor": "the vendor's datasheet peak"}
_MFU_CAUSES = {
    "mfu": "the peak was measured under load or the convolution algorithm does fewer FLOPs "
           "than counted (Winograd/FFT); re-run `bench peak` on an idle machine",
    "mfu_vendor": "the convolution algorithm does fewer FLOPs than counted (Winograd/FFT)",
}
MFU_NA = "n/a"  # the cell of an MFU above 100% (mfu_note says why)


def _above_one(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 1


def mfu_note(key: str, value: float) -> str:
    """Why `key` (mfu or mfu_vendor) at `value` (> 1) is stored as null."""
    return f"{key} above 100% of {MFU_PEAKS[key]} ({value:.2f}x): {_MFU_CAUSES[key]}"


def checked_mfus(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The MFU fields of a summary or flat row that change under the rule: each figure above 1
    becomes None, explained in `mfu_note` (after any note already there). {} when none does."""
    notes = [summary["mfu_note"]] if summary.get("mfu_note") else []
    out: dict[str, Any] = {}
    for key in MFU_PEAKS:
        if _above_one(summary.get(key)):
            notes.append(mfu_note(key, summary[key]))
            out[key] = None
    if out:
        out["mfu_note"] = "; ".join(notes)
    return out


def _dropped(key: str, note: Any) -> bool:
    """Whether `note` (an mfu_note) says `key` was above 100%."""
    return isinstance(note, str) and any(n.startswith(f"{key} above ") for n in note.split("; "))


def fmt_mfu(row: Mapping[str, Any], key: str = "mfu", spec: str = ".1f",
            sign: bool = False) -> str:
    """An MFU cell: the percentage (with '%' when `sign`), 'n/a' for a figure above 100%
    (dropped, or held by an older file), '-' when unknown. Every printer of MFU uses it."""
    v = row.get(key)
    if _above_one(v) or (v is None and _dropped(key, row.get("mfu_note"))):
        return MFU_NA
    text = fmt_percent(v, spec)
    return text + "%" if sign and text != MISSING else text


def fmt_ips(v: float) -> str:
    """images/s: thousands separated, no decimals from 100 up (1,234), one below (42.5)."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def markdown_escape(text: Any) -> Markup:
    """Text safe anywhere in markdown: a table cell, a list item, a heading (`escape.md`)."""
    return md(text)


def _cell(v: Any) -> str:
    return v if isinstance(v, Markup) else md(v)


def markdown_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table. Every cell and header is escaped (`escape.md`: no markup, no
    table break, one line) unless it is `Markup` already: results' strings are untrusted."""
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None,
               wrap: int = 0) -> str:
    """Columns padded to their widest cell, for terminals and logs.

    With `width`, column `wrap` (the one holding free text, e.g. a configuration name) is
    narrowed until the table fits, its cells wrapped onto continuation lines at spaces. No
    control character of a cell reaches the terminal (`escape.term`).
    """
    cells = [list(map(term, headers))] + [list(map(term, r)) for r in rows]  # no controls
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if width is not None and sum(widths) + 2 * (len(widths) - 1) > width:
        others = sum(w for i, w in enumerate(widths) if i != wrap) + 2 * (len(widths) - 1)
        widths[wrap] = max(MIN_WRAP, width - others)

    def lines(r: list[str]) -> list[str]:
        parts = [_wrap(c, w) if i == wrap else [c] for i, (c, w) in enumerate(zip(r, widths,
                                                                                  strict=True))]
        depth = max(map(len, parts))
        return ["  ".join((p[k] if k < len(p) else "").ljust(w)
                          for p, w in zip(parts, widths, strict=True)).rstrip()
                for k in range(depth)]

    return "\n".join(line for r in cells for line in lines(r))


MIN_WRAP = 16  # a wrapped column never gets narrower than this


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False) or [""]


def wrap_lines(text: str, width: int, indent: str = "    ") -> list[str]:
    """`text` as lines of at most `width` columns, continuation lines indented; a word longer
    than a line (a long path) is broken, so that the width always holds. For terminals: no
    control character is left (`escape.term`)."""
    return textwrap.wrap(term(text), width, subsequent_indent=indent,
                         break_on_hyphens=False) or [""]
