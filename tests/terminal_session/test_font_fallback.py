"""Font fallback: characters the terminal font lacks are drawn from another installed font
(found with fontconfig, as guacd's Pango does), and as the missing-glyph box only when no
font has them. Needs a CJK font (Debian: fonts-wqy-microhei)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess

import numpy as np
import pytest
from PIL import ImageFont
from ssh.fakes import FakeConn
from ssh.term_screen import Display

from guacr.render import glyphs
from guacr.render.glyphs import CONT, WIDE, Charset, FontCatalog, FontSet, continuation
from guacr.frontend.session import TerminalConfig, TerminalSession

CJK = "中"  # U+4E2D: not in DejaVu Sans Mono
NO_FONT = "\U0001fae0"  # an emoji (melting face) no font installed here has
NO_FONT_2 = "\U0010fffd"  # a private-use code point: no font has it


def cells(fonts: FontSet, text: str, flags: int) -> np.ndarray:
    """The coverage of ``text`` over its cells (two for a wide character)."""
    left: np.ndarray = fonts.tiles[fonts.tile(text, flags)].copy()
    if not flags & WIDE:
        return left
    right = fonts.tiles[fonts.tile(text, (flags & ~WIDE) | CONT)]
    both: np.ndarray = np.hstack([left, right])
    return both


@pytest.fixture(scope="module")
def cjk_font() -> str:
    """The installed font covering CJK (a missing one fails: it is a runtime dependency)."""
    out = subprocess.run(
        ["fc-list", f":charset={ord(CJK):x}", "file"], capture_output=True, text=True, check=False
    ).stdout
    assert out.strip(), "no CJK font installed: apt-get install fonts-wqy-microhei"
    return out.split(":")[0]


def test_charset_ranges() -> None:
    cs = Charset.parse("20-7e a0 100-17f junk")
    assert [cp in cs for cp in (0x1F, 0x20, 0x7E, 0x7F, 0xA0, 0xA1, 0x17F, 0x180)] == [
        False, True, True, False, True, False, True, False,
    ]  # fmt: skip


def test_cjk_character_is_drawn_from_a_fallback_font(
    cjk_font: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(glyphs, "_catalog", FontCatalog())  # no fallback chosen yet
    fonts = FontSet("monospace", 16)
    assert fonts.tile("é", 0) == fonts.tile("é", 0)  # own glyphs are kept at once
    assert fonts.needs_lookup(CJK) and not fonts.needs_lookup("A")
    early = cells(fonts, CJK, WIDE)  # asked before prepare(): a provisional box, not kept
    box = cells(fonts, NO_FONT_2, WIDE)
    assert np.array_equal(early, box)
    fonts.prepare([CJK, NO_FONT_2])
    assert not fonts.needs_lookup(CJK)
    glyph = cells(fonts, CJK, WIDE)
    assert not np.array_equal(glyph, box)
    assert (glyph > 128).sum() > 40  # real strokes, within the two cells
    assert glyph.shape == (fonts.cell_height, 2 * fonts.cell_width)
    # the same character drawn by the CJK font alone, scaled like ours: same ink columns
    ref = ImageFont.truetype(cjk_font, 16)
    left, top, right, bottom = ref.getbbox(CJK, anchor="ls")
    cols = np.flatnonzero(glyph.max(axis=0) > 0)
    assert cols[-1] - cols[0] + 1 == pytest.approx(right - left, abs=2)
    # bold and italic are synthesised from the same font: different, still inked
    bold = cells(fonts, CJK, WIDE | glyphs.BOLD)
    assert bold.sum() > glyph.sum()
    assert not np.array_equal(cells(fonts, CJK, WIDE | glyphs.ITALIC), glyph)


def test_character_no_font_has_is_the_box_logged_once(
    cjk_font: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(glyphs, "_catalog", FontCatalog())
    fonts = FontSet("monospace", 16)
    caplog.set_level(logging.INFO, logger="guacr.render.glyphs")
    fonts.prepare([NO_FONT, NO_FONT_2, "é"])
    box = cells(fonts, NO_FONT_2, WIDE)
    assert np.array_equal(cells(fonts, NO_FONT, WIDE), box)  # the font's own box
    assert box.sum() > 0
    assert not np.array_equal(cells(fonts, "é", 0), cells(fonts, "e", 0))  # own glyph
    lines = [r for r in caplog.records if "No installed font has" in r.getMessage()]
    assert len(lines) == 1


def test_without_fontconfig_everything_degrades_to_boxes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert shutil.which("fc-list")
    monkeypatch.setattr(glyphs, "_catalog", FontCatalog())
    monkeypatch.setenv("PATH", "/nonexistent")  # no fc-list, no fc-match
    caplog.set_level(logging.INFO, logger="guacr.render.glyphs")
    fonts = FontSet("monospace", 16)  # (DejaVu Sans Mono when fc-match can't run)
    fonts.prepare([CJK, NO_FONT])
    fonts.prepare(["日"])
    assert np.array_equal(cells(fonts, CJK, WIDE), cells(fonts, NO_FONT_2, WIDE))
    lines = [r for r in caplog.records if "Font fallback unavailable" in r.getMessage()]
    assert len(lines) == 1


async def test_session_draws_fallback_glyphs(cjk_font: str) -> None:
    """Through TerminalSession: the lookup runs off the loop before the frame is drawn."""
    conn = FakeConn()
    s = TerminalSession(conn, TerminalConfig(), send_input=lambda _: None)
    await s.start()
    try:
        s.write_output(f"{CJK}x".encode())
        await s.drain()
        await asyncio.sleep(0.06)
        fonts = s.view.fonts
        assert not fonts.needs_lookup(CJK)
        d = Display()
        d.feed_all(conn.instructions())
        cw, ch = fonts.cell_width, fonts.cell_height
        shown = np.asarray(d.layers[s.view.text_layer].convert("RGB"))[:ch, : 2 * cw]
        key = s._live[0][0]
        assert key[0] == CJK and key[3] & WIDE
        expected = np.asarray(fonts.compose([[key, continuation(key)]], key[2]).convert("RGB"))
        assert np.array_equal(shown, expected)
        box_key = (NO_FONT_2, key[1], key[2], key[3])
        box = np.asarray(fonts.compose([[box_key, continuation(box_key)]], key[2]).convert("RGB"))
        assert not np.array_equal(shown, box)
    finally:
        await s.close()
