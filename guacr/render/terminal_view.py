"""Terminal screen -> Guacamole drawing instructions, sending only what changed.

The view keeps a *model* of what every client currently shows: one :data:`CellKey`
per cell (None = unknown). Each update first replays scrolls as a ``copy`` of the
text layer onto itself (never a re-encode), shifting the model the same way, then
redraws exactly the cells whose key differs from the model. So the view is correct
whatever the emulator reports: damage and scroll events only make it cheaper.

Layers, as guacd lays them out: the display (layer 0) is filled with the background;
the text layer is moved to (margin, margin), the margin being 2 mm at the client's DPI
(7 px at 96 dpi); a scrollbar layer sits at the right edge. The cursor is its own small
layer above the text holding the inverted cell, so moving or hiding it is one ``move``
or ``shade`` and never touches the text.

How changed cells are drawn -- measured, then chosen (``benchmarks/bench_ssh.py render``:
99x39 cells, DejaVu Sans Mono 16 px; bytes are exact, times from a loaded 2-core VM):

* ``glyphs`` (the idea from the issue): each distinct cell (character + colours +
  attributes) is drawn once into an off-screen buffer on the client (negative layer
  index, the *atlas*); every later cell is one ``copy`` from it; blank runs are
  ``rect`` + ``cfill``.
* ``images``: changed cells are composed into one image per block of changed rows and
  sent as a palette PNG (lossless WebP when every user offered it and it is smaller).

=========================  ====================  ====================
per frame                   glyphs                images
=========================  ====================  ====================
keystroke echo              84 B, ~0.15-0.4 ms    277 B, ~0.25 ms
full screen (``ls -la``)    63 KB, ~7 ms          48 KB, ~16-36 ms
bulk output (``seq``)       7.9 KB                3.8 KB
one long line scrolled in   7.7 KB                4.5 KB
=========================  ====================  ====================

A glyph copy is ~55 bytes of instruction while antialiased text compresses to ~15-25
bytes per cell as PNG, so copies only win for a handful of cells -- but those are the
most frequent frames (typing, cursor-line edits), where they are 3x smaller, need no
encoder at all, and a client draws them without decoding anything. Hence ``auto``
(the default, a hybrid): a frame changing at most :data:`FRAME_GLYPH_LIMIT` glyphs is
drawn with atlas copies only; otherwise rows changing more than
:data:`ROW_GLYPH_LIMIT` glyphs go out as images and the rest as copies. Measured with
``auto``: keystroke 84 B, full screen 48 KB, bulk frame 3.8 KB.

CPU-heavy work (composing and encoding big images) runs in a small bounded thread pool;
images of at most :data:`INLINE_CELLS` cells (~0.1-0.2 ms of encoding: a glyph strip,
one short row) are encoded inline, so an echo frame never waits for a thread hand-off.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from PIL import Image

from guacr.control import figures
from guacr.protocol import builders as b
from guacr.render.glyphs import CONT, WIDE, CellKey, FontSet, continuation, is_blank, rgb

if TYPE_CHECKING:
    from guacr.contract.peers import Connection

Strategy = Literal["auto", "glyphs", "images"]

SCROLLBAR_WIDTH: Final = 16  # guacd: 16 px wide, 2 px padding, handle at least 64 px
SCROLLBAR_PADDING: Final = 2
SCROLLBAR_MIN_HANDLE: Final = 64
FRAME_GLYPH_LIMIT: Final = 8  # frames changing at most this many glyphs use copies only
ROW_GLYPH_LIMIT: Final = 2  # otherwise rows changing more glyphs than this are images
INLINE_CELLS: Final = 100  # images of up to this many cells are encoded on the loop
# Lossless WebP (quality 50, method 2) is tried for mid-sized images when every user
# offered it: measured on `ls -la` text it is ~35% smaller than our palette PNG (one
# 99-column row 1521 -> 992 bytes, four rows 4706 -> 2928) for ~4x the CPU (0.2 ->
# 0.9 ms per row). A full screen would cost ~30 ms instead of ~6 ms: PNG only there.
WEBP_MIN_PIXELS: Final = 2048
WEBP_MAX_PIXELS: Final = 150_000
# A changed row is compared a chunk of cells at a time (a list slice compares in C) and
# cell by cell only inside a chunk that differs: an echo changes one or two cells.
DIFF_CHUNK: Final = 16
WHOLE_ROWS: Final = 0.75  # this share of rows differing: redraw them whole (no cell diff)
ATLAS_COLUMNS: Final = 32  # glyph slots per atlas row
ATLAS_MAX_ROWS: Final = 128  # 4096 slots; a full atlas is reset (rare)
PNG_LEVEL: Final = 6

Row = Sequence[CellKey]

Pointer = Literal["blank", "ibar", "arrow"]
# Pointer images: x offset in the pointer buffer, size, hotspot (guacd shows an I-beam
# over text and an arrow over the scrollbar).
_POINTERS: Final[dict[str, tuple[int, int, int, int, int]]] = {
    "ibar": (0, 7, 16, 3, 8),
    "arrow": (8, 11, 18, 0, 0),
    "blank": (20, 1, 1, 0, 0),
}
_pointer_png: bytes | None = None


def pointer_png() -> bytes:
    """One PNG holding the I-beam, the arrow and a blank pixel (made once per process)."""
    global _pointer_png
    if _pointer_png is None:
        from PIL import ImageDraw

        img = Image.new("RGBA", (21, 18), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        white, black = (255, 255, 255, 255), (0, 0, 0, 255)
        # I-beam: white outline, black stroke
        d.rectangle((2, 0, 4, 15), fill=white)
        d.rectangle((0, 0, 6, 2), fill=white)
        d.rectangle((0, 13, 6, 15), fill=white)
        d.line((3, 1, 3, 14), fill=black)
        d.line((1, 1, 5, 1), fill=black)
        d.line((1, 14, 5, 14), fill=black)
        # arrow: black body, white border
        arrow = [(8, 0), (8, 15), (11, 12), (14, 17), (16, 16), (13, 11), (18, 11)]
        d.polygon(arrow, fill=black, outline=white)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        _pointer_png = buf.getvalue()
    return _pointer_png


_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    global _pool
    _pool = None  # its threads are not in a forked child: the child starts its own


os.register_at_fork(after_in_child=_forget_pool)


def encoder_pool() -> ThreadPoolExecutor:
    """The process-wide, bounded pool for composing and encoding images."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="guacr-render"
        )
    return _pool


