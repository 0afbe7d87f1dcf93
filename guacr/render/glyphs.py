"""Terminal glyphs: font lookup, cell metrics, and fast composition of cell grids.

A terminal cell is identified by a :data:`CellKey` ``(text, fg, bg, flags)``. Its
pixels are a *coverage tile* (how much of each pixel the glyph covers, 0-255) blended
from ``bg`` to ``fg``. Tiles depend only on ``(text, style flags)``, so a handful of
tiles serves every colour, and are shared by all sessions of a worker process using
the same font (one :class:`FontSet` per font name and pixel size).

Composing a rectangle of cells is then pure numpy: gather the tiles into one coverage
plane, and turn (colour pair, coverage) into palette indices. The result is a palette
image that PNG encodes 4-5x faster and ~4x smaller than the RGB equivalent. Measured
once for a full 99x39 screen of ``ls -la`` while choosing this design: ~3.8 ms to
compose (the per-cell index lookup in Python dominates) instead of 6.7 ms of per-cell
``Image.paste`` of cached RGB cells (the fastest Pillow-only strategy in earlier
measurements), which would then still need a 26 ms ``convert("P")`` (or a 13-23 ms
RGB PNG three times larger).

Characters the font lacks (CJK, symbols) are drawn from another installed font, as
guacd's Pango does via fontconfig: :class:`FontCatalog` knows every face's coverage,
:meth:`FontSet.prepare` picks and loads fallback faces off the event loop, and a
character no installed font has is drawn as the font's missing-glyph box.
"""

from __future__ import annotations

import bisect
import logging
import math
import subprocess
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from guacr.render import compose as compose_c

log = logging.getLogger(__name__)

# (text, foreground 0xRRGGBB, background 0xRRGGBB, flags). text "" means a blank cell.
CellKey = tuple[str, int, int, int]

BOLD: Final = 1
ITALIC: Final = 2
UNDERLINE: Final = 4
STRIKE: Final = 8
WIDE: Final = 16  # left half of a double-width character
CONT: Final = 32  # right half of a double-width character

_DRAWN_FLAGS: Final = UNDERLINE | STRIKE

DEFAULT_FONT: Final = "monospace"
FALLBACK_FILES: Final = {
    (False, False): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    (True, False): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    (False, True): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Oblique.ttf",
    (True, True): "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-BoldOblique.ttf",
}
MIN_PIXELS: Final = 4
MAX_PIXELS: Final = 200
MAX_FONTSETS: Final = 16
MAX_TILES: Final = 16384  # coverage tiles per font (190 bytes each at 10x19 px)
FC_TIMEOUT: Final = 5.0  # seconds for one fc-match
FC_LIST_TIMEOUT: Final = 15.0  # seconds for the one fc-list of all fonts
MAX_ANSWERS: Final = 65536  # cached fallback answers (per code point and font name)

U8 = npt.NDArray[np.uint8]


def is_blank(key: CellKey) -> bool:
    """True when a cell shows nothing but its background (drawn as ``rect``+``cfill``)."""
    text = key[0]
    return (not text or text == " ") and not key[3] & _DRAWN_FLAGS


def continuation(key: CellKey) -> CellKey:
    """The key of the right half of wide character ``key`` (emulator adapters use it too)."""
    return (key[0], key[1], key[2], (key[3] & ~WIDE) | CONT)


@lru_cache(maxsize=64)
def font_face(name: str, bold: bool = False, italic: bool = False) -> tuple[str, int]:
    """The font file and face index fontconfig picks for ``name`` (DejaVu Sans Mono
    when it can't).

    Runs ``fc-match`` once per (name, style) and process; call it off the event loop.
    """
    pattern = name or DEFAULT_FONT
    if bold:
        pattern += ":bold"
    if italic:
        pattern += ":italic"
    out = _fc(["fc-match", "-f", "%{file}\t%{index}", pattern])
    path, _, index = out.partition("\t")
    if path:
        return path, _int(index)
    return FALLBACK_FILES[(bold, italic)], 0


def font_file(name: str, bold: bool = False, italic: bool = False) -> str:
    """The font file fontconfig picks for ``name`` (see :func:`font_face`)."""
    return font_face(name, bold, italic)[0]


