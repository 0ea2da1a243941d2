"""Plain-text renderings shared by the readers: markdown and terminal tables, and the few number
formats (a dash for a missing value) that their cells use.

No pandas: pandas' to_markdown needs tabulate, which may be absent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "-"


def fmt_num(v: Any, spec: str) -> str:
    """format(v, spec), or '-' for a missing (None or NaN) value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return format(v, spec)


def fmt_percent(v: Any, spec: str = ".2f") -> str:
    """A fraction as a percentage without the sign (0.9712 -> '97.12'), '-' when missing."""
    return fmt_num(v * 100 if v is not None else None, spec)


def fmt_ips(v: float) -> str:
    """images/s: thousands separated, no decimals from 100 up (1,234), one below (42.5)."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def markdown_escape(text: str) -> str:
    """Text safe inside a markdown table cell or list item (no table breaks, no emphasis)."""
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; a '|' in a cell is escaped, a newline becomes a space."""
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, for terminals and logs."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def pad(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join(pad(r) for r in cells)