def margin_for_dpi(dpi: int) -> int:
    """guacd's outer margin: 2 mm at the client's resolution (7 px at 96 dpi)."""
    return int(dpi * 2 / 25.4)


@dataclass(frozen=True)
class Cursor:
    """Where the text cursor is shown (screen coordinates) and whether at all."""

    row: int
    col: int
    visible: bool = True


@dataclass
class _Img:
    """A rectangle of cells still to compose and encode, drawn at (x, y) on ``layer``."""

    layer: int
    x: int
    y: int
    grid: Sequence[Sequence[CellKey | None]]

    @property
    def cells(self) -> int:
        return sum(len(r) for r in self.grid)


Op = bytes | _Img


def encode_image(img: Image.Image, webp: bool) -> tuple[str, bytes]:
    """Lossless encoding: palette PNG when it fits, else RGB PNG; WebP if smaller."""
    src = img
    if img.mode != "P":  # composed text is a palette image already, every entry used
        colours = img.getcolors(256)  # (0.6 ms per full screen, holding the GIL)
        if colours is not None:
            # ADAPTIVE with no more colours than the image holds is exact (tested).
            src = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=max(2, len(colours)))
    buf = io.BytesIO()
    src.save(buf, "PNG", compress_level=PNG_LEVEL)
    png = buf.getvalue()
    if webp and WEBP_MIN_PIXELS <= img.width * img.height <= WEBP_MAX_PIXELS:
        wbuf = io.BytesIO()
        img.save(wbuf, "WEBP", lossless=True, quality=50, method=2)
        if wbuf.tell() < len(png):
            return "image/webp", wbuf.getvalue()
    return "image/png", png


def _encode_jobs(
    fonts: FontSet, jobs: list[_Img], background: int, webp: bool
) -> list[tuple[str, bytes]]:
    return [encode_image(fonts.compose(j.grid, background), webp) for j in jobs]


def _timed_encode_jobs(
    fonts: FontSet, jobs: list[_Img], background: int, webp: bool
) -> tuple[list[tuple[str, bytes]], float]:
    """:func:`_encode_jobs` in a pool thread, with the thread's CPU seconds for it."""
    started = time.thread_time()
    return _encode_jobs(fonts, jobs, background, webp), time.thread_time() - started


def _cell_row(key: CellKey) -> list[CellKey | None]:
    """One cell as an image row (two cells for a wide character)."""
    return [key, continuation(key)] if key[3] & WIDE else [key]


def _add_to_blocks(blocks: list[list[int]], r: int, c0: int, c1: int) -> None:
    """Row ``r``'s cells [c0, c1) into ``blocks`` ([row0, row1, col0, col1], one image
    each): into the last block when it ends at the row above and their union is at most
    1.5x the block and the row (little blank drawn for one image less), else a new one."""
    if blocks:
        br0, br1, bc0, bc1 = blocks[-1]
        u0, u1 = min(bc0, c0), max(bc1, c1)
        if br1 == r and (u1 - u0) * (r + 1 - br0) <= 1.5 * ((bc1 - bc0) * (br1 - br0) + (c1 - c0)):
            blocks[-1] = [br0, r + 1, u0, u1]
            return
    blocks.append([r, r + 1, c0, c1])


