"""Terminal glyphs: font lookup, cell metrics and a cache of rendered cell images.

A terminal cell is identified by a :data:`CellKey` ``(text, fg, bg, flags)``; its image
is the glyph drawn on its background, ``width`` cells wide. Rendering each distinct key
once and pasting the cached image is the fastest Pillow strategy measured
(shared/reference libraries.md §4: 3.7 ms for a full 80x24 screen against 7.3 ms per
attribute run and 17 ms per cell), and only a few dozen distinct keys appear on a
typical screen, so the cache stays small.

Fonts are shared by every session of a worker process: one :class:`FontSet` per
(font name, pixel size), because FreeType faces and cached glyphs are the bulk of a
terminal's memory.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from functools import lru_cache
from typing import Final

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

# (text, foreground 0xRRGGBB, background 0xRRGGBB, flags). text "" means a blank cell.
CellKey = tuple[str, int, int, int]

BOLD: Final = 1
ITALIC: Final = 2
UNDERLINE: Final = 4
STRIKE: Final = 8
WIDE: Final = 16  # first half of a double-width character (its image is two cells wide)
CONT: Final = 32  # second half of a double-width character: never drawn by itself

_DRAWN_FLAGS: Final = UNDERLINE | STRIKE

DEFAULT_FONT: Final = "monospace"
FALLBACK_FILES: Final = {
    (False, False): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    (True, False): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    (False, True): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Oblique.ttf",
    (True, True): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-BoldOblique.ttf",
}
GLYPH_CACHE_SIZE: Final = 4096  # cell images kept per font (about 0.6 KB each at 10x19)


def is_blank(key: CellKey) -> bool:
    """True when a cell shows nothing but its background (drawn as ``rect``+``cfill``)."""
    text = key[0]
    return (not text or text == " ") and not key[3] & _DRAWN_FLAGS


@lru_cache(maxsize=64)
def font_file(name: str, bold: bool = False, italic: bool = False) -> str:
    """The font file fontconfig picks for ``name`` (DejaVu Sans Mono when it can't).

    Runs ``fc-match`` once per (name, style) and process; call it off the event loop.
    """
    pattern = name or DEFAULT_FONT
    if bold:
        pattern += ":bold"
    if italic:
        pattern += ":italic"
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", pattern],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        log.debug("fc-match failed for %r", pattern)
    return FALLBACK_FILES[(bold, italic)]


def font_pixels(points: int, dpi: int) -> int:
    """Font size in pixels: points at the client's DPI, as guacd scales Pango fonts."""
    return max(1, round(points * dpi / 72))


class FontSet:
    """The four faces of one font at one pixel size, its cell metrics and glyph cache."""

    def __init__(self, name: str, pixels: int) -> None:
        self.name = name
        self.pixels = pixels
        self._faces: dict[tuple[bool, bool], ImageFont.FreeTypeFont] = {}
        regular = self._face(False, False)
        ascent, descent = regular.getmetrics()
        self.ascent = ascent
        # Cell size from the font's own metrics: advance of a digit, ascent + descent.
        self.cell_width = max(1, round(regular.getlength("0")))
        self.cell_height = max(1, ascent + descent)
        self._cache: dict[CellKey, Image.Image] = {}
        self._lock = threading.Lock()  # cells are rendered from the encoder threads too

    def _face(self, bold: bool, italic: bool) -> ImageFont.FreeTypeFont:
        face = self._faces.get((bold, italic))
        if face is None:
            path = font_file(self.name, bold, italic)
            try:
                face = ImageFont.truetype(path, self.pixels)
            except OSError:
                face = ImageFont.truetype(FALLBACK_FILES[(bold, italic)], self.pixels)
            self._faces[(bold, italic)] = face
        return face

    def cell(self, key: CellKey) -> Image.Image:
        """The RGB image of one cell (two cells wide for WIDE), cached."""
        img = self._cache.get(key)
        if img is not None:
            return img
        with self._lock:
            img = self._cache.get(key)
            if img is None:
                img = self._render(key)
                if len(self._cache) >= GLYPH_CACHE_SIZE:
                    # FIFO eviction: cheap, and the working set is far below the limit.
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = img
        return img

    def _render(self, key: CellKey) -> Image.Image:
        text, fg, bg, flags = key
        cells = 2 if flags & WIDE else 1
        w, h = self.cell_width * cells, self.cell_height
        img = Image.new("RGB", (w, h), _rgb(bg))
        if flags & CONT:
            return img
        draw = ImageDraw.Draw(img)
        colour = _rgb(fg)
        if text and text != " ":
            face = self._face(bool(flags & BOLD), bool(flags & ITALIC))
            draw.text((0, 0), text, font=face, fill=colour)
        thickness = max(1, self.pixels // 14)
        if flags & UNDERLINE:
            y = min(h - thickness, self.ascent + 1)
            draw.rectangle((0, y, w - 1, y + thickness - 1), fill=colour)
        if flags & STRIKE:
            y = self.ascent * 2 // 3
            draw.rectangle((0, y, w - 1, y + thickness - 1), fill=colour)
        return img


def _rgb(value: int) -> tuple[int, int, int]:
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


_fontsets: dict[tuple[str, int], FontSet] = {}
_fontsets_lock = threading.Lock()


def get_fontset(name: str, pixels: int) -> FontSet:
    """The shared :class:`FontSet` for ``name`` at ``pixels`` (blocking on first use)."""
    key = (name or DEFAULT_FONT, pixels)
    with _fontsets_lock:
        fs = _fontsets.get(key)
        if fs is None:
            fs = FontSet(*key)
            _fontsets[key] = fs
        return fs
