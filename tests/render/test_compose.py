"""The C glyph compositor against the numpy version it replaces: the same images."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from guacr.native_build import NativeLibraryError
from guacr.render import compose, glyphs
from guacr.render.glyphs import BOLD, UNDERLINE, WIDE, CellKey, continuation, get_fontset

try:
    _C = compose.native_palette_indices(compose.bind(compose.LIBRARY.load()))
except NativeLibraryError as exc:  # pragma: no cover - the suite builds it at install
    pytest.fail(f"the compositor library must build in the test environment: {exc}")

BG = 0x000000
FG = 0x999999


def screen(seed: int, rows: int, cols: int, colours: int) -> list[list[CellKey | None]]:
    """Text in ``colours`` foregrounds on mostly black, some wide glyphs, blank cells
    and ragged rows (None and short rows are blank background)."""
    rng = random.Random(seed)
    palette = [rng.randrange(1 << 24) for _ in range(colours)]
    grid: list[list[CellKey | None]] = []
    for _ in range(rows):
        row: list[CellKey | None] = []
        width = rng.randint(max(1, cols // 2), cols)
        while len(row) < width:
            fg = rng.choice(palette)
            bg = BG if rng.random() < 0.8 else rng.choice(palette)
            flags = rng.choice([0, 0, BOLD, UNDERLINE])
            pick = rng.random()
            if pick < 0.05 and len(row) + 2 <= width:
                key: CellKey = ("界", fg, bg, flags | WIDE)
                row += [key, continuation(key)]
            elif pick < 0.1:
                row.append(None)
            else:
                row.append((rng.choice("abcxyz019_-/ "), fg, bg, flags))
        grid.append(row[:width])
    return grid


def numpy_image(fonts: glyphs.FontSet, grid: list[list[CellKey | None]]) -> Image.Image:
    saved = compose.palette_indices
    compose.palette_indices = None
    try:
        return fonts.compose(grid, BG)
    finally:
        compose.palette_indices = saved


@pytest.mark.parametrize(("seed", "rows", "cols", "colours"), [
    (1, 1, 1, 1), (2, 3, 17, 2), (3, 40, 102, 4), (4, 12, 80, 9), (5, 24, 80, 1),
])  # fmt: skip
def test_c_composes_the_numpy_image_and_palette(
    seed: int, rows: int, cols: int, colours: int
) -> None:
    fonts = get_fontset("monospace", 16)
    grid = screen(seed, rows, cols, colours)
    fonts.prepare({"界"})
    want = numpy_image(fonts, grid)
    got = fonts.compose(grid, BG)
    assert compose.palette_indices is not None  # the C path was taken
    assert got.mode == want.mode == "P"
    assert got.size == want.size
    assert np.array_equal(np.asarray(got), np.asarray(want))
    assert got.getpalette() == want.getpalette()


def test_more_than_256_combinations_fall_back_to_numpy() -> None:
    fonts = get_fontset("monospace", 16)
    grid = screen(6, 20, 80, colours=40)  # ~40 pairs x 16 coverage levels
    rows, cols = len(grid), max(len(r) for r in grid)
    tid, pid, pairs = fonts._indices(grid, rows, cols, BG)
    assert _C(fonts.tiles, tid, pid, len(pairs)) is None
    want = numpy_image(fonts, grid)  # quantised coverage, or RGB
    got = fonts.compose(grid, BG)
    assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(want.convert("RGB")))


def test_bad_arguments_are_refused_not_read() -> None:
    tiles = np.zeros((4, 3, 2), np.uint8)
    ok = np.zeros((2, 2), np.int32)
    assert _C(tiles, ok, ok, 1) is not None
    with pytest.raises(ValueError, match="rejected"):
        _C(tiles, np.full((2, 2), 4, np.int32), ok, 1)  # no tile 4
    with pytest.raises(ValueError, match="rejected"):
        _C(tiles, ok, np.full((2, 2), 1, np.int32), 1)  # no pair 1
    with pytest.raises(ValueError, match="rejected"):
        _C(tiles, ok, ok, 0)
    with pytest.raises(ValueError, match="must be"):
        _C(tiles, ok, np.zeros((2, 3), np.int32), 1)


def test_random_tiles_and_cells_match_the_numpy_combinations() -> None:
    # Beyond text: any tile sizes, coverages and pair counts, against the numpy oracle
    # (also run under AddressSanitizer by hand when _compose.c changes).
    rng = np.random.default_rng(1)
    declined = 0
    for _ in range(60):
        nt, ch, cw = (int(x) for x in rng.integers(1, (40, 25, 14)))
        rows, cols, npairs = (int(x) for x in rng.integers(1, (45, 110, 30)))
        tiles = (rng.integers(0, 16, (nt, ch, cw)) * 17).astype(np.uint8)
        tid = rng.integers(0, nt, (rows, cols)).astype(np.int32)
        pid = rng.integers(0, npairs, (rows, cols)).astype(np.int32)
        combo = np.repeat(np.repeat(pid, ch, 0), cw, 1) * 256 + tiles[tid].transpose(
            0, 2, 1, 3
        ).reshape(rows * ch, cols * cw)
        found = _C(tiles, tid, pid, npairs)
        if len(np.unique(combo)) > 256:
            assert found is None
            declined += 1
            continue
        assert found is not None
        used, index = found
        assert np.array_equal(used, np.unique(combo))
        assert np.array_equal(used[index], combo)
    assert 0 < declined < 60


def test_cell_indices_are_each_cells_tile_and_pair_in_first_seen_order() -> None:
    fonts = get_fontset("monospace", 16)
    fonts.prepare({"界"})
    grid = screen(8, 30, 90, colours=6)
    rows, cols = len(grid), max(len(r) for r in grid)
    tid, pid, pairs = fonts._indices(grid, rows, cols, BG)
    order: dict[tuple[int, int], int] = {}
    blank: list[tuple[int, int, int]] = []  # (row, col, background) of blank cells
    for r in range(rows):
        for c in range(cols):
            key = grid[r][c] if c < len(grid[r]) else None
            t = 0 if key is None else fonts.tile(key[0], key[3])
            pair = (BG, BG) if key is None else (key[1], key[2]) if t else (key[2], key[2])
            assert tid[r, c] == t, (r, c)
            i = order.setdefault(pair, len(order))
            if t:
                assert pid[r, c] == i, (r, c)
            else:
                blank.append((r, c, pair[1]))
    assert pairs == order
    # A blank cell takes the first text pair of its background (or its own, if none).
    text_pair: dict[int, int] = {}
    for (fg, bg), i in order.items():
        if fg != bg:
            text_pair.setdefault(bg, i)
    assert blank and any(bg in text_pair for _, _, bg in blank)
    for r, c, bg in blank:
        assert pid[r, c] == text_pair.get(bg, order[(bg, bg)]), (r, c)


def test_blank_cells_sharing_a_text_pair_change_no_pixel_and_save_a_colour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fonts = get_fontset("monospace", 16)
    lines = ["total 48", "drwxr-xr-x  2 guest guest 4096 .", "", "-rw-r--r--  1 guest x"]
    grid = [[((ch if ch != " " else ""), FG, BG, 0) for ch in line.ljust(40)] for line in lines]
    shared = fonts.compose(grid, BG)
    with monkeypatch.context() as m:
        m.setattr(glyphs, "_share_blank_pairs", lambda tid, pid, pairs: pid)
        own = fonts.compose(grid, BG)
    assert np.array_equal(np.asarray(shared.convert("RGB")), np.asarray(own.convert("RGB")))
    assert len(shared.getpalette() or []) // 3 == len(own.getpalette() or []) // 3 - 1