def _fc(argv: list[str], timeout: float = FC_TIMEOUT) -> str:
    """Output of a fontconfig tool ("" when it is missing, fails or hangs)."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return ""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def font_pixels(points: int, dpi: int) -> int:
    """Font size in pixels: points at the client's DPI, as guacd scales Pango fonts."""
    return max(1, round(points * dpi / 72))


def rgb(value: int) -> tuple[int, int, int]:
    """0xRRGGBB -> (r, g, b)."""
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


# Font fallback ----------------------------------------------------------------------
# guacd draws with Pango, whose fontconfig fallback finds another installed font for
# characters the terminal font lacks (CJK, symbols, emoji). We do the same with the
# fontconfig command-line tools: one ``fc-list`` per process lists every scalable face
# with its coverage; ``fc-match`` is asked which face it prefers only when no face
# already chosen for the font covers a character (so at most once per installed face).


class Charset:
    """A set of code points stored as sorted ranges (fontconfig's ``%{charset}``)."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self._starts = [a for a, _ in ranges]
        self._ends = [z for _, z in ranges]

    @classmethod
    def parse(cls, text: str) -> Charset:
        """``"20-7e a0 100-17f"`` (hex, inclusive) -> Charset."""
        ranges: list[tuple[int, int]] = []
        for part in text.split():
            a, _, z = part.partition("-")
            try:
                lo = int(a, 16)
                ranges.append((lo, int(z, 16) if z else lo))
            except ValueError:
                continue
        ranges.sort()
        return cls(ranges)

    def __contains__(self, cp: object) -> bool:
        if not isinstance(cp, int):
            return False
        i = bisect.bisect_right(self._starts, cp) - 1
        return i >= 0 and cp <= self._ends[i]

    def __len__(self) -> int:
        return len(self._starts)


FaceRef = tuple[str, int]  # (font file, face index)
_PENDING: Final = ("", -1)  # an answer that needs a subprocess, asked not to run one


class FontCatalog:
    """The installed scalable fonts and what each covers (process-wide, thread-safe).

    Everything that runs a fontconfig tool blocks: call :meth:`load` and
    :meth:`find` with ``spawn=True`` off the event loop only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loaded = False
        self.faces: dict[FaceRef, Charset] = {}
        self._chosen: dict[str, list[FaceRef]] = {}  # per font name, in order of choice
        self._answers: dict[tuple[str, int], FaceRef | None] = {}
        self._warned = False

    def load(self) -> None:
        """List the faces (once); with no fontconfig, fallback is just off (boxes)."""
        with self._lock:
            if self.loaded:
                return
            out = _fc(
                ["fc-list", ":scalable=true", "-f", "%{file}\t%{index}\t%{color}\t%{charset}\n"],
                timeout=FC_LIST_TIMEOUT,
            )
            for line in out.splitlines():
                path, index, color, charset = [*line.split("\t"), "", "", ""][:4]
                if not path or color.strip().lower() == "true":
                    continue  # colour (bitmap) emoji fonts can't be scaled to a cell
                self.faces.setdefault((path, _int(index)), Charset.parse(charset))
            if not self.faces:
                log.warning(
                    "Font fallback unavailable (fontconfig's fc-list found no fonts): "
                    "characters missing from the terminal font are drawn as boxes"
                )
            self.loaded = True

    def coverage(self, ref: FaceRef) -> Charset | None:
        """What face ``ref`` covers (None: not a face fontconfig knows)."""
        return self.faces.get(ref)

    def find(self, cp: int, family: str, spawn: bool = True) -> FaceRef | None:
        """A face covering ``cp`` for font ``family`` (None: no installed font has it).

        With ``spawn=False`` returns ``_PENDING`` instead of running ``fc-match``.
        """
        key = (family, cp)
        with self._lock:
            if key in self._answers:
                return self._answers[key]
            chosen = self._chosen.setdefault(family, [])
            for ref in chosen:
                if cp in self.faces[ref]:
                    return self._answer(key, ref)
            candidates = [ref for ref, cover in self.faces.items() if cp in cover]
            if not candidates:
                return self._answer(key, None)
        if not spawn:
            return _PENDING
        # fontconfig's own preference (charset ranks above family in its matching)
        out = _fc(["fc-match", "-f", "%{file}\t%{index}", f"{family}:charset={cp:x}"])
        path, _, index = out.partition("\t")
        ref = (path, _int(index))
        with self._lock:
            if ref not in candidates:
                ref = candidates[0]
            if ref not in chosen:
                chosen.append(ref)
            return self._answer(key, ref)

    def _answer(self, key: tuple[str, int], ref: FaceRef | None) -> FaceRef | None:
        if len(self._answers) >= MAX_ANSWERS:
            self._answers.clear()
        self._answers[key] = ref
        if ref is None and not self._warned and self.faces:
            self._warned = True
            log.info(
                "No installed font has U+%04X: characters without a font are drawn as "
                "boxes (install more fonts, e.g. fonts-wqy-microhei for CJK)",
                key[1],
            )
        return ref


