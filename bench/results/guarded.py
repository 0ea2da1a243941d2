"""The guarded reader: every JSON file (and JSON line) the harness reads goes through here.

Result files travel between machines (rsync, CI artifacts, committed baselines), so a reader
treats them as untrusted input. Before anything is parsed:

- only a regular file is opened: a FIFO, a device, a socket or a folder is refused after an
  `lstat`/`stat`, and the file is opened with O_NONBLOCK (a FIFO swapped in meanwhile cannot
  block the open) and checked again with `fstat` on the open descriptor;
- symlinks: a file met while reading a folder may be a symlink only to a regular file inside
  that folder; a file named by the user may be a symlink to any regular file (they chose it);
- at most cap + 1 bytes are read, so a huge file is refused without being held;
- the nesting depth is counted on the text (strings removed, brackets summed) before
  `json.loads`, which would recurse once per level: deeper than MAX_DEPTH is one line, never a
  RecursionError;
- NaN, Infinity and numbers that overflow to infinity are refused, naming the field.

Each refusal is a `Refused` (a BenchError): one line, "<file>: <reason>". Nothing here imports
torch or pandas; the range checks of each format stay with that format (results.store,
history.records) and share `number_problem`, `version_problem` and `date_problem`.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import BenchError

StrPath = str | os.PathLike[str]

# Caps. A result file is 7-27 KB (the committed reference runs); even --window-steps 1 over a
# long run stays near 10 MB, and a baseline file holds a suite's runs: 32 MiB is room for all
# that, while parsing it costs at most a few hundred MB of memory (not a machine's worth).
MAX_RESULT_BYTES = 32 << 20
MAX_CACHE_BYTES = 1 << 20  # the peak cache: a few hundred bytes of FLOP/s figures
# One history record is 1-2 KB (a configuration's run ids and throughputs); 256 KiB holds a
# record of thousands of repeats. A whole history file is read line by line, never held.
MAX_LINE_BYTES = 256 << 10
MAX_DEPTH = 64  # a result is 4 levels deep; json.loads recurses once per level
MAX_INT_DIGITS = 40  # longer integers are not measurements (and cost quadratic time to parse)

_READ_CHUNK = 1 << 20


class Refused(BenchError):
    """A file or line the guarded reader will not take; str() is '<where>: <reason>'."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


