"""Text selection in a terminal: what is selected, and word bounds for double-clicks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

WORD_DELIMITERS: Final = frozenset("\"'`()[]{}<>|,;")

Point = tuple[int, int]  # (absolute line, column)


@dataclass
class Selection:
    """Selected text between two points (inclusive), in absolute line numbers."""

    start: Point
    end: Point
    block: bool = False

    def bounds(self) -> tuple[Point, Point]:
        """(first, last) in reading order (block: top-left and bottom-right corners)."""
        if self.block:
            (r0, r1), (c0, c1) = (
                sorted((self.start[0], self.end[0])),
                sorted((self.start[1], self.end[1])),
            )
            return (r0, c0), (r1, c1)
        a, z = sorted((self.start, self.end))
        return a, z

    def columns(self, line: int, cols: int) -> tuple[int, int] | None:
        """Selected [c0, c1] on ``line``, or None."""
        (r0, c0), (r1, c1) = self.bounds()
        if not r0 <= line <= r1:
            return None
        if self.block:
            return c0, c1
        return (c0 if line == r0 else 0), (c1 if line == r1 else cols - 1)


class _Cell(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def width(self) -> int: ...


def word_bounds(cells: Sequence[_Cell], col: int) -> tuple[int, int]:
    """The columns of the word around ``col`` (just ``col`` when it is no word)."""

    def word(c: int) -> bool:
        ch = cells[c].text
        return bool(ch) and not ch.isspace() and ch not in WORD_DELIMITERS

    if col >= len(cells) or not word(col):
        return col, col
    c0 = c1 = col
    while c0 > 0 and (word(c0 - 1) or cells[c0 - 1].width == 0):
        c0 -= 1
    while c1 + 1 < len(cells) and (word(c1 + 1) or cells[c1 + 1].width == 0):
        c1 += 1
    return c0, c1