_catalog = FontCatalog()


def catalog() -> FontCatalog:
    """The process-wide font catalog."""
    return _catalog


def _ignorable(cp: int) -> bool:
    """Code points a cluster may hold that need no glyph (joiners, variation selectors)."""
    return cp in (0x200C, 0x200D) or 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


class FontSet:
    """One font at one pixel size: its faces, cell metrics and coverage tiles."""

    def __init__(self, name: str, pixels: int) -> None:
        self.name = name
        self.pixels = pixels
        self._faces: dict[tuple[bool, bool], ImageFont.FreeTypeFont] = {}
        regular = self._face(False, False)
        ascent, descent = regular.getmetrics()
        self.ascent = ascent
        # Cell size from the font's own metrics: advance of a digit, ascent + descent.
        self.cell_width = cw = max(1, round(regular.getlength("0")))
        self.cell_height = ch = max(1, ascent + descent)
        self._lock = threading.Lock()  # tiles are made from encoder threads too
        self._tile_ids: dict[tuple[str, int], int] = {("", 0): 0}
        self.tiles: U8 = np.zeros((64, ch, cw), np.uint8)  # tile 0: blank
        self.generation = 0  # bumped when the tile table starts over
        for bold, italic in FALLBACK_FILES:  # now, off the loop: fc-match runs per style
            self._face(bold, italic)
        # fallback fonts for characters this font lacks (see prepare()); the catalog is
        # listed now (once per process, ~6 ms with 24 faces) so the coverage of our own
        # font is known without waiting for prepare()
        self._catalog = catalog()
        self._catalog.load()
        self._fb_lock = threading.Lock()
        self._fallback: dict[str, ImageFont.FreeTypeFont | None] = {}  # None: own face
        self._fb_faces: dict[FaceRef, ImageFont.FreeTypeFont | None] = {}

    def _face(self, bold: bool, italic: bool) -> ImageFont.FreeTypeFont:
        face = self._faces.get((bold, italic))
        if face is None:
            path, index = font_face(self.name, bold, italic)
            try:
                face = ImageFont.truetype(path, self.pixels, index=index & 0xFFFF)
            except OSError:
                face = ImageFont.truetype(FALLBACK_FILES[(bold, italic)], self.pixels)
            self._faces[(bold, italic)] = face
        return face

    # Fallback fonts -------------------------------------------------------------------
    def needs_lookup(self, text: str) -> bool:
        """True when ``text`` may need another font and :meth:`prepare` hasn't looked yet."""
        return not text.isascii() and text not in self._fallback

    def prepare(self, texts: Iterable[str]) -> None:
        """Find fonts for the characters of ``texts`` this font lacks.

        Blocking (fontconfig tools, font files): call it off the event loop before the
        tiles are drawn. A tile asked for before that is drawn with this font (a box)
        and not kept, so it is drawn properly once prepared.
        """
        for text in texts:
            self._lookup(text, spawn=True)

    def _lookup(self, text: str, spawn: bool) -> tuple[ImageFont.FreeTypeFont | None, bool]:
        """(face to draw ``text`` with, None for our own; False if not known yet)."""
        if text.isascii():
            return None, True
        try:
            return self._fallback[text], True
        except KeyError:
            pass
        cat = self._catalog
        if not cat.loaded:
            if not spawn:
                return None, False
            cat.load()
        cover = cat.coverage(font_face(self.name))
        face: ImageFont.FreeTypeFont | None = None
        if cover is not None:  # unknown coverage (no fontconfig): draw with our own
            for ch in text:
                cp = ord(ch)
                if cp in cover or _ignorable(cp):
                    continue
                ref = cat.find(cp, self.name, spawn)
                if ref is _PENDING:
                    return None, False
                if ref is not None:
                    face = self._fallback_face(ref)
                break  # the first missing character picks the font for the cluster
        with self._fb_lock:
            if len(self._fallback) >= MAX_TILES:
                self._fallback.clear()
            self._fallback[text] = face
        return face, True

    def _fallback_face(self, ref: FaceRef) -> ImageFont.FreeTypeFont | None:
        with self._fb_lock:
            if ref in self._fb_faces:
                return self._fb_faces[ref]
        face: ImageFont.FreeTypeFont | None
        try:
            face = ImageFont.truetype(ref[0], self.pixels, index=ref[1] & 0xFFFF)
        except OSError as exc:
            log.warning("Fallback font %s unusable, drawing boxes instead: %s", ref[0], exc)
            face = None
        with self._fb_lock:
            self._fb_faces[ref] = face
        return face

    # Tiles ------------------------------------------------------------------------
    def tile(self, text: str, flags: int) -> int:
        """Index of the coverage tile for ``text`` drawn with style ``flags``."""
        if (not text or text == " ") and not flags & (_DRAWN_FLAGS | CONT):
            return 0
        tid = self._tile_ids.get((text, flags))
        if tid is not None:
            return tid
        with self._lock:
            tid = self._tile_ids.get((text, flags))
            if tid is None:
                tid = self._add_tiles(text, flags)
        return tid

    def _add_tiles(self, text: str, flags: int) -> int:
        if len(self._tile_ids) + 2 > MAX_TILES:
            # Rare (thousands of distinct characters): start over; old indices stay
            # valid in arrays already taken by callers.
            self._tile_ids = {("", 0): 0}
            self.tiles = np.zeros_like(self.tiles[:64])
            self.generation += 1
        lead = (flags & ~CONT) | WIDE if flags & (WIDE | CONT) else flags
        mask, settled = self._render(text, lead)
        cw = self.cell_width
        if lead & WIDE:
            halves = [(lead, mask[:, :cw]), ((lead & ~WIDE) | CONT, mask[:, cw : 2 * cw])]
        else:
            halves = [(flags, mask)]
        n = len(self._tile_ids)
        tiles = self.tiles
        if n + len(halves) > len(tiles):
            grown = np.zeros((len(tiles) * 2, *tiles.shape[1:]), np.uint8)
            grown[: len(tiles)] = tiles
            tiles = grown
        wanted = n
        for f, m in halves:
            tiles[n] = m
            if f == flags:
                wanted = n
            # A provisional box (font not looked up yet) is not found again; its slot
            # still counts as used (callers may hold its index).
            self._tile_ids[(text, f) if settled else ("", -1 - n)] = n
            n += 1
        self.tiles = tiles  # publish after filling: readers index the array they took
        return wanted

    def _render(self, text: str, flags: int) -> tuple[U8, bool]:
        cells = 2 if flags & WIDE else 1
        w, h = self.cell_width * cells, self.cell_height
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        settled = True
        if text and text != " ":
            fallback, settled = self._lookup(text, spawn=False)
            if fallback is not None:
                self._draw_fallback(img, fallback, text, flags)
            else:
                face = self._face(bool(flags & BOLD), bool(flags & ITALIC))
                draw.text((0, 0), text, font=face, fill=255)
        thickness = max(1, self.pixels // 14)
        if flags & UNDERLINE:
            y = min(h - thickness, self.ascent + 1)
            draw.rectangle((0, y, w - 1, y + thickness - 1), fill=255)
        if flags & STRIKE:
            y = self.ascent * 2 // 3
            draw.rectangle((0, y, w - 1, y + thickness - 1), fill=255)
        # 16 coverage levels: indistinguishable on screen, and text PNGs shrink by 30-50%
        # (measured: a 99-column row of `ls -la` 2444 -> 1286 bytes, a full screen
        # 33 -> 23 KB), while 16 colour pairs still fit one exact 256-entry palette.
        mask = np.asarray(img, dtype=np.uint16)
        return ((mask + 8) // 17 * 17).astype(np.uint8), settled

    def _draw_fallback(
        self, img: Image.Image, face: ImageFont.FreeTypeFont, text: str, flags: int
    ) -> None:
        """Draw ``text`` from another font into ``img`` (its cells): on our baseline,
        centred, scaled down if its ink or advance would not fit; bold and italic are
        synthesised (fallback fonts seldom come with those styles)."""
        w, h = img.size
        left, top, right, bottom = face.getbbox(text, anchor="ls")
        if right <= left or bottom <= top:
            return  # no ink
        x0 = min(0.0, left)
        span_w = max(face.getlength(text), right) - x0
        span_h = bottom - top
        slant = 0.2 if flags & ITALIC else 0.0
        bold = 1 if flags & BOLD else 0
        gw = math.ceil(span_w + slant * span_h) + bold
        glyph = Image.new("L", (gw, int(span_h)), 0)
        draw = ImageDraw.Draw(glyph)
        for dx in range(bold + 1):
            draw.text((dx - x0, -top), text, font=face, fill=255, anchor="ls")
        if slant:
            glyph = glyph.transform(
                glyph.size, Image.Transform.AFFINE, (1, slant, -slant * glyph.height, 0, 1, 0)
            )
        scale = min(1.0, w / glyph.width, h / glyph.height)
        if scale < 1.0:
            size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
            glyph = glyph.resize(size, Image.Resampling.LANCZOS)
        x = (w - glyph.width) // 2
        y = min(max(0, self.ascent + round(top * scale)), h - glyph.height)
        img.paste(glyph, (x, y))

    # Composition ---------------------------------------------------------------------
    def compose(self, grid: Sequence[Sequence[CellKey | None]], background: int) -> Image.Image:
        """The image of a rectangle of cells (None = blank ``background``).

        A palette image whenever at most 256 (colour pair, coverage) combinations occur
        (exact); otherwise coverage is quantised step by step until they fit (a lossless
        RGB image is the last resort for very colourful blocks).
        """
        rows = len(grid)
        cols = max((len(r) for r in grid), default=0)
        if not rows or not cols:
            return Image.new("RGB", (max(1, cols * self.cell_width), 1), rgb(background))
        while True:
            generation = self.generation
            tid, pid, pairs = self._indices(grid, rows, cols, background)
            tiles = self.tiles
            if generation == self.generation:
                break
        ch, cw = self.cell_height, self.cell_width
        pair_list = list(pairs)
        native = compose_c.palette_indices
        if native is not None:
            found = native(tiles, tid, pid, len(pair_list))
            if found is not None:
                return _indexed_image(*found, pair_list)
        cov = tiles[tid].transpose(0, 2, 1, 3).reshape(rows * ch, cols * cw)
        if len(pair_list) == 1:
            combo = cov.astype(np.int32)
        else:
            pix_pair = np.repeat(np.repeat(pid, ch, axis=0), cw, axis=1)
            combo = pix_pair * 256 + cov
        return _palette_image(combo, pair_list) or _rgb_image(cov, pid, pair_list, ch, cw)

    def _indices(
        self, grid: Sequence[Sequence[CellKey | None]], rows: int, cols: int, background: int
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], dict[tuple[int, int], int]]:
        """Per cell: tile index and colour-pair index; and the pairs in order.

        Equal cells are mostly one interned key, so each distinct key is looked up once
        per call and the rest is one dict hit per cell (this loop holds the GIL in an
        encoder thread: 0.3-0.5 ms per full screen, 1 ms with a lookup per cell)."""
        tile = self.tile
        pairs: dict[tuple[int, int], int] = {}
        blank_pair = (background, background)
        found: dict[CellKey | None, int] = {}  # key -> tile << 32 | pair

        def look_up(key: CellKey | None) -> int:
            if key is None:
                t, pair = 0, blank_pair
            else:
                t = tile(key[0], key[3])
                # a blank cell only shows its background: don't spend a pair on it
                pair = (key[1], key[2]) if t else (key[2], key[2])
            p = pairs.get(pair)
            if p is None:
                p = pairs[pair] = len(pairs)
            found[key] = ids = t << 32 | p
            return ids

        get = found.get
        cells: list[int] = []
        for row in grid:
            # (0 is tile 0 with pair 0: looked up again, which finds the same)
            cells += [get(key) or look_up(key) for key in row]
            if len(row) < cols:
                cells += [pairs.setdefault(blank_pair, len(pairs))] * (cols - len(row))
        ids = np.array(cells, np.int64).reshape(rows, cols)
        tid = (ids >> 32).astype(np.int32)
        return tid, _share_blank_pairs(tid, (ids & 0xFFFFFFFF).astype(np.int32), pairs), pairs


def _share_blank_pairs(
    tid: npt.NDArray[np.int32], pid: npt.NDArray[np.int32], pairs: dict[tuple[int, int], int]
) -> npt.NDArray[np.int32]:
    """Blank cells (tile 0, no coverage) show only their background, which any pair of
    that background draws the same: they take the first text pair of theirs. Text on
    one background is then 16 palette entries instead of 17 (the background twice), a
    4-bit PNG: a full screen of ``cat`` output 17.6 -> 10.1 KB, 4.5 -> 3.6 ms to encode."""
    if len(pairs) < 2:
        return pid
    text_pair: dict[int, int] = {}
    for (fg, bg), i in pairs.items():
        if fg != bg:
            text_pair.setdefault(bg, i)
    remap: npt.NDArray[np.int32] | None = None
    for (fg, bg), i in pairs.items():
        if fg == bg and bg in text_pair:
            if remap is None:
                remap = np.arange(len(pairs), dtype=np.int32)
            remap[i] = text_pair[bg]
    if remap is None:
        return pid
    return np.where(tid == 0, remap[pid], pid).astype(np.int32)


def _indexed_image(
    used: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    index: npt.NDArray[np.uint8],
    pairs: list[tuple[int, int]],
    shift: int = 0,
) -> Image.Image:
    """The palette image of ``index`` whose entries are the (pair * 256 + coverage)
    values ``used``: each the blend of its pair at that coverage (coverage quantised by
    ``shift`` bits stands for the middle of its step)."""
    colours = np.array(pairs, np.int64)[used >> 8]  # (n, 2): fg, bg
    shifts = np.array([16, 8, 0], np.int64)
    fg = (colours[:, :1] >> shifts) & 0xFF
    bg = (colours[:, 1:] >> shifts) & 0xFF
    a = (used & 255).astype(np.int64)[:, None]
    if shift:
        a = np.minimum(255, a + ((1 << shift) - 1) // 2)
    palette = (bg * (255 - a) + fg * a + 127) // 255
    h, w = index.shape
    img = Image.frombuffer("P", (w, h), index, "raw", "P", 0, 1)  # no copy of the pixels
    img.putpalette(palette.astype(np.uint8).tobytes())
    return img


def _palette_image(
    combo: npt.NDArray[np.int32], pairs: list[tuple[int, int]]
) -> Image.Image | None:
    """Map (pair * 256 + coverage) values to at most 256 palette entries."""
    size = len(pairs) * 256
    for shift in range(0, 8):
        values = combo if not shift else (combo >> 8 << 8) | ((combo & 255) >> shift << shift)
        counts = np.bincount(values.ravel(), minlength=size)
        used = np.flatnonzero(counts)
        if len(used) <= 256:
            lut = np.zeros(size, np.uint8)
            lut[used] = np.arange(len(used), dtype=np.uint8)
            return _indexed_image(used, lut[values], pairs, shift)
        if len(pairs) == 1:
            break  # a single pair has at most 256 combinations: unreachable
    return None


def _rgb_image(
    cov: U8, pid: npt.NDArray[np.int32], pairs: list[tuple[int, int]], ch: int, cw: int
) -> Image.Image:
    """Lossless RGB blend for blocks with too many colours for a palette."""
    fg = np.array([rgb(p[0]) for p in pairs], np.uint16)
    bg = np.array([rgb(p[1]) for p in pairs], np.uint16)
    pix = np.repeat(np.repeat(pid, ch, axis=0), cw, axis=1)
    a = cov.astype(np.uint16)[..., None]
    out = (bg[pix] * (255 - a) + fg[pix] * a + 127) // 255
    return Image.fromarray(out.astype(np.uint8), "RGB")


_fontsets: dict[tuple[str, int], FontSet] = {}
_fontsets_lock = threading.Lock()


def get_fontset(name: str, pixels: int) -> FontSet:
    """The shared :class:`FontSet` for ``name`` at ``pixels`` (blocking on first use).

    Sizes are clamped and few sets are kept (sessions hold on to theirs), so clients
    sending many ``font-size`` updates cannot make a worker load fonts without bound.
    """
    key = (name or DEFAULT_FONT, min(max(pixels, MIN_PIXELS), MAX_PIXELS))
    with _fontsets_lock:
        fs = _fontsets.get(key)
        if fs is None:
            fs = FontSet(*key)
            if len(_fontsets) >= MAX_FONTSETS:
                del _fontsets[next(iter(_fontsets))]
            _fontsets[key] = fs
        return fs
