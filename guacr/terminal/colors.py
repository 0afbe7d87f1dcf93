"""Colour palette and guacd's `color-scheme` parameter.

The parser follows guacd 1.6.1 behaviour: a preset name, or `name: value` pairs
separated by `;` where a name is `foreground`, `background` or `colorN` and a value
is `colorN`, an X11 colour name or `rgb:h/h/h` (1-4 hex digits per component). A
syntax error stops parsing but keeps the pairs already applied. The same X11 colour
parser serves OSC 4/10/11 from applications, as in guacd.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from guacr.terminal._x11colors import X11_COLORS
from guacr.terminal.model import ATTR_BOLD, ATTR_FAINT, ATTR_REVERSE, DEFAULT_COLOR, TRUECOLOR

__all__ = [
    "PRESETS",
    "RGB",
    "Palette",
    "default_colors",
    "format_x11_color",
    "parse_color_scheme",
    "parse_x11_color",
]

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]

#: guacd's presets, as the pair lists they stand for.
PRESETS: dict[str, str] = {
    "gray-black": "foreground:color7;background:color0",
    "black-white": "foreground:color0;background:color15",
    "green-black": "foreground:color2;background:color0",
    "white-black": "foreground:color15;background:color0",
}

# guacd's first 16 colours (dimmer than xterm's), then xterm's cube and grey ramp.
_BASE16: tuple[RGB, ...] = (
    (0x00, 0x00, 0x00),
    (0x99, 0x3E, 0x3E),
    (0x3E, 0x99, 0x3E),
    (0x99, 0x99, 0x3E),
    (0x3E, 0x3E, 0x99),
    (0x99, 0x3E, 0x99),
    (0x3E, 0x99, 0x99),
    (0x99, 0x99, 0x99),
    (0x3E, 0x3E, 0x3E),
    (0xFF, 0x67, 0x67),
    (0x67, 0xFF, 0x67),
    (0xFF, 0xFF, 0x67),
    (0x67, 0x67, 0xFF),
    (0xFF, 0x67, 0xFF),
    (0x67, 0xFF, 0xFF),
    (0xFF, 0xFF, 0xFF),
)
_CUBE_LEVELS = (0x00, 0x5F, 0x87, 0xAF, 0xD7, 0xFF)


def default_colors() -> tuple[RGB, ...]:
    """The 256-colour palette guacd starts from."""
    cube = [(r, g, b) for r in _CUBE_LEVELS for g in _CUBE_LEVELS for b in _CUBE_LEVELS]
    greys = [(v, v, v) for v in range(0x08, 0xEF, 10)]
    return _BASE16 + tuple(cube) + tuple(greys)


_DEFAULT_COLORS = default_colors()
_C_SPACE = " \t\n\v\f\r"  # C isspace() in the "C" locale


class Palette:
    """Default foreground/background plus 256 indexed colours, all as RGB."""

    __slots__ = ("background", "colors", "foreground")

    def __init__(
        self,
        foreground: RGB = _DEFAULT_COLORS[7],
        background: RGB = _DEFAULT_COLORS[0],
        colors: Sequence[RGB] = _DEFAULT_COLORS,
    ) -> None:
        if len(colors) != 256:
            raise ValueError("a palette has 256 colours")
        self.foreground = foreground
        self.background = background
        self.colors = list(colors)

    def copy(self) -> Palette:
        return Palette(self.foreground, self.background, self.colors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Palette):
            return NotImplemented
        return (self.foreground, self.background, self.colors) == (
            other.foreground,
            other.background,
            other.colors,
        )

    def __repr__(self) -> str:
        return f"Palette(foreground={self.foreground}, background={self.background})"

    def resolve(self, color: int, default: RGB) -> RGB:
        """RGB of an engine colour value; `default` stands in for DEFAULT_COLOR."""
        if color == DEFAULT_COLOR:
            return default
        if color >= TRUECOLOR:
            return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF
        return self.colors[color & 0xFF]

    def cell_rgb(
        self, fg: int, bg: int, attrs: int, reverse_video: bool = False
    ) -> tuple[RGB, RGB]:
        """Final (foreground, background) of a cell as guacd draws it.

        Bold text in one of the eight normal colours uses the bright variant; faint
        (SGR 2) text without bold has its foreground halved; reverse (SGR 7, toggled
        again by DECSCNM `reverse_video`) swaps the two.
        """
        bold = attrs & ATTR_BOLD
        if bold and not attrs & ATTR_FAINT and 0 <= fg <= 7:
            fg += 8
        f = self.resolve(fg, self.foreground)
        b = self.resolve(bg, self.background)
        if attrs & ATTR_FAINT and not bold:
            f = (f[0] // 2, f[1] // 2, f[2] // 2)
        if bool(attrs & ATTR_REVERSE) != reverse_video:
            return b, f
        return f, b


def _scan_hex(spec: str, pos: int, width: int) -> tuple[int, int] | None:
    """Read up to `width` hex digits after optional blanks, like sscanf("%Nx")."""
    while pos < len(spec) and spec[pos] in _C_SPACE:
        pos += 1
    end = pos
    while end < len(spec) and end - pos < width and spec[end] in "0123456789abcdefABCDEF":
        end += 1
    if end == pos:
        return None
    return int(spec[pos:end], 16), end


def _parse_rgb(spec: str) -> RGB | None:
    if not spec.startswith("rgb:"):
        return None
    # guacd tries 1, 2, 3 then 4 digits per component and scales by the width tried
    for width in (1, 2, 3, 4):
        pos = 4
        values: list[int] = []
        for i in range(3):
            got = _scan_hex(spec, pos, width)
            if got is None:
                break
            value, pos = got
            values.append(value << 4 if width == 1 else value >> (4 * (width - 2)))
            if i < 2:
                if pos >= len(spec) or spec[pos] != "/":
                    break
                pos += 1
        if len(values) == 3:
            return values[0], values[1], values[2]
    return None


def parse_x11_color(spec: str) -> RGB | None:
    """Parse `rgb:r/g/b` or an X11 colour name (case and spaces ignored)."""
    rgb = _parse_rgb(spec)
    if rgb is not None:
        return rgb
    name = "".join(spec.split(";", 1)[0].split()).lower()
    value = X11_COLORS.get(name)
    if value is None:
        return None
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def format_x11_color(rgb: RGB) -> str:
    """The `rgb:rrrr/gggg/bbbb` form xterm uses in OSC 4/10/11 replies."""
    r, g, b = rgb
    return f"rgb:{r * 0x101:04x}/{g * 0x101:04x}/{b * 0x101:04x}"


_COLOR_N = re.compile(r"color[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _color_index(text: str) -> int | None:
    """`colorN` with N in 0-255, read like sscanf("color%d") (trailing text ignored)."""
    m = _COLOR_N.match(text)
    if m is None:
        return None
    index = int(m.group(1))
    return index if 0 <= index <= 255 else None


def parse_color_scheme(scheme: str, logger: logging.Logger | None = None) -> Palette:
    """Build the palette for a `color-scheme` value (empty means gray-black)."""
    logger = logger or log
    palette = Palette()
    pairs = PRESETS.get(scheme, scheme)
    for raw in pairs.split(";"):
        pair = raw.strip(_C_SPACE)
        if not pair:
            continue  # empty pairs are allowed, e.g. after a trailing ';'
        name, colon, value = pair.partition(":")
        if not colon:
            logger.warning('color-scheme: expecting colon: "%s"', pair)
            break
        name = name.strip(_C_SPACE)
        index = None
        if name not in ("foreground", "background"):
            index = _color_index(name)
            if index is None:
                logger.warning('color-scheme: unknown color name: "%s"', name)
                break
        value = value.strip(_C_SPACE)
        ref = _color_index(value)
        rgb = palette.colors[ref] if ref is not None else parse_x11_color(value)
        if rgb is None:
            logger.warning('color-scheme: invalid color value: "%s"', value)
            break
        if name == "foreground":
            palette.foreground = rgb
        elif name == "background":
            palette.background = rgb
        else:
            assert index is not None
            palette.colors[index] = rgb
    return palette
