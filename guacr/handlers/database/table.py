"""Query results as terminal text: aligned tables, NULL shown distinctly, safe cells.

Values from a database are untrusted text: a cell holding ``ESC [ 2 J`` must not clear
the user's screen, so every control character is shown escaped (``\\n``, ``\\x1b``).
NULL is drawn faint, so it never looks like the string ``'NULL'``.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Sequence
from typing import Final

from guacr.frontend.line_editor import cell_width, text_width

NULL_TEXT: Final = "NULL"
NULL_SGR: Final = "\x1b[2m"  # faint: reads as NULL, never looks like the text NULL
RESET_SGR: Final = "\x1b[0m"
MAX_CELL: Final = 120  # cells shown per value; longer values end with an ellipsis
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _NAMED.get(ch) or f"\\x{ord(ch):02x}"


def safe_text(text: str) -> str:
    """``text`` with control characters made visible (never sent raw to the terminal)."""
    return _CONTROL.sub(_escape, text)


def value_text(value: object) -> str:
    """How a non-NULL value reads in a cell (also used for CSV, without escaping)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _numeric(value: object) -> bool:
    return isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)


def _clip(text: str, limit: int) -> str:
    if text_width(text) <= limit:
        return text
    out, w = [], 0
    for ch in text:
        cw = cell_width(ch)
        if w + cw > limit - 1:
            break
        out.append(ch)
        w += cw
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - text_width(text))
    return gap + text if right else text + gap


def format_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines (without line ends) of a bordered table; NULL cells carry SGR styling."""
    heads = [_clip(safe_text(c), MAX_CELL) for c in columns]
    cells: list[list[tuple[str, bool]]] = []  # (text, is_null)
    numeric = [bool(rows)] * len(columns)
    for row in rows:
        line: list[tuple[str, bool]] = []
        for i, v in enumerate(row):
            if v is None:
                line.append((NULL_TEXT, True))
                continue
            if not _numeric(v):
                numeric[i] = False
            if isinstance(v, uuid.UUID):
                numeric[i] = False
            line.append((_clip(safe_text(value_text(v)), MAX_CELL), False))
        cells.append(line)
    widths = [text_width(h) for h in heads]
    for line in cells:
        for i, (t, _) in enumerate(line):
            widths[i] = max(widths[i], text_width(t))
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [
        border,
        "| " + " | ".join(_pad(h, w, False) for h, w in zip(heads, widths, strict=True)) + " |",
    ]
    out.append(border)
    for line in cells:
        parts = []
        for i, (t, null) in enumerate(line):
            padded = _pad(t, widths[i], numeric[i] or null)
            if null:
                padded = padded.replace(NULL_TEXT, NULL_SGR + NULL_TEXT + RESET_SGR)
            parts.append(padded)
        out.append("| " + " | ".join(parts) + " |")
    out.append(border)
    return out


def plural(n: int, word: str) -> str:
    """``1 row`` / ``2 rows``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def elapsed_text(seconds: float) -> str:
    """Elapsed time as people read it: ``0.4 ms``, ``12 ms``, ``1.25 s``."""
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"
