"""TerminalView: what a client shows after replaying its output equals the screen.

The decisive check is pixel-exact: the view's text layer, replayed instruction by
instruction, must equal a from-scratch composition of the expected screen, whatever
mix of glyph copies, images, rectangles and scroll copies the view chose.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from ssh.fakes import FakeConn
from ssh.term_screen import Display, TextReader

from guacr.protocol.parser import Parser
from guacr.render.glyphs import BOLD, CONT, UNDERLINE, WIDE, CellKey, continuation, get_fontset
from guacr.render.terminal_view import Cursor, TerminalView, margin_for_dpi

FG, BG = 0x999999, 0x000000
# at most 16 colour pairs on screen: every image is then an exact palette image
COLOURS = [0x999999, 0x3E993E, 0xFF6767, 0x6767FF]


def row_of(text: str, cols: int, fg: int = FG, bg: int = BG, flags: int = 0) -> list[CellKey]:
    return [((ch if ch != " " else ""), fg, bg, flags) for ch in text[:cols].ljust(cols)]


def make_view(strategy: str = "auto", width: int = 800, height: int = 480) -> TerminalView:
    fonts = get_fontset("monospace", 16)
    return TerminalView(FakeConn(), fonts, width, height, 96, BG, strategy)  # type: ignore[arg-type]


async def apply(view: TerminalView, display: Display, screen: list[list[CellKey]]) -> bytes:
    out = await view.update(screen, Cursor(0, 0, False))
    display.feed_all(Parser().receive_data(out))
    return out


def assert_shows(view: TerminalView, display: Display, screen: list[list[CellKey]]) -> None:
    expected = np.asarray(view.fonts.compose(screen, BG).convert("RGB"))
    layer = display.layer(view.text_layer).convert("RGB")
    actual = np.asarray(layer)[: expected.shape[0], : expected.shape[1]]
    assert actual.shape == expected.shape
    bad = np.argwhere((actual != expected).any(axis=2))
    assert not len(bad), f"{len(bad)} pixels differ, first at {bad[0]}"


def random_screen(rng: random.Random, cols: int, rows: int) -> list[list[CellKey]]:
    words = ["ls", "-la", "guest", "root", "4096", "Nov", "bin", "src", "x", "README.md"]
    screen = []
    for _ in range(rows):
        row: list[CellKey] = []
        while len(row) < cols:
            fg = rng.choice(COLOURS)
            bg = BG if rng.random() < 0.85 else rng.choice(COLOURS[2:])
            flags = rng.choice([0, 0, 0, BOLD, UNDERLINE])
            if rng.random() < 0.05 and len(row) + 2 <= cols:
                key = ("界", fg, bg, flags | WIDE)
                row += [key, continuation(key)]
                continue
            for ch in rng.choice(words) + " ":
                row.append((ch if ch != " " else "", fg, bg, flags))
        screen.append(row[:cols])
        if screen[-1] and screen[-1][-1][3] & WIDE:
            last = screen[-1][-1]
            screen[-1][-1] = ("", last[1], last[2], 0)
    return screen


@pytest.mark.parametrize("strategy", ["auto", "glyphs", "images"])
async def test_replay_matches_screen_through_random_updates(strategy: str) -> None:
    rng = random.Random(1234)
    view, display = make_view(strategy), Display()
    cols, rows = view.cols, view.rows
    screen = random_screen(rng, cols, rows)
    await apply(view, display, screen)
    assert_shows(view, display, screen)
    for step in range(25):
        kind = step % 5
        if kind == 0:  # scroll up by a few lines with new lines at the bottom
            n = rng.randint(1, 5)
            screen = screen[n:] + random_screen(rng, cols, n)
            view.scroll(0, rows, n)
        elif kind == 1:  # a scroll region moving down (reverse index in vim)
            top, bottom = 2, rows - 3
            screen = (
                screen[:top]
                + random_screen(rng, cols, 1)
                + screen[top : bottom - 1]
                + screen[bottom:]
            )
            view.scroll(top, bottom, -1)
        elif kind == 2:  # typing: one or two cells
            r, c = rng.randrange(rows), rng.randrange(cols - 1)
            screen[r] = list(screen[r])
            screen[r][c] = (rng.choice("abcxyz"), FG, BG, 0)
        elif kind == 3:  # a few lines rewritten
            for r in rng.sample(range(rows), 3):
                screen[r] = random_screen(rng, cols, 1)[0]
        else:  # a scroll nobody reported (detected by the view)
            screen = screen[2:] + random_screen(rng, cols, 2)
        await apply(view, display, screen)
        assert_shows(view, display, screen)


async def test_scroll_is_a_copy_and_only_the_new_row_is_drawn() -> None:
    view, display = make_view(), Display()
    cols, rows = view.cols, view.rows
    lines = [f"line {i} " + "abcdefghij" * 5 for i in range(rows + 1)]
    await apply(view, display, [row_of(t, cols) for t in lines[:rows]])
    view.scroll(0, rows, 1)
    screen = [row_of(t, cols) for t in lines[1:]]
    out = await apply(view, display, screen)
    ins = Parser().receive_data(out)
    ch = view.fonts.cell_height
    copies = [i for i in ins if i[0] == "copy" and i[1] == str(view.text_layer)]
    assert copies == [
        ("copy", "1", "0", str(ch), str(cols * view.fonts.cell_width), str((rows - 1) * ch),
         "14", "1", "0", "0")
    ]  # fmt: skip
    for i in ins:  # everything else lands on the last row
        if i[0] in ("img", "rect") and i[1 if i[0] == "rect" else 3] == str(view.text_layer):
            y = int(i[3] if i[0] == "rect" else i[6])
            assert y >= (rows - 1) * ch, i
    assert_shows(view, display, screen)


async def test_a_new_page_is_drawn_as_whole_rows_without_a_cell_diff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: output that scrolled past a whole screen changes every row, and the
    # per-cell diff (Python, on the worker's loop) then found every cell changed anyway.
    rng = random.Random(7)
    view, display = make_view(), Display()
    cols, rows = view.cols, view.rows
    first = random_screen(rng, cols, rows)
    diffed: list[int] = []
    cell_diff = view._changed_cells

    def counted(*args: Any) -> list[tuple[int, int]]:
        diffed.append(1)
        return cell_diff(*args)

    with monkeypatch.context() as m:
        m.setattr(view, "_changed_cells", counted)
        await apply(view, display, first)
    assert diffed == [1]  # the first frame (rows never drawn) keeps the cell diff
    page = random_screen(rng, cols, rows)
    page[5] = first[5]  # a row that did not change is left alone

    def no_diff(*args: object) -> None:
        raise AssertionError("per-cell diff of a new page")

    with monkeypatch.context() as m:
        m.setattr(view, "_changed_cells", no_diff)
        out = await apply(view, display, page)
    images = [i for i in Parser().receive_data(out) if i[0] == "img"]
    ch = view.fonts.cell_height
    assert [int(i[6]) for i in images] == [0, 6 * ch]  # rows 0-4 and 6-end, at x 0
    assert {i[5] for i in images} == {"0"}
    assert_shows(view, display, page)
    # the model holds the page: a keystroke on it is a cell diff again, of one cell
    diffs: list[list[tuple[int, int]]] = []
    real_diff = view._changed_cells

    def diff(*args: Any) -> list[tuple[int, int]]:
        diffs.append(real_diff(*args))
        return diffs[-1]

    page = [list(r) for r in page]
    page[2][3] = ("x", FG, BG, 0)
    with monkeypatch.context() as m:
        m.setattr(view, "_changed_cells", diff)
        await apply(view, display, page)
    assert diffs == [[(2, 3)]]
    assert_shows(view, display, page)
    # fewer rows than WHOLE_ROWS differing: the cell diff, as before
    with monkeypatch.context() as m:
        m.setattr(view, "_changed_cells", no_diff)
        half = page[: rows // 2] + random_screen(rng, cols, rows - rows // 2)
        with pytest.raises(AssertionError, match="per-cell diff"):
            await apply(view, display, half)


async def test_whole_rows_leave_blank_rows_to_rectangles() -> None:
    # A cleared screen with a prompt: every row differs from the model, but only the
    # prompt's row is an image (blank rows joined to it made a 39-row image, which the
    # fork server's warm-up then encoded in a thread).
    view, display = make_view(), Display()
    cols, rows = view.cols, view.rows
    rng = random.Random(5)
    await apply(view, display, random_screen(rng, cols, rows))
    page = [row_of("guest@host:~$ ", cols)] + [row_of("", cols) for _ in range(rows - 1)]
    page[3] = row_of("a much longer line of output than the prompt above", cols)
    page[4] = row_of("and another one of about the same length as it", cols)
    page[6] = row_of("ok", cols)
    out = await apply(view, display, page)
    ch = view.fonts.cell_height
    images = [
        (int(i[3]), int(i[5]), int(i[6])) for i in Parser().receive_data(out) if i[0] == "img"
    ]
    layer = view.text_layer
    # the prompt; rows 3-4 in one image (similar widths); row 6 alone (a blank row between)
    assert images == [(layer, 0, 0), (layer, 0, 3 * ch), (layer, 0, 6 * ch)]
    assert_shows(view, display, page)


async def test_keystroke_is_one_small_copy_without_an_image() -> None:
    view, display = make_view(), Display()
    cols, rows = view.cols, view.rows
    prompt = "guest@host:~$ "
    screen = [row_of("", cols) for _ in range(rows)]
    screen[3] = row_of(prompt, cols)
    await apply(view, display, screen)
    typed = "echo hello"
    for i in range(1, len(typed) + 1):  # each new glyph is uploaded to the atlas once
        screen[3] = row_of(prompt + typed[:i], cols)
        await apply(view, display, screen)
    screen[3] = row_of(prompt + "echo hell", cols)
    await apply(view, display, screen)
    screen[3] = row_of(prompt + "echo hello", cols)
    out = await view.update(screen, Cursor(3, len(prompt) + 10))
    display.feed_all(Parser().receive_data(out))
    ops = [i[0] for i in Parser().receive_data(out)]
    assert "img" not in ops and ops.count("copy") == 1, ops
    assert len(out) < 200
    assert_shows(view, display, screen)


async def test_cursor_moves_without_touching_text() -> None:
    view, _display = make_view(), Display()
    screen = [row_of("hello", view.cols) for _ in range(view.rows)]
    await view.update(screen, Cursor(0, 0))
    out = await view.update(screen, Cursor(2, 3))
    ops = Parser().receive_data(out)
    assert all(i[1] == str(view.cursor_layer) for i in ops if i[0] in ("move", "size"))
    assert all(i[7] == str(view.cursor_layer) for i in ops if i[0] == "copy")
    assert all(i[3] != str(view.text_layer) for i in ops if i[0] == "img")
    assert not any(i[0] in ("rect", "cfill") and i[1] == str(view.text_layer) for i in ops)


async def test_layout_margin_and_grid_follow_dpi() -> None:
    assert margin_for_dpi(96) == 7 and margin_for_dpi(120) == 9
    view = make_view(width=1024, height=768)
    # guacd: (1024 - 16 scrollbar - 2*7 margin) // 10 = 99 columns, (768 - 14) // 19 = 39 rows
    assert (view.cols, view.rows) == (99, 39)
    out = await view.update([row_of("", 99)] * 39, Cursor(0, 0))
    ins = Parser().receive_data(out)
    assert ("move", "1", "0", "7", "7", "0") in ins
    assert ("size", "0", "1024", "768") in ins


async def test_joiner_replay_shows_the_same_screen() -> None:
    view, display = make_view(), Display()
    screen = random_screen(random.Random(7), view.cols, view.rows)
    await apply(view, display, screen)
    joiner = Display()
    joiner.feed_all(Parser().receive_data(await view.full_state()))
    assert_shows(view, joiner, screen)
    # and later broadcasts (glyph copies from the atlas) still draw correctly for both
    screen = [list(r) for r in screen]
    screen[0][0] = ("Q", FG, BG, 0)
    out = await view.update(screen, Cursor(0, 1))
    for d in (display, joiner):
        d.feed_all(Parser().receive_data(out))
        assert_shows(view, d, screen)


async def test_reader_decodes_text_layer() -> None:
    view, display = make_view(), Display()
    screen = [row_of(f"row {i}: The quick brown fox ~|%*`'", view.cols) for i in range(view.rows)]
    await apply(view, display, screen)
    text = TextReader().screen(display)
    assert text[5] == "row 5: The quick brown fox ~|%*`'"


async def test_lossless_webp_when_every_user_offered_it() -> None:
    view, display = make_view("images"), Display()
    view.webp = True
    screen = [row_of("", view.cols) for _ in range(view.rows)]
    await apply(view, display, screen)
    for r in range(2, 5):
        screen[r] = row_of(f"{r}: drwxr-xr-x 2 root root 4096 Nov 23 00:08 directory", view.cols)
    out = await apply(view, display, screen)
    mimetypes = [i[4] for i in Parser().receive_data(out) if i[0] == "img"]
    assert "image/webp" in mimetypes
    assert_shows(view, display, screen)  # lossless: pixel-exact after decoding


class CountingRow(list):  # type: ignore[type-arg]
    """A screen row that counts how often it is compared."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        CountingRow.compared += 1
        return list.__eq__(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


async def test_rows_passed_again_unchanged_are_not_compared() -> None:
    # Issue 16: an echo changes one row; the others are the same row objects as in the
    # last frame and cost no cell-by-cell comparison.
    view, display = make_view(), Display()
    screen = [CountingRow(row_of(f"line {r}", view.cols)) for r in range(view.rows)]
    await apply(view, display, screen)
    CountingRow.compared = 0
    screen = list(screen)
    screen[2] = CountingRow(row_of("line 2 and more", view.cols))
    await apply(view, display, screen)
    assert CountingRow.compared <= 2  # only the new row (found to differ, then diffed)
    assert_shows(view, display, screen)
    # after a scroll the model moved: every row is compared again, and drawn right
    view.scroll(0, view.rows, 1)
    screen = screen[1:] + [CountingRow(row_of("new", view.cols))]
    CountingRow.compared = 0
    await apply(view, display, screen)
    assert CountingRow.compared >= view.rows - 1
    assert_shows(view, display, screen)


async def test_update_now_draws_a_small_change_and_declines_a_big_one() -> None:
    view, display = make_view(), Display()
    screen = [row_of("", view.cols) for _ in range(view.rows)]
    await apply(view, display, screen)
    screen = list(screen)
    screen[1] = row_of("$ x", view.cols)
    out = view.update_now(screen, Cursor(1, 3), max_rows=2)
    assert out is not None
    display.feed_all(Parser().receive_data(out))
    assert_shows(view, display, screen)
    # three rows changed: declined, nothing drawn or recorded, update() does it all
    screen = list(screen)
    for r in (3, 4, 5):
        screen[r] = row_of(f"row {r}", view.cols)
    assert view.update_now(screen, Cursor(5, 5), max_rows=2) is None
    await apply(view, display, screen)
    assert_shows(view, display, screen)
    # a pending scroll or a layout change is left to update() too
    view.scroll(0, view.rows, 1)
    screen = screen[1:] + [row_of("", view.cols)]
    assert view.update_now(screen, Cursor(0, 0), max_rows=2) is None
    await apply(view, display, screen)
    assert_shows(view, display, screen)


def _changed_cells_cell_by_cell(
    screen: list[list[CellKey]], model: list[list[CellKey | None]], cols: int
) -> list[tuple[int, int]]:
    """The view's diff as it was before it compared chunks: the reference."""
    out: list[tuple[int, int]] = []
    for r, (row, old) in enumerate(zip(screen, model, strict=True)):
        n = min(cols, len(row))
        c = 0
        while c < n:
            key = row[c]
            if key != old[c] or (key[3] & WIDE and c + 1 < n and row[c + 1] != old[c + 1]):
                if key[3] & CONT and c > 0 and row[c - 1][3] & WIDE:
                    if not out or out[-1] != (r, c - 1):
                        out.append((r, c - 1))
                else:
                    out.append((r, c))
                if key[3] & WIDE:
                    c += 1
            c += 1
    return out


def test_chunked_diff_finds_the_same_cells_as_a_cell_by_cell_one() -> None:
    rng = random.Random(99)
    view = make_view()
    cols, rows = view.cols, view.rows
    for _ in range(40):
        model = random_screen(rng, cols, rows)
        screen = [list(r) for r in model]
        for _ in range(rng.randint(0, 12)):  # a few cells changed, wide glyphs included
            r, c = rng.randrange(rows), rng.randrange(cols)
            if rng.random() < 0.3 and c + 1 < cols:
                key = ("界", FG, BG, WIDE)
                screen[r][c : c + 2] = [key, continuation(key)]
            else:
                screen[r][c] = (rng.choice("xyz"), FG, BG, 0)
        view._model = [list(r) for r in model]  # what the clients show
        expected = _changed_cells_cell_by_cell(screen, view._model, cols)
        assert view._changed_cells(screen) == expected