# --------------------------------------------------------------------------- opening


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _target(path: Path, within: Path | None, what: str) -> tuple[str, bool]:
    """The path to open and whether it was reached through a symlink; Refused when the entry
    is not a regular file, or a symlink out of `within`."""
    where = str(path)
    st = os.lstat(path)  # FileNotFoundError goes to the caller: absent is not damaged
    linked = stat.S_ISLNK(st.st_mode)
    target = os.path.realpath(path) if linked else where
    if linked and within is not None:
        root = os.path.realpath(within)
        if os.path.commonpath([root, target]) != root:
            raise Refused(where, f"not a readable {what} (a symlink to {target}, outside the "
                                 f"folder being read, {within})")
    try:
        st = os.stat(target) if linked else st
    except OSError as exc:
        raise Refused(where, f"not a readable {what} (a broken symlink: "
                             f"{exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        via = f"a symlink to {_kind(st.st_mode)}" if linked else _kind(st.st_mode)
        raise Refused(where, f"not a readable {what} ({via}, not a regular file)")
    return target, linked


def open_regular(path: StrPath, what: str, within: StrPath | None = None) -> int:
    """A read descriptor of a regular file (the caller closes it); see the module docstring."""
    p = Path(path)
    target, _ = _target(p, Path(within) if within is not None else None, what)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Refused(str(p), f"not a readable {what} ({exc.strerror or type(exc).__name__})"
                      ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after the check
        os.close(fd)
        raise Refused(str(p), f"not a readable {what} (not a regular file)")
    return fd


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n >= 1 << 20 else f"{n / 1024:,.0f} KiB"


def read_capped(path: StrPath, cap: int, what: str, within: StrPath | None = None) -> bytes:
    """The bytes of a regular file of at most `cap` bytes (cap + 1 are read, no more)."""
    fd = open_regular(path, what, within)
    try:
        size = os.fstat(fd).st_size
        if size > cap:
            raise Refused(str(path), f"not a readable {what} ({_mib(size)}, over the "
                                     f"{_mib(cap)} cap for a {what})")
        chunks, left = [], cap + 1
        while left > 0:
            block = os.read(fd, min(left, _READ_CHUNK))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    finally:
        os.close(fd)
    if left <= 0:  # grew past the cap while being read
        raise Refused(str(path), f"not a readable {what} (over the {_mib(cap)} cap)")
    return b"".join(chunks)


def iter_lines(fd: int, cap: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of an open file from its start (newline dropped), read in chunks with pread:
    a line longer than `cap` comes as None, and its bytes are never held."""
    pending, over, offset = bytearray(), False, 0
    while block := os.pread(fd, _READ_CHUNK, offset):
        offset += len(block)
        start = 0
        while True:
            nl = block.find(b"\n", start)
            piece = block[start:] if nl < 0 else block[start:nl]
            over = over or len(pending) + len(piece) > cap
            if over:
                pending.clear()
            else:
                pending += piece
            if nl < 0:
                break
            yield None if over else bytes(pending)
            pending.clear()
            over, start = False, nl + 1
    if pending or over:
        yield None if over else bytes(pending)


# --------------------------------------------------------------------------- parsing


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deep a JSON text nests, without recursing: strings removed, brackets summed."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _Bad:
    """What the parse hooks put where a number cannot be a measurement; found after parsing
    so that the refusal names the field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _first_bad(doc: Any) -> tuple[str, str] | None:
    """(field path, token) of the first _Bad in a parsed document, walked without recursion."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        name, obj = stack.pop()
        if isinstance(obj, _Bad):
            return name or "the document", obj.text
        if isinstance(obj, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v)
                         for k, v in reversed(list(obj.items())))
        elif isinstance(obj, list):
            stack.extend((f"{name}[{i}]", v) for i, v in reversed(list(enumerate(obj))))
    return None


def loads(text: str | bytes, where: str, what: str = "result file") -> Any:
    """Parse JSON that came from outside: depth checked first, NaN/Infinity/overflowing
    numbers refused by field, every failure one `Refused` line."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(where, f"not a readable {what} (not UTF-8 text: byte "
                             f"{exc.start})") from None
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise Refused(where, f"not a readable {what} (JSON nested {depth:,} levels deep; "
                             f"at most {MAX_DEPTH})")
    bad: list[_Bad] = []

    def mark(token: str) -> _Bad:
        bad.append(_Bad(token))
        return bad[-1]

    def number(token: str) -> float | _Bad:
        value = float(token)
        return value if math.isfinite(value) else mark(token)

    def integer(token: str) -> int | _Bad:
        return int(token) if len(token.lstrip("-")) <= MAX_INT_DIGITS else mark(
            f"an integer of {len(token):,} digits")

    try:
        doc = json.loads(text, parse_float=number, parse_int=integer, parse_constant=mark)
    except RecursionError:  # only under a recursion limit lowered far below MAX_DEPTH
        raise Refused(where, f"not a readable {what} (JSON nested too deep)") from None
    except ValueError as exc:
        raise Refused(where, f"not a readable {what} (not JSON: {exc})") from None
    found = _first_bad(doc) if bad else None
    if found:
        raise Refused(where, f"{found[0]} is {found[1]}, not a finite number")
    return doc


def load_json(path: StrPath, what: str = "result file", cap: int = MAX_RESULT_BYTES,
              within: StrPath | None = None) -> Any:
    """A JSON file, read through every guard above. FileNotFoundError when it is absent (the
    caller says what that means); `Refused` for anything else wrong with it."""
    return loads(read_capped(path, cap, what, within), str(path), what)


# --------------------------------------------------------------------------- field checks


def number_problem(name: str, value: Any, positive: bool = False) -> str | None:
    """Why `value` cannot be the number `name` (None: it can, or it is null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} is a {type(value).__name__} ({value!r:.40}), expected a number"
    if not math.isfinite(value):
        return f"{name} is {value}, not a finite number"
    if positive and value <= 0:
        return f"{name} is {value}, expected a positive number"
    return None


def version_problem(name: str, value: Any, newest: int, what: str) -> str | None:
    """Why `value` is not a format version of `what` this tool reads: a whole number from 1 to
    `newest` (None: it is)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be a whole number, not {value!r:.40}"
    if value < 1:
        return f"{name} must be 1 or more, not {value}"
    if value > newest:
        return (f"{what} format {value} is newer than this tool understands ({newest}); "
                "upgrade bench")
    return None


def parse_date(value: Any) -> _dt.datetime | None:
    """An ISO 8601 time stamp as an aware datetime (UTC when it names no zone); None if not."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value  # 3.10 wants this
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def date_problem(name: str, value: Any) -> str | None:
    """Why `value` is not the ISO 8601 date `name` (a missing one is a problem too: it must
    never silently become "now")."""
    if value is None:
        return f"{name} is missing (the date a run was made)"
    if parse_date(value) is None:
        return f"{name} {value!r:.40} is not an ISO 8601 date"
    return None


__all__ = ["MAX_CACHE_BYTES", "MAX_DEPTH", "MAX_LINE_BYTES",
           "MAX_RESULT_BYTES", "Refused", "date_problem", "iter_lines", "load_json", "loads",
           "nesting_depth", "number_problem", "open_regular", "parse_date", "read_capped",
           "version_problem"]
