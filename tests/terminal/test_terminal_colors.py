"""color-scheme parser vectors (guacd 1.6.1 semantics) and palette resolution."""

from __future__ import annotations

import logging

import pytest

from guacr.terminal import (
    ATTR_BOLD,
    ATTR_FAINT,
    ATTR_REVERSE,
    DEFAULT_COLOR,
    TRUECOLOR,
    Palette,
    default_colors,
    format_x11_color,
    parse_color_scheme,
    parse_x11_color,
)

GRAY, BLACK, WHITE = (0x99, 0x99, 0x99), (0, 0, 0), (0xFF, 0xFF, 0xFF)


def test_default_palette() -> None:
    colors = default_colors()
    assert len(colors) == 256
    assert colors[1] == (0x99, 0x3E, 0x3E) and colors[9] == (0xFF, 0x67, 0x67)
    assert colors[16] == (0, 0, 0) and colors[21] == (0, 0, 0xFF) and colors[196] == (0xFF, 0, 0)
    assert colors[231] == WHITE and colors[232] == (8, 8, 8) and colors[255] == (0xEE,) * 3


@pytest.mark.parametrize(
    "scheme, fg, bg",
    [
        ("", GRAY, BLACK),
        ("gray-black", GRAY, BLACK),
        ("black-white", BLACK, WHITE),
        ("green-black", (0x3E, 0x99, 0x3E), BLACK),
        ("white-black", WHITE, BLACK),
        ("foreground: rgb:ff/00/00; background: navy", (0xFF, 0, 0), (0, 0, 0x80)),
        ("background:Alice Blue;", GRAY, (0xF0, 0xF8, 0xFF)),  # names: case and spaces
        ("foreground:rgb:f/8/0", (0xF0, 0x80, 0x00), BLACK),  # 1 digit: shifted, like guacd
        ("foreground:rgb:fff/888/000", (0xFF, 0x88, 0), BLACK),
        ("foreground:rgb:ffff/8080/0000", (0xFF, 0x80, 0), BLACK),
        ("foreground:rgb:1/22/333", (0x01, 0x22, 0x33), BLACK),  # as sscanf reads it
        (";;foreground:color9;;", (0xFF, 0x67, 0x67), BLACK),
        ("foreground:color 12", (0x67, 0x67, 0xFF), BLACK),
        ("gray-black ", GRAY, BLACK),  # not the preset: no colon, parsing stops
        ("foreground:crimson", (0xDC, 0x14, 0x3C), BLACK),
    ],
)
def test_schemes(scheme: str, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> None:
    palette = parse_color_scheme(scheme)
    assert (palette.foreground, palette.background) == (fg, bg)


def test_palette_entries_and_references() -> None:
    palette = parse_color_scheme("color1: rgb:10/20/30; foreground: color1; color200: red")
    assert palette.colors[1] == (0x10, 0x20, 0x30)
    assert palette.foreground == (0x10, 0x20, 0x30)  # uses the entry as changed so far
    assert palette.colors[200] == (0xFF, 0, 0)


@pytest.mark.parametrize(
    "scheme, warning",
    [
        ("foreground:red; nonsense; background:blue", "expecting colon"),
        ("foreground:red; fg:blue; background:blue", "unknown color name"),
        ("foreground:red; color256:blue; background:blue", "unknown color name"),
        ("foreground:red; background:notacolor; color1:blue", "invalid color value"),
        ("foreground:red; background:color300", "invalid color value"),
    ],
)
def test_error_stops_but_keeps_earlier_pairs(
    scheme: str, warning: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        palette = parse_color_scheme(scheme)
    assert palette.foreground == (0xFF, 0, 0)
    assert palette.background == BLACK and palette.colors[1] == default_colors()[1]
    assert warning in caplog.text


def test_x11_color_parsing_and_formatting() -> None:
    assert parse_x11_color("DarkSlateGray") == (0x2F, 0x4F, 0x4F)
    assert parse_x11_color("dark slate gray") == (0x2F, 0x4F, 0x4F)
    assert parse_x11_color("rgb:ff/00") is None
    assert parse_x11_color("nosuchcolor") is None
    assert format_x11_color((0x12, 0xAB, 0xFF)) == "rgb:1212/abab/ffff"


def test_cell_rgb() -> None:
    palette = parse_color_scheme("white-black")
    assert palette.cell_rgb(DEFAULT_COLOR, DEFAULT_COLOR, 0) == (WHITE, BLACK)
    assert palette.cell_rgb(1, 4, 0) == ((0x99, 0x3E, 0x3E), (0x3E, 0x3E, 0x99))
    assert palette.cell_rgb(1, DEFAULT_COLOR, ATTR_BOLD)[0] == (0xFF, 0x67, 0x67)  # brightened
    assert palette.cell_rgb(DEFAULT_COLOR, DEFAULT_COLOR, ATTR_BOLD)[0] == WHITE
    assert palette.cell_rgb(TRUECOLOR | 0x102030, 200, 0) == ((0x10, 0x20, 0x30), (0xFF, 0, 0xD7))
    assert palette.cell_rgb(DEFAULT_COLOR, DEFAULT_COLOR, ATTR_REVERSE) == (BLACK, WHITE)
    assert palette.cell_rgb(DEFAULT_COLOR, DEFAULT_COLOR, ATTR_REVERSE, True) == (WHITE, BLACK)
    assert palette.cell_rgb(DEFAULT_COLOR, DEFAULT_COLOR, 0, True) == (BLACK, WHITE)
    assert palette.cell_rgb(DEFAULT_COLOR, DEFAULT_COLOR, ATTR_FAINT)[0] == (0x7F, 0x7F, 0x7F)
    assert palette.cell_rgb(1, DEFAULT_COLOR, ATTR_FAINT | ATTR_BOLD)[0] == (0x99, 0x3E, 0x3E)


def test_palette_copy_is_independent() -> None:
    a = Palette()
    b = a.copy()
    b.colors[3] = (1, 2, 3)
    assert a.colors[3] != (1, 2, 3) and a != b
    with pytest.raises(ValueError):
        Palette(colors=[(0, 0, 0)])