class TerminalView:
    """The drawing side of one terminal: layers, model of the clients' screen, atlas."""

    def __init__(
        self,
        conn: Connection,
        fonts: FontSet,
        width: int,
        height: int,
        dpi: int,
        background: int,
        strategy: Strategy = "auto",
    ) -> None:
        self.conn = conn
        self.fonts = fonts
        self.strategy: Strategy = strategy
        self.background = background
        self.text_layer = conn.layers.alloc()
        self.cursor_layer = conn.layers.alloc()
        self.scrollbar_layer = conn.layers.alloc()
        self.atlas_buffer = conn.buffers.alloc()
        self.pointer_buffer = conn.buffers.alloc()
        self._pointer: Pointer = "blank"
        self._pointer_drawn: Pointer | None = None
        self.lock = asyncio.Lock()  # one update or join replay at a time (see session)
        self.webp = False
        self.width = width
        self.height = height
        self.dpi = dpi
        self.margin = margin_for_dpi(dpi)
        self.cols, self.rows = self.grid_size(width, height)
        self._model: list[list[CellKey | None]] = []
        self._moves: list[tuple[int, int, int]] = []
        # Per row, the screen row (object) the model was last brought up to: a row passed
        # again unchanged is then skipped without comparing its cells (rows are
        # snapshots, never changed in place once passed to an update).
        self._seen: list[Row | None] = []
        self._reset_model()
        self._reset_atlas()
        self._cursor_pos: tuple[int, int] | None = None
        self._cursor_key: CellKey | None = None
        self._cursor_shown = False
        self._scroll_state = (0, 0)  # (scrollback rows, offset) the scrollbar shows
        self._scroll_drawn: tuple[int, int, int] | None = None
        self._layout_pending = True  # layers need (re)sizing in the next update
        # CPU seconds the last update took (plan + encoding, also in the pool's thread):
        # what a frame costs the worker, without the time spent waiting for a thread
        self.last_cost = 0.0

    # Geometry ------------------------------------------------------------------------
    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        """Columns and rows that fit ``width`` x ``height`` px (minus margins, scrollbar)."""
        m = margin_for_dpi(self.dpi)
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        cols = max(1, (width - 2 * m - SCROLLBAR_WIDTH) // cw)
        rows = max(1, (height - 2 * m) // ch)
        return cols, rows

    def resize(self, width: int, height: int) -> tuple[int, int]:
        """New display size; returns the new grid (the emulator must follow)."""
        self.width, self.height = width, height
        cols, rows = self.grid_size(width, height)
        if (cols, rows) != (self.cols, self.rows):
            self.cols, self.rows = cols, rows
            self._reset_model()
        self._layout_pending = True
        self._scroll_drawn = None
        return cols, rows

    def set_font(self, fonts: FontSet) -> tuple[int, int]:
        """Switch font (live ``font-name``/``font-size``): new cells, new grid."""
        self.fonts = fonts
        self._reset_atlas()
        self._cursor_key = None
        self._cursor_pos = None
        self.cols, self.rows = self.grid_size(self.width, self.height)
        self._reset_model()
        self._layout_pending = True
        return self.cols, self.rows

    def set_background(self, background: int) -> None:
        """New default background (live ``color-scheme``): repaint the margins."""
        if background != self.background:
            self.background = background
            self._layout_pending = True
            self._scroll_drawn = None

    def cell_at(self, x: int, y: int) -> tuple[int, int]:
        """The (row, col) under display pixel (x, y), clamped to the grid."""
        col = (x - self.margin) // self.fonts.cell_width
        row = (y - self.margin) // self.fonts.cell_height
        return min(max(row, 0), self.rows - 1), min(max(col, 0), self.cols)

    def on_scrollbar(self, x: int) -> bool:
        """True when display x lies on the scrollbar."""
        return x >= self.width - SCROLLBAR_WIDTH

    def scrollbar_offset(self, y: int, scrollback: int) -> int:
        """The scroll offset (rows back) that puts the handle's centre at display y."""
        if scrollback <= 0:
            return 0
        track = self.height - 2 * SCROLLBAR_PADDING
        handle = self._handle_height(scrollback, track)
        span = max(1, track - handle)
        pos = min(max(y - SCROLLBAR_PADDING - handle // 2, 0), span)
        return round(scrollback * (1 - pos / span))

    def _handle_height(self, scrollback: int, track: int) -> int:
        total = scrollback + self.rows
        return min(track, max(SCROLLBAR_MIN_HANDLE, track * self.rows // max(1, total)))

    # State -------------------------------------------------------------------------
    def _reset_model(self) -> None:
        self._model = [[None] * self.cols for _ in range(self.rows)]
        self._moves.clear()
        self._seen = [None] * self.rows

    def _reset_atlas(self) -> None:
        self._atlas: dict[CellKey, int] = {}
        self._atlas_keys: list[CellKey | None] = []
        self._atlas_rows = 0  # rows the client's atlas buffer has
        self._atlas_new: list[int] = []  # slots filled this frame, still to upload

    def invalidate(self) -> None:
        """Forget what clients show: the next update redraws everything."""
        self._reset_model()
        self._cursor_key = None
        self._cursor_pos = None
        self._layout_pending = True
        self._scroll_drawn = None

    def scroll(self, top: int, bottom: int, lines: int) -> None:
        """Rows [top, bottom) moved up by ``lines`` (down if negative) since the last update."""
        if lines == 0 or bottom - top <= 0:
            return
        if self._moves and self._moves[-1][:2] == (top, bottom):
            t, bt, n = self._moves[-1]
            self._moves[-1] = (t, bt, n + lines)
        else:
            self._moves.append((top, bottom, lines))

    @property
    def pointer(self) -> Pointer:
        """The mouse pointer shown (or about to be)."""
        return self._pointer

    def set_pointer(self, pointer: Pointer) -> None:
        """The mouse pointer to show from the next update on."""
        self._pointer = pointer

    def set_scrollbar(self, scrollback: int, offset: int) -> None:
        """Scrollback rows available and how far back the view is scrolled."""
        self._scroll_state = (scrollback, offset)

    # Update -------------------------------------------------------------------------
    async def update(self, screen: Sequence[Row], cursor: Cursor) -> bytes:
        """Instructions that bring every client from the model to ``screen``.

        ``screen``'s rows are snapshots: a row passed once is never changed in place
        (a changed row is a new list), so an unchanged row is recognised by identity."""
        async with self.lock:
            started = time.perf_counter()
            ops = self._plan(screen, cursor)
            planned = time.perf_counter() - started
            figures.CURRENT.observe("frame_plan_seconds", planned)
            self.last_cost = planned
            return await self._finish(ops)

    def update_now(self, screen: Sequence[Row], cursor: Cursor, max_rows: int) -> bytes | None:
        """:meth:`update` without awaiting, for a small change (a key's echo): None,
        with nothing changed, when an update is under way, when the layout or the
        model is about to move, when more than ``max_rows`` rows changed or when the
        images to encode would not be encoded inline anyway."""
        if self.lock.locked() or self._layout_pending or self._moves:
            return None
        started = time.perf_counter()
        differing = self._differing_rows(screen)
        if len(differing) > max_rows:
            return None
        changed = self._changed_cells(screen, differing)
        if len(changed) > INLINE_CELLS:
            return None
        ops = self._plan(screen, cursor, differing, changed)
        # At most INLINE_CELLS changed cells, plus the atlas strips of their new glyphs.
        jobs = [op for op in ops if isinstance(op, _Img)]
        planned = time.perf_counter() - started
        figures.CURRENT.observe("frame_plan_seconds", planned)
        self.last_cost = planned
        return self._finish_inline(ops, jobs)

    async def full_state(self) -> bytes:
        """Everything a joining user needs to show what the others show now."""
        async with self.lock:
            return await self._finish(self._replay_ops())

    def _plan(
        self,
        screen: Sequence[Row],
        cursor: Cursor,
        differing: list[int] | None = None,
        changed: list[tuple[int, int]] | None = None,
    ) -> list[Op]:
        """The ops for ``screen`` (``differing``/``changed``: the rows unlike the model
        and their changed cells, when the caller compared them already)."""
        ops: list[Op] = []
        if self._layout_pending:
            ops.append(self._layout_bytes())
            self._layout_pending = False
        moves = self._moves
        if differing is None and not moves:
            # rows unlike the model (each compared once)
            differing = self._differing_rows(screen)
            self._detect_shift(screen, len(differing))
            if moves:
                differing = None  # the model moves: compare again
        for top, bottom, lines in moves:
            ops.append(self._apply_move(top, bottom, lines))
        moves.clear()
        if changed is None:
            if differing is None:
                differing = self._differing_rows(screen)  # after the moves (cheap)
            if self._whole_rows(differing):
                self._draw_rows(screen, differing, ops)
                changed = []
            else:
                changed = self._changed_cells(screen, differing)
        n = min(self.rows, len(screen))
        self._seen[:n] = screen[:n]  # the model shows these rows once the ops are out
        if self._atlas_free() < len(changed) + 2:
            self._reset_atlas()  # before drawing, so no copy refers to a recycled slot
        if changed:
            glyph_cells, image_cells = self._partition(screen, changed)
            if glyph_cells:
                self._draw_glyphs(screen, glyph_cells, ops)
            if image_cells:
                self._draw_images(screen, image_cells, ops)
        self._plan_cursor(screen, cursor, ops)
        self._plan_scrollbar(ops)
        if self._pointer != self._pointer_drawn:
            ops.append(self._pointer_bytes(upload=self._pointer_drawn is None))
            self._pointer_drawn = self._pointer
        if self._atlas_new:
            ops[0:0] = self._atlas_uploads()
        return ops

    def _whole_rows(self, differing: list[int]) -> bool:
        """Whether to redraw the differing rows whole, skipping the per-cell diff: when
        nearly all rows differ (output that scrolled past a screen, a full-screen
        program's new page), the diff finds nearly every cell changed anyway, in Python
        on the worker's loop: 1.6 ms for a 99x39 screen of ``cat`` output, 0.2 ms this
        way, and that long every typist of the worker waited (issue 16). Not onto rows
        never drawn (a new session's first frame): there it cost 0.03 MB more per idle
        session (200 sessions: 0.99 -> 1.02 MB PSS each, measured twice), though the
        view holds the same objects either way (tracemalloc)."""
        if self.strategy == "glyphs" or len(differing) < WHOLE_ROWS * self.rows:
            return False
        model = self._model
        return all(model[r][0] is not None for r in differing)

    def _draw_rows(self, screen: Sequence[Row], rows: list[int], ops: list[Op]) -> None:
        """Rows as images as wide as their text, consecutive rows of similar width in one
        (:func:`_add_to_blocks`, as :meth:`_draw_images`); a row's blank tail, one key repeated,
        is a ``rect`` where it changed (a blank row: only that). Into the model too."""
        model, cols, ch = self._model, self.cols, self.fonts.cell_height
        runs: list[list[int]] = []  # [row0, row1, col0 (0), width] in cells
        blanks: list[tuple[int, int, int, int]] = []
        for r in rows:
            row = screen[r][:cols]
            old = model[r]
            n = len(row)
            end = n
            while end and is_blank(row[end - 1]) and row[end - 1] == row[n - 1]:
                end -= 1
            if end < n and row[end:] != old[end:n]:
                blanks.append((r, end, n, row[n - 1][2]))
            old[:n] = row
            if end:
                _add_to_blocks(runs, r, 0, end)
        ops.extend(self._blank_rects(blanks))
        layer = self.text_layer
        for r0, r1, _, width in runs:
            ops.append(_Img(layer, 0, r0 * ch, [model[r][:width] for r in range(r0, r1)]))

    def _partition(
        self, screen: Sequence[Row], changed: list[tuple[int, int]]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Split changed cells by row: few glyphs -> atlas copies, more -> images."""
        if self.strategy == "glyphs":
            return changed, []
        if self.strategy == "images":
            return [], changed
        counts: dict[int, int] = {}
        for r, c in changed:
            if not is_blank(screen[r][c]):
                counts[r] = counts.get(r, 0) + 1
        if sum(counts.values()) <= FRAME_GLYPH_LIMIT:
            return changed, []
        glyphs: list[tuple[int, int]] = []
        images: list[tuple[int, int]] = []
        for cell in changed:
            (glyphs if counts.get(cell[0], 0) <= ROW_GLYPH_LIMIT else images).append(cell)
        return glyphs, images

    # Scrolling ------------------------------------------------------------------------
    def _apply_move(self, top: int, bottom: int, lines: int) -> bytes:
        self._seen = [None] * self.rows
        top, bottom = max(0, top), min(self.rows, bottom)
        height = bottom - top
        model = self._model
        if height <= 0:
            return b""
        if abs(lines) >= height:
            for r in range(top, bottom):
                model[r] = [None] * self.cols
            return b""
        ch, w = self.fonts.cell_height, self.cols * self.fonts.cell_width
        layer = self.text_layer
        if lines > 0:
            model[top : bottom - lines] = model[top + lines : bottom]
            model[bottom - lines : bottom] = [[None] * self.cols for _ in range(lines)]
            src_y, dst_y, rows = (top + lines) * ch, top * ch, height - lines
        else:
            n = -lines
            model[top + n : bottom] = model[top : bottom - n]
            model[top : top + n] = [[None] * self.cols for _ in range(n)]
            src_y, dst_y, rows = top * ch, (top + n) * ch, height - n
        return b.copy(layer, 0, src_y, w, rows * ch, b.MODE_OVER, layer, 0, dst_y)

    def _differing_rows(self, screen: Sequence[Row]) -> list[int]:
        """The rows of ``screen`` that differ from the model."""
        model, seen = self._model, self._seen
        return [
            r
            for r in range(min(self.rows, len(screen)))
            if screen[r] is not seen[r] and screen[r] != model[r]
        ]

    def _detect_shift(self, screen: Sequence[Row], differing: int) -> None:
        """Find a whole-screen vertical shift when the emulator reported none
        (``differing``: how many rows differ from the model)."""
        model, rows = self._model, min(self.rows, len(screen))
        if rows < 4:
            return
        if differing < rows // 2:
            return
        # Anchor on the first row that is not uniformly blank (blank rows match anywhere).
        anchor = next((r for r in range(rows) if not all(map(is_blank, screen[r]))), None)
        if anchor is None:
            return
        best, best_score = 0, 0
        for j in range(rows):
            k = j - anchor  # model row j shows now at row anchor: moved up by k
            if k == 0 or screen[anchor] != model[j]:
                continue
            lo, hi = max(0, -k), min(rows, rows - k)
            score = sum(1 for r in range(lo, hi) if screen[r] == model[r + k])
            if score > best_score:
                best, best_score = k, score
        if best and best_score >= max(2, differing // 3):
            self._moves.append((0, rows, best))

    # Diff ---------------------------------------------------------------------------
    def _changed_cells(
        self, screen: Sequence[Row], rows: list[int] | None = None
    ) -> list[tuple[int, int]]:
        """Cells to draw (a wide character counts once, at its left half); ``rows``:
        the rows known to differ, if already compared."""
        out: list[tuple[int, int]] = []
        model = self._model
        cols = self.cols
        for r in rows if rows is not None else range(min(self.rows, len(screen))):
            row, old = screen[r], model[r]
            if row == old:
                continue
            n = min(cols, len(row))
            c = 0
            for s in range(0, n, DIFF_CHUNK):
                e = min(s + DIFF_CHUNK, n)
                if c == s and row[s:e] == old[s:e]:
                    # a wide glyph ending the chunk is checked with the next one
                    c = e - 1 if row[e - 1][3] & WIDE else e
                    continue
                while c < e:
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

    def _mark(self, r: int, c: int, key: CellKey) -> None:
        row = self._model[r]
        row[c] = key
        if key[3] & WIDE and c + 1 < self.cols:
            row[c + 1] = continuation(key)

    # Drawing ------------------------------------------------------------------------
    def _draw_glyphs(
        self, screen: Sequence[Row], changed: list[tuple[int, int]], ops: list[Op]
    ) -> None:
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        layer, atlas = self.text_layer, self.atlas_buffer
        blanks: list[tuple[int, int, int, int]] = []  # (row, col0, col1, bg)
        parts: list[bytes] = []
        for r, c in changed:
            key = screen[r][c]
            if key[3] & CONT:  # orphan continuation: show its background
                key = ("", key[1], key[2], 0)
            self._mark(r, c, screen[r][c])
            if is_blank(key):
                if blanks and blanks[-1][0] == r and blanks[-1][2] == c and blanks[-1][3] == key[2]:
                    last = blanks[-1]
                    blanks[-1] = (r, last[1], c + 1, key[2])
                else:
                    blanks.append((r, c, c + 1, key[2]))
                continue
            slot = self._slot(key)
            if slot is None:  # atlas full within one frame: fall back to an image
                ops.append(_Img(layer, c * cw, r * ch, [_cell_row(key)]))
                continue
            sx, sy = (slot % ATLAS_COLUMNS) * cw, (slot // ATLAS_COLUMNS) * ch
            w = cw * (2 if key[3] & WIDE else 1)
            parts.append(b.copy(atlas, sx, sy, w, ch, b.MODE_OVER, layer, c * cw, r * ch))
        ops.extend(self._blank_rects(blanks))
        ops.append(b"".join(parts))

    def _blank_rects(self, blanks: list[tuple[int, int, int, int]]) -> list[Op]:
        """``rect`` + ``cfill`` per blank run, runs stacked in consecutive rows merged."""
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        merged: list[list[int]] = []  # [row0, row1, col0, col1, bg]
        open_by_span: dict[tuple[int, int, int], list[int]] = {}
        for r, c0, c1, bg in blanks:
            span = (c0, c1, bg)
            m = open_by_span.get(span)
            if m is not None and m[1] == r:
                m[1] = r + 1
            else:
                m = [r, r + 1, c0, c1, bg]
                merged.append(m)
                open_by_span[span] = m
        layer = self.text_layer
        out: list[Op] = []
        for r0, r1, c0, c1, bg in merged:
            out.append(
                b.rect(layer, c0 * cw, r0 * ch, (c1 - c0) * cw, (r1 - r0) * ch)
                + b.cfill(b.MODE_OVER, layer, *rgb(bg), 255)
            )
        return out

    def _draw_images(
        self, screen: Sequence[Row], changed: list[tuple[int, int]], ops: list[Op]
    ) -> None:
        """Blank runs as rectangles; the span of non-blank changes per row block as images."""
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        blanks: list[tuple[int, int, int, int]] = []
        spans: dict[int, list[int]] = {}  # row -> [col0, col1) of non-blank changes
        for r, c in changed:
            key = screen[r][c]
            self._mark(r, c, key)
            end = c + (2 if key[3] & WIDE else 1)
            if is_blank(key) or key[3] & CONT:
                bg = key[2]
                if blanks and blanks[-1][0] == r and blanks[-1][2] == c and blanks[-1][3] == bg:
                    blanks[-1] = (r, blanks[-1][1], end, bg)
                else:
                    blanks.append((r, c, end, bg))
            else:
                s = spans.get(r)
                if s is None:
                    spans[r] = [c, end]
                else:
                    s[1] = end
        # Blank runs inside an image span are drawn by the image itself.
        blanks = [
            (r, c0, c1, bg)
            for r, c0, c1, bg in blanks
            if r not in spans or c1 <= spans[r][0] or c0 >= spans[r][1]
        ]
        ops.extend(self._blank_rects(blanks))
        # Merge consecutive rows into blocks when their spans overlap well.
        blocks: list[list[int]] = []  # [row0, row1, col0, col1]
        for r in sorted(spans):
            _add_to_blocks(blocks, r, *spans[r])
        layer = self.text_layer
        for r0, r1, c0, c1 in blocks:
            grid = [screen[r][c0:c1] for r in range(r0, r1)]
            ops.append(_Img(layer, c0 * cw, r0 * ch, grid))

    # Atlas --------------------------------------------------------------------------
    def _atlas_free(self) -> int:
        return ATLAS_COLUMNS * ATLAS_MAX_ROWS - len(self._atlas_keys)

    def _slot(self, key: CellKey) -> int | None:
        slot = self._atlas.get(key)
        if slot is not None:
            return slot
        keys = self._atlas_keys
        n = len(keys)
        if key[3] & WIDE and n % ATLAS_COLUMNS == ATLAS_COLUMNS - 1:
            keys.append(None)  # a wide glyph never straddles two atlas rows
            n += 1
        width = 2 if key[3] & WIDE else 1
        if n + width > ATLAS_COLUMNS * ATLAS_MAX_ROWS:
            return None
        keys.append(key)
        if width == 2:
            keys.append(None)
        self._atlas[key] = n
        self._atlas_new.append(n)
        return n

    def _atlas_uploads(self) -> list[Op]:
        """Images for the glyphs added this frame, one strip per atlas row touched."""
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        out: list[Op] = []
        needed = (len(self._atlas_keys) + ATLAS_COLUMNS - 1) // ATLAS_COLUMNS
        if needed > self._atlas_rows:
            rows = min(ATLAS_MAX_ROWS, max(needed, self._atlas_rows * 2, 4))
            out.append(b.size(self.atlas_buffer, ATLAS_COLUMNS * cw, rows * ch))
            self._atlas_rows = rows
        by_row: dict[int, list[int]] = {}
        for slot in self._atlas_new:
            by_row.setdefault(slot // ATLAS_COLUMNS, []).append(slot)
        self._atlas_new = []
        for arow, slots in by_row.items():
            out.extend(self._atlas_strip(arow, min(slots), max(slots)))
        return out

    def _atlas_strip(self, arow: int, first: int, last: int) -> list[Op]:
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        keys = self._atlas_keys
        end = last + 1
        if end < len(keys) and keys[end] is None and end % ATLAS_COLUMNS:
            end += 1  # right half of a wide glyph
        cells: list[CellKey | None] = []
        for s in range(first, end):
            k = keys[s]
            if k is None and cells and (prev := cells[-1]) is not None and prev[3] & WIDE:
                k = continuation(prev)
            cells.append(k)
        x = (first % ATLAS_COLUMNS) * cw
        return [_Img(self.atlas_buffer, x, arow * ch, [cells])]

    # Cursor and scrollbar --------------------------------------------------------------
    def _plan_cursor(self, screen: Sequence[Row], cursor: Cursor, ops: list[Op]) -> None:
        layer = self.cursor_layer
        r, c = cursor.row, cursor.col
        if (
            not cursor.visible
            or not (0 <= r < min(self.rows, len(screen)))
            or not 0 <= c < self.cols
        ):
            if self._cursor_shown:
                ops.append(b.shade(layer, 0))
                self._cursor_shown = False
            return
        row = screen[r]
        if c >= len(row):
            return
        key = row[c]
        if key[3] & CONT and c > 0:
            c -= 1
            key = row[c]
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        inv: CellKey = (key[0], key[2], key[1], key[3] & ~CONT)
        if (r, c) != self._cursor_pos:
            ops.append(b.move(layer, self.text_layer, c * cw, r * ch, 1))
            self._cursor_pos = (r, c)
        if inv != self._cursor_key:
            w = cw * (2 if inv[3] & WIDE else 1)
            old = self._cursor_key
            if old is None or bool(old[3] & WIDE) != bool(inv[3] & WIDE):
                ops.append(b.size(layer, w, ch))
            if is_blank(inv):
                ops.append(b.fill_rect(layer, 0, 0, w, ch, rgb(inv[2])))
            else:
                slot = self._slot(inv) if self.strategy != "images" else None
                if slot is None:
                    ops.append(_Img(layer, 0, 0, [_cell_row(inv)]))
                else:
                    sx, sy = (slot % ATLAS_COLUMNS) * cw, (slot // ATLAS_COLUMNS) * ch
                    ops.append(b.copy(self.atlas_buffer, sx, sy, w, ch, b.MODE_SRC, layer, 0, 0))
            self._cursor_key = inv
        if not self._cursor_shown:
            ops.append(b.shade(layer, 255))
            self._cursor_shown = True

    def _plan_scrollbar(self, ops: list[Op]) -> None:
        scrollback, offset = self._scroll_state
        track = self.height - 2 * SCROLLBAR_PADDING
        state = (scrollback, offset, self.rows)
        if state == self._scroll_drawn:
            return
        self._scroll_drawn = state
        layer = self.scrollbar_layer
        out = [
            b.rect(layer, 0, 0, SCROLLBAR_WIDTH, self.height),
            b.cfill(b.MODE_ROUT, layer, 0, 0, 0, 255),
        ]
        if scrollback > 0:
            handle = self._handle_height(scrollback, track)
            span = max(0, track - handle)
            y = SCROLLBAR_PADDING + round(span * (1 - offset / scrollback))
            out.append(
                b.rect(layer, SCROLLBAR_PADDING, y, SCROLLBAR_WIDTH - 2 * SCROLLBAR_PADDING, handle)
            )
            out.append(b.cfill(b.MODE_OVER, layer, 0x80, 0x80, 0x80, 0x80))
        ops.append(b"".join(out))

    def _pointer_bytes(self, upload: bool) -> bytes:
        out = b""
        if upload:
            stream = self.conn.alloc_stream()
            out = b.size(self.pointer_buffer, 21, 18) + b.image(
                stream, b.MODE_SRC, self.pointer_buffer, "image/png", 0, 0, pointer_png()
            )
            self.conn.free_stream(stream)
        x, w, h, hx, hy = _POINTERS[self._pointer]
        return out + b.cursor(hx, hy, self.pointer_buffer, x, 0, w, h)

    def _layout_bytes(self) -> bytes:
        """Size the display and layers; paint the background under everything."""
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        bg = rgb(self.background)
        return b"".join(
            (
                b.size(0, self.width, self.height),
                b.fill_rect(0, 0, 0, self.width, self.height, bg),
                b.size(self.text_layer, self.cols * cw, self.rows * ch),
                b.move(self.text_layer, 0, self.margin, self.margin, 0),
                b.size(self.scrollbar_layer, SCROLLBAR_WIDTH, self.height),
                b.move(self.scrollbar_layer, 0, self.width - SCROLLBAR_WIDTH, 0, 1),
            )
        )

    # Join replay --------------------------------------------------------------------
    def _replay_ops(self) -> list[Op]:
        """The model drawn from scratch: layout, atlas, text image, cursor, scrollbar."""
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        ops: list[Op] = [self._layout_bytes()]
        if self._atlas_rows:
            ops.append(b.size(self.atlas_buffer, ATLAS_COLUMNS * cw, self._atlas_rows * ch))
            keys = self._atlas_keys
            for arow in range((len(keys) + ATLAS_COLUMNS - 1) // ATLAS_COLUMNS):
                first = arow * ATLAS_COLUMNS
                last = min(len(keys), first + ATLAS_COLUMNS) - 1
                ops.extend(self._atlas_strip(arow, first, last))
        ops.append(_Img(self.text_layer, 0, 0, list(self._model)))
        if self._cursor_pos is not None and self._cursor_key is not None:
            inv = self._cursor_key
            w = cw * (2 if inv[3] & WIDE else 1)
            r, c = self._cursor_pos
            ops.append(b.size(self.cursor_layer, w, ch))
            ops.append(b.move(self.cursor_layer, self.text_layer, c * cw, r * ch, 1))
            ops.append(_Img(self.cursor_layer, 0, 0, [_cell_row(inv)]))
            ops.append(b.shade(self.cursor_layer, 255 if self._cursor_shown else 0))
        drawn, self._scroll_drawn = self._scroll_drawn, None
        self._plan_scrollbar(ops)
        self._scroll_drawn = drawn
        if self._pointer_drawn is not None:
            ops.append(self._pointer_bytes(upload=True))
        return ops

    # Encoding -------------------------------------------------------------------------
    async def _finish(self, ops: list[Op]) -> bytes:
        jobs = [op for op in ops if isinstance(op, _Img)]
        if not jobs or sum(j.cells for j in jobs) <= INLINE_CELLS:
            return self._finish_inline(ops, jobs)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        encoded, took = await loop.run_in_executor(
            encoder_pool(), _timed_encode_jobs, self.fonts, jobs, self.background, self.webp
        )
        self.last_cost += took
        figures.CURRENT.observe("encode_seconds", time.perf_counter() - started)
        return self._assemble(ops, encoded)

    def _finish_inline(self, ops: list[Op], jobs: list[_Img]) -> bytes:
        """The frame's bytes, its images (if any) encoded here on the loop."""
        if not jobs:
            return b"".join(op for op in ops if isinstance(op, bytes))
        started = time.perf_counter()
        encoded = _encode_jobs(self.fonts, jobs, self.background, self.webp)
        took = time.perf_counter() - started
        self.last_cost += took
        figures.CURRENT.observe("encode_seconds", took)
        return self._assemble(ops, encoded)

    def _assemble(self, ops: list[Op], encoded: list[tuple[str, bytes]]) -> bytes:
        out: list[bytes] = []
        results = iter(encoded)
        conn = self.conn
        for op in ops:
            if isinstance(op, bytes):
                out.append(op)
                continue
            mimetype, data = next(results)
            stream = conn.alloc_stream()
            out.append(b.image(stream, b.MODE_OVER, op.layer, mimetype, op.x, op.y, data))
            conn.free_stream(stream)
        return b"".join(out)
