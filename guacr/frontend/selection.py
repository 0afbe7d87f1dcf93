"""Text selection in a terminal: what is selected, and word bounds for double-clicks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


CLICK_INTERVAL: Final = 0.3  # clicks closer than this count as double/triple clicks


class Selector:
    """Selecting with the mouse, as terminals do (sans-I/O): drag selects, a double
    click a word, a triple click a line, Shift+click extends, Alt+drag a rectangle.

    Methods return True when what is highlighted changed (the caller redraws).
    """

    def __init__(self) -> None:
        self.selection: Selection | None = None
        self.selecting = False  # the button is down after a press
        self._anchor: Point | None = None
        self._clicks = 0
        self._last_click = (0.0, (0, 0))

    def press(
        self,
        point: Point,
        now: float,
        *,
        shift: bool,
        cols: int,
        word: Callable[[Point], tuple[int, int]],
    ) -> bool:
        """Button 1 pressed at ``point`` (absolute line, column) at time ``now``."""
        last_time, last_point = self._last_click
        if now - last_time <= CLICK_INTERVAL and last_point == point:
            self._clicks = self._clicks % 3 + 1
        else:
            self._clicks = 1
        self._last_click = (now, point)
        self.selecting = True
        if self._clicks == 1:
            if shift and self.selection is not None:
                self.selection = Selection(self.selection.start, point)
                self._anchor = self.selection.start
                return False
            self._anchor = point
            return self.clear()
        if self._clicks == 2:
            c0, c1 = word(point)
            self.selection = Selection((point[0], c0), (point[0], c1))
        else:
            self.selection = Selection((point[0], 0), (point[0], cols - 1))
        self._anchor = None
        return True

    def drag(self, point: Point, *, alt: bool) -> bool:
        """The pointer moved with button 1 down."""
        if self._anchor is None:
            if self.selection is not None:
                self.selection.end = point
                return True
            return False
        if point == self._anchor and self.selection is None:
            return False
        self.selection = Selection(self._anchor, point, block=alt)
        return True

    def release(self) -> Selection | None:
        """Button 1 released: the finished selection (to copy), if any."""
        self.selecting = False
        return self.selection

    def clear(self) -> bool:
        """Drop the selection."""
        if self.selection is None:
            return False
        self.selection = None
        return True
