"""Value types the terminal engine hands to its callers (renderer, session).

Colours are plain ints so runs compare and hash cheaply (glyph caches key on them):
`DEFAULT_COLOR` (-1) is the scheme's default foreground or background, 0-255 a
palette index, and ``TRUECOLOR | 0xRRGGBB`` a 24-bit colour. `colors.Palette`
turns any of them into RGB.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "ATTR_BLINK",
    "ATTR_BOLD",
    "ATTR_CURLY_UNDERLINE",
    "ATTR_DOUBLE_UNDERLINE",
    "ATTR_FAINT",
    "ATTR_ITALIC",
    "ATTR_REVERSE",
    "ATTR_STRIKE",
    "ATTR_UNDERLINE",
    "DEFAULT_COLOR",
    "TRUECOLOR",
    "Cell",
    "CursorShape",
    "CursorState",
    "Damage",
    "MouseEncoding",
    "MouseMode",
    "OscEvent",
    "Run",
    "ScrollEvent",
    "is_truecolor",
    "rgb_of",
]

DEFAULT_COLOR = -1
TRUECOLOR = 0x1000000

# Attribute bits (same values as in _vtscreen.c).
ATTR_BOLD = 0x0001
ATTR_UNDERLINE = 0x0002  # set for any underline style
ATTR_DOUBLE_UNDERLINE = 0x0004
ATTR_CURLY_UNDERLINE = 0x0008
ATTR_ITALIC = 0x0010
ATTR_BLINK = 0x0020
ATTR_REVERSE = 0x0040
ATTR_STRIKE = 0x0080
ATTR_FAINT = 0x0100  # SGR 2, half-bright


def is_truecolor(color: int) -> bool:
    """True for a 24-bit colour value (as opposed to default or a palette index)."""
    return color >= TRUECOLOR


def rgb_of(color: int) -> tuple[int, int, int]:
    """The RGB triple of a truecolour value."""
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


class Run(NamedTuple):
    """Adjacent cells with identical attributes: what a renderer draws in one go.

    The runs of a row tile its columns exactly. In a normal run every character of
    `text` fills one cell. A `cluster` run is a single cell group: a wide character
    (width 2) and/or a character with combining marks; draw `text` as one glyph over
    `width` cells. Empty cells read as spaces.
    """

    col: int
    width: int
    text: str
    fg: int
    bg: int
    attrs: int
    cluster: bool


class Cell(NamedTuple):
    """One column of a row. The right half of a wide character has text '' and width 0."""

    text: str
    width: int
    fg: int
    bg: int
    attrs: int

    @property
    def bold(self) -> bool:
        return bool(self.attrs & ATTR_BOLD)

    @property
    def italic(self) -> bool:
        return bool(self.attrs & ATTR_ITALIC)

    @property
    def underline(self) -> bool:
        return bool(self.attrs & ATTR_UNDERLINE)

    @property
    def reverse(self) -> bool:
        return bool(self.attrs & ATTR_REVERSE)

    @property
    def blink(self) -> bool:
        return bool(self.attrs & ATTR_BLINK)

    @property
    def strike(self) -> bool:
        return bool(self.attrs & ATTR_STRIKE)

    @property
    def faint(self) -> bool:
        return bool(self.attrs & ATTR_FAINT)


class ScrollEvent(NamedTuple):
    """Rows [top, bottom) moved up by `lines` (down when negative), full width.

    Replay as a Guacamole `copy` of the text layer onto itself: for lines > 0 copy
    rows [top + lines, bottom) to row `top`. The rows exposed by the move are always
    listed in `Damage.rows`.
    """

    top: int
    bottom: int
    lines: int


class Damage(NamedTuple):
    """What changed since the previous `Terminal.take_damage()`.

    To bring a surface that showed the previous state up to date: apply `scrolls` in
    order, then redraw every row in `rows` from the terminal's current content.
    When `full` is true (resize, alternate screen switch, reset, palette change)
    `scrolls` is empty and `rows` lists every row.
    """

    full: bool
    scrolls: tuple[ScrollEvent, ...]
    rows: tuple[int, ...]
    bell: bool
    title: str | None  # the new window title, if it changed


class CursorShape(enum.IntEnum):
    BLOCK = 1
    UNDERLINE = 2
    BAR = 3


class CursorState(NamedTuple):
    row: int
    col: int
    visible: bool
    blink: bool
    shape: CursorShape


class MouseMode(enum.IntEnum):
    """Mouse tracking the application asked for (DECSET 9/1000/1002/1003)."""

    NONE = 0
    X10 = 1  # 9: button presses only
    NORMAL = 2  # 1000: presses and releases
    BUTTON_EVENT = 3  # 1002: plus motion while a button is held
    ANY_EVENT = 4  # 1003: plus all motion


class MouseEncoding(enum.IntEnum):
    """How mouse reports are encoded (DECSET 1005/1006/1015)."""

    DEFAULT = 0  # ESC [ M Cb Cx Cy, bytes offset by 32
    UTF8 = 1  # 1005
    SGR = 2  # 1006: ESC [ < b ; x ; y M/m
    URXVT = 3  # 1015: ESC [ b ; x ; y M


class OscEvent(NamedTuple):
    """An OSC the engine does not handle itself (e.g. guacd's 482200-482204)."""

    command: int
    data: str
