"""Frame planning: from "what changed" to the cheapest set of drawing operations.

Pure functions over numpy arrays, in the spirit of guacd 1.6's display planner:

1. ``find_dirty``: compare the new frame with the last one sent, only in 64x64 cells
   that were touched, and keep each dirty cell's tight bounding box.
2. ``find_scrolls``: rows of changed columns are hashed and matched against the last
   frame; consistent vertical offsets become ``copy`` operations (scrolling, vertical
   window moves) without the server having to say so.
3. ``classify``: single-colour dirty boxes become ``rect``+``cfill``.
4. ``combine_images`` / ``combine_solids``: neighbours are merged when the cost model
   (a fixed cost per operation plus its pixels) says one larger operation is cheaper;
   merged images stay inside one 512x512 tile so they encode in parallel.
5. ``choose_format``: PNG, JPEG or WebP by content (photo-likeness) and update rate.

The framebuffers are (h, w) uint32 views of RGBX pixels: one compare per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

import numpy as np
import numpy.typing as npt

from guacr.render import palette
from guacr.render.encode import JPEG, PNG, WEBP

U32 = npt.NDArray[np.uint32]
Bool = npt.NDArray[np.bool_]

CELL: Final = 64
_FRF = 3  # compare whole rows when the dirty bands span over a third of the width
GATHER_RATIO = 4  # gather touched band rows when they are under a quarter of the area
TILE: Final = 512
# Fixed cost of one operation, in pixels: what merging two images may add. 2048 rather
# than 4096: on a scrolling xterm over VNC (server bytes replayed offline) 7.6% fewer
# bytes, the merged images had carried many unchanged rows; the synthetic scenes of
# bench_display.py send the same bytes either way, in the same time within noise.
BASE_COST: Final = 2048
NON_IMAGE_DIVISOR: Final = 128  # rect/cfill and copy cost 1/128 of an image per pixel
MIN_LOSSY_AREA: Final = 4096  # JPEG only above this many pixels (guacd's rule)
MIN_LOSSY_FPS: Final = 3.0
LOSSY_ALIGN: Final = 16  # JPEG MCU size: aligned rects avoid seams between updates
MIN_SCROLL_ROWS: Final = 8  # a copy must move at least this many rows


@dataclass(slots=True)
class Box:
    """A rectangle [x0, x1) x [y0, y1) with the cells it covers (for the heat map)."""

    x0: int
    y0: int
    x1: int
    y1: int
    cells: list[tuple[int, int]]

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


@dataclass(slots=True)
class Solid:
    """A single-colour rectangle: becomes ``rect`` + ``cfill``."""

    x0: int
    y0: int
    x1: int
    y1: int
    colour: int  # packed RGBX as in the framebuffer


@dataclass(slots=True, frozen=True)
class Copy:
    """Move [sx, sx+w) x [sy, sy+h) to (dx, dy) within the display."""

    sx: int
    sy: int
    w: int
    h: int
    dx: int
    dy: int


def cell_grid(width: int, height: int) -> tuple[int, int]:
    """(rows, columns) of 64x64 cells covering a width x height display."""
    return (height + CELL - 1) // CELL, (width + CELL - 1) // CELL


def touch_grid(width: int, height: int) -> tuple[int, int]:
    """Shape of a "touched" grid: one flag per pixel row of each 64-px column band,
    for whole cells (so it reshapes to (cell rows, 64, cell columns))."""
    rows, cols = cell_grid(width, height)
    return rows * CELL, cols


def mark(grid: Bool, x: int, y: int, w: int, h: int) -> None:
    """Mark the rows of the bands under a rectangle (clipped to the display) in ``grid``."""
    if w > 0 and h > 0:
        grid[y : y + h, x // CELL : (x + w - 1) // CELL + 1] = True


def overlaps(grid: Bool, x: int, y: int, w: int, h: int) -> bool:
    """True if any marked band row lies under the rectangle."""
    if w <= 0 or h <= 0:
        return False
    return bool(grid[y : y + h, x // CELL : (x + w - 1) // CELL + 1].any())


def mark_boxes(grid: Bool, boxes: list[Box]) -> None:
    """Mark the rows of each (single-cell) box in its band."""
    for box in boxes:
        grid[box.y0 : box.y1, box.cells[0][1]] = True


def _diff_bits(
    new: U32, old: U32, new_y: int, old_y: int, rows: int, c0: int, c1: int
) -> npt.NDArray[np.uint64]:
    """(rows, c1 - c0) column masks: bit j of [i, k] is set if pixel j of 64-px band
    c0 + k differs between ``new`` row new_y + i and ``old`` row old_y + i (columns past
    the frame's edge count as equal).

    Packing the compare to one bit per pixel makes every later reduction 64x smaller,
    and numpy reduces short inner axes slowly; compares over whole rows of a cell-padded
    frame (when the span is wide) are contiguous, about 3x cheaper per pixel than
    strided ones. Together several times cheaper than reducing the boolean compare
    result (``benchmarks/bench_display.py --micro``).
    """
    full_w = new.shape[1]
    bands = c1 - c0
    if full_w % CELL == 0 and _FRF * bands * CELL > full_w:
        px0, px1, first = 0, full_w, c0
    else:
        px0, px1, first = c0 * CELL, min(c1 * CELL, full_w), 0
    words = -(-(px1 - px0) // CELL)
    a = new[new_y : new_y + rows, px0:px1]
    b = old[old_y : old_y + rows, px0:px1]
    if px1 - px0 == words * CELL:
        diff = np.not_equal(a, b)
    else:
        diff = np.zeros((rows, words * CELL), np.bool_)
        np.not_equal(a, b, out=diff[:, : px1 - px0])
    # Bit j of a word is column j of its band (little-endian on every platform).
    bits: npt.NDArray[np.uint64] = np.packbits(diff, axis=-1, bitorder="little").view("<u8")
    return bits[:, first : first + bands]


def _touched_bits(
    new: U32,
    old: U32,
    touched: Bool,
    ys: npt.NDArray[np.intp],
    cs: npt.NDArray[np.intp],
    y0: int,
    y1: int,
    c0: int,
    c1: int,
) -> npt.NDArray[np.uint64]:
    """``_diff_bits`` for rows y0..y1 and bands c0..c1, compared only where touched
    (the band rows ``ys``, ``cs``, all inside that area).

    Servers name the rectangles they redraw, and those rarely cover much of the area
    between them: when few band rows are touched they are gathered and compared alone
    (64 pixels each) instead of comparing whole rows.
    """
    full_h, full_w = new.shape
    if full_w % CELL or len(ys) * GATHER_RATIO > (y1 - y0) * (c1 - c0):
        bits = _diff_bits(new, old, y0, y0, y1 - y0, c0, c1)
        return np.where(touched[y0:y1, c0:c1], bits, np.uint64(0))
    bands = full_w // CELL
    a = new.reshape(full_h, bands, CELL)[ys, cs]
    b = old.reshape(full_h, bands, CELL)[ys, cs]
    words = np.packbits(a != b, axis=-1, bitorder="little").view("<u8")
    bits = np.zeros((y1 - y0, c1 - c0), np.uint64)
    bits[ys - y0, cs - c0] = words[:, 0]
    return bits


def find_dirty(
    new: U32, old: U32, touched: Bool, width: int | None = None, height: int | None = None
) -> list[Box]:
    """Dirty cells (tight boxes) among the touched band rows, in row-major order.

    ``touched`` has the shape ``touch_grid`` gives. Works on column masks
    (``_diff_bits``): OR-ing a cell's rows gives its dirty columns, a non-zero mask a
    dirty row. Boxes are clipped to width x height.
    """
    ys, cs = np.divmod(np.flatnonzero(touched), touched.shape[1])
    if not len(ys):
        return []
    r0, r1 = int(ys[0]) // CELL, int(ys[-1]) // CELL + 1
    c0, c1 = int(cs.min()), int(cs.max()) + 1
    height = new.shape[0] if height is None else height
    width = new.shape[1] if width is None else width
    nr, nc = r1 - r0, c1 - c0
    py0, py1 = r0 * CELL, min(r1 * CELL, new.shape[0])
    bits = _touched_bits(new, old, touched, ys, cs, py0, py1, c0, c1)
    if py1 - py0 < nr * CELL:
        padded = np.zeros((nr * CELL, nc), np.uint64)
        padded[: py1 - py0] = bits
        bits = padded
    cells = bits.reshape(nr, CELL, nc)
    masks = np.bitwise_or.reduce(cells, axis=1)
    rs, cs = np.nonzero(masks)
    if not len(rs):
        return []
    row_any = cells[rs, :, cs] != 0  # (dirty cells, 64): rows of those cells only
    top = row_any.argmax(axis=1)
    bottom = CELL - row_any[:, ::-1].argmax(axis=1)
    boxes = []
    for cy, cx, t, b, m in zip(
        (rs + r0).tolist(),
        (cs + c0).tolist(),
        top.tolist(),
        bottom.tolist(),
        masks[rs, cs].tolist(),
        strict=True,
    ):
        x, y = cx * CELL, cy * CELL
        left = (m & -m).bit_length() - 1
        boxes.append(
            Box(x + left, y + t, min(x + m.bit_length(), width), min(y + b, height), [(cy, cx)])
        )
    return boxes


# ----------------------------------------------------------------------- copy search

_rng = np.random.default_rng(0x6775_6163)
_WEIGHTS = _rng.integers(1, 1 << 63, CELL // 2, dtype=np.uint64) | np.uint64(1)
_SALTS = _rng.integers(1, 1 << 63, 8, dtype=np.uint64)
SEARCH_SAMPLES: Final = 3  # column bands hashed to find candidate offsets
MAX_OFFSETS: Final = 4  # candidate offsets checked exactly per frame
PALETTE_SAMPLE: Final = 4096  # pixels sampled to tell few-colour content from photos


def _band_hashes(frame: U32, y0: int, y1: int, x0: int) -> npt.NDArray[np.uint64]:
    """One hash per row of the 64-px column band at x0 (fewer columns at the edge).

    Pixel pairs read as uint64 words dotted with odd random weights (wrapping): a
    matrix-vector product, about 20x cheaper than widening every pixel to uint64
    first (``benchmarks/bench_display.py --micro``). Hashes only propose offsets;
    matches are checked exactly.
    """
    block = frame[y0:y1, x0 : x0 + CELL]
    if block.shape[1] % 2:
        block = np.concatenate((block, np.zeros((block.shape[0], 1), np.uint32)), axis=1)
    words = block.view(np.uint64)
    hashed: npt.NDArray[np.uint64] = words @ _WEIGHTS[: words.shape[1]]
    return hashed


def _votes(new: U32, old: U32, y0: int, y1: int, bands: list[int]) -> dict[int, int]:
    """offset -> votes: where rows unique in an old band reappear in the new one.

    A terminal caught mid-redraw can show two or three offsets at once (the top already
    scrolled further than the bottom), so every offset with a real share of a band's
    votes counts; chance matches of unrelated content scatter over many small offsets.
    All bands are matched in one pass: each band's hashes get their own random salt.
    """
    rows, k = y1 - y0, len(bands)
    hn = np.empty((k, rows), np.uint64)
    ho = np.empty((k, rows), np.uint64)
    for j, band in enumerate(bands):
        hn[j] = _band_hashes(new, y0, y1, band * CELL)
        ho[j] = _band_hashes(old, y0, y1, band * CELL)
    changed = (hn != ho).ravel()
    hn += _SALTS[:k, None]
    ho += _SALTS[:k, None]
    keys, first, counts = np.unique(ho, return_index=True, return_counts=True)
    unique_old, where = keys[counts == 1], first[counts == 1]
    if not len(unique_old):
        return {}
    flat_new = hn.ravel()
    pos = np.minimum(np.searchsorted(unique_old, flat_new), len(unique_old) - 1)
    hit = (unique_old[pos] == flat_new) & changed
    new_at = np.flatnonzero(hit)  # band * rows + row, as ``where``
    offsets = new_at - where[pos[hit]]  # same band: the band parts cancel out
    moved = offsets != 0
    offsets, band_of = offsets[moved], new_at[moved] // rows
    if len(offsets) < MIN_SCROLL_ROWS:
        return {}
    per_band = np.bincount(band_of, minlength=k)
    codes, votes = np.unique(band_of * (2 * rows) + offsets + rows, return_counts=True)
    band_of, offsets = np.divmod(codes, 2 * rows)
    offsets -= rows
    keep = (votes >= MIN_SCROLL_ROWS) & (votes * 4 >= per_band[band_of])
    total: dict[int, int] = {}
    for offset, count in zip(offsets[keep].tolist(), votes[keep].tolist(), strict=True):
        total[offset] = total.get(offset, 0) + count
    return total


def find_scrolls(
    new: U32,
    old: U32,
    boxes: list[Box],
    width: int | None = None,
    height: int | None = None,
) -> list[Copy]:
    """Vertical moves of content between ``old`` and ``new`` inside the dirty area.

    A few of the most changed 64-px column bands are hashed row by row; rows unique in
    the old band vote for the offset at which they reappear. The best offsets are then
    checked exactly on every dirty band at once (one compare pass each, best first);
    runs of matching rows become copies, and bands with the same run merge into one
    copy. Horizontal and diagonal moves are left to explicit copies from the server.

    (Trying the server's own copy offsets or last frame's offsets first was measured
    worse: what is left dirty after the server's copies moved differently, and text
    columns that repeat line after line then match at the wrong offset.)
    """
    if len(boxes) < 2:
        return []
    per_col: dict[int, int] = {}
    for box in boxes:
        for _, cx in box.cells:
            per_col[cx] = per_col.get(cx, 0) + 1
    ys = [cy for box in boxes for cy, _ in box.cells]
    height = new.shape[0] if height is None else height
    width = new.shape[1] if width is None else width
    y0, y1 = min(ys) * CELL, min((max(ys) + 1) * CELL, height)
    if y1 - y0 < 2 * MIN_SCROLL_ROWS:
        return []
    busiest = sorted(per_col, key=lambda c: -per_col[c])[:SEARCH_SAMPLES]
    votes = _votes(new, old, y0, y1, busiest)
    if not votes:
        return []
    search = _Search(new, old, boxes, per_col, y0, y1, width)
    for offset in sorted(votes, key=lambda o: -votes[o])[:MAX_OFFSETS]:
        search.try_offset(offset)
    return search.copies()


class _Search:
    """Exact matching of candidate offsets over the dirty bands (see find_scrolls)."""

    def __init__(
        self,
        new: U32,
        old: U32,
        boxes: list[Box],
        per_col: dict[int, int],
        y0: int,
        y1: int,
        width: int,
    ) -> None:
        self.new, self.old, self.y0, self.y1, self.width = new, old, y0, y1, width
        self.c0 = c0 = min(per_col)
        c1 = max(per_col) + 1
        self.bands = bands = c1 - c0
        self.dirty_band = np.zeros(bands, np.bool_)
        self.dirty_band[[c - c0 for c in per_col]] = True
        rows = y1 - y0
        # Rows that changed, per band: the dirty boxes' row spans (a superset, which at
        # worst lets through a copy of identical rows; it saves a full compare pass).
        changed = np.zeros((rows, bands), np.bool_)
        for box in boxes:
            changed[box.y0 - y0 : box.y1 - y0, box.cells[0][1] - c0] = True
        self.changed = changed
        # Changed rows per band before each row: a run [s, e) moves something if the
        # counts at its ends differ.
        self.changed_before = np.zeros((rows + 1, bands), np.int32)
        np.cumsum(changed, axis=0, out=self.changed_before[1:])
        # The first changed row at or after each row, and the last at or before it:
        # runs are trimmed to them, as copying rows that did not change is wasted.
        index = np.arange(rows)[:, None]
        after = np.where(changed, index, rows)
        self.next_changed = np.minimum.accumulate(after[::-1], axis=0)[::-1]
        self.last_changed = np.maximum.accumulate(np.where(changed, index, -1), axis=0)
        self.used = np.zeros((rows, bands), np.bool_)
        self.offset_at = np.zeros((rows, bands), np.int32)  # of the run using each row

    def try_offset(self, offset: int) -> None:
        """Record the runs of rows for which new[y] == old[y - offset] (unused ones)."""
        y0, y1 = self.y0, self.y1
        ya, yb = max(y0, y0 + offset), min(y1, y1 + offset)
        if yb - ya < MIN_SCROLL_ROWS:
            return
        rows, bands = y1 - y0, self.bands
        match = np.zeros((rows + 2, bands), np.int8)  # a zero row above and below
        c0 = self.c0
        differ = _diff_bits(self.new, self.old, ya, ya - offset, yb - ya, c0, c0 + bands)
        match[ya - y0 + 1 : yb - y0 + 1] = differ == 0
        match[1:-1][self.used] = 0
        match[:, ~self.dirty_band] = 0
        # All runs of every band at once: +1 where a run starts, -1 past its end.
        edges = np.diff(match, axis=0)
        start_band, start_row = np.nonzero(edges.T == 1)
        _, end_row = np.nonzero(edges.T == -1)
        before = self.changed_before
        keep = (end_row - start_row >= MIN_SCROLL_ROWS) & (
            before[end_row, start_band] > before[start_row, start_band]
        )
        bands_kept = start_band[keep]
        for band, start, end in zip(
            bands_kept.tolist(),
            self.next_changed[start_row[keep], bands_kept].tolist(),
            (self.last_changed[end_row[keep] - 1, bands_kept] + 1).tolist(),
            strict=True,
        ):
            self.used[start:end, band] = True
            self.offset_at[start:end, band] = offset

    def _useful(self) -> Bool:
        """The copied rows worth a copy: not inside the span of its cell that stays dirty
        after all copies (that span goes as an image whatever it holds)."""
        rows, bands = self.used.shape
        cells = -(-rows // CELL)
        left = np.zeros((cells * CELL, bands), np.bool_)
        left[:rows] = self.changed & ~self.used
        per_cell = left.reshape(cells, CELL, bands)
        top = per_cell.argmax(axis=1)[:, None, :]
        bottom = CELL - 1 - per_cell[:, ::-1].argmax(axis=1)[:, None, :]
        row = np.arange(CELL)[None, :, None]
        any_left = cast(Bool, per_cell.any(axis=1))
        inside = (row >= top) & (row <= bottom) & any_left[:, None, :]
        useful: Bool = self.used & ~inside.reshape(cells * CELL, bands)[:rows]
        return useful

    def copies(self) -> list[Copy]:
        # Keep only the useful parts of each band's run: in a screenful of new text,
        # chance matches of repeated columns otherwise add copies that shrink no image
        # (measured: 3% more bytes than no search at all).
        offsets = np.where(self._useful(), self.offset_at, 0)  # 0: no copy (never an offset)
        rows, bands = offsets.shape
        # Segments of one offset down each band, all bands at once.
        padded = np.zeros((rows + 2, bands), np.int32)
        padded[1:-1] = offsets
        band_at, row_at = np.nonzero((padded[1:] != padded[:-1]).T)
        same = band_at[:-1] == band_at[1:]
        starts, ends, seg_bands = row_at[:-1][same], row_at[1:][same], band_at[:-1][same]
        values = offsets[starts, seg_bands]
        keep = values != 0
        runs: dict[tuple[int, int, int], list[int]] = {}
        y0, c0 = self.y0, self.c0
        for start, end, band, offset in zip(
            starts[keep].tolist(),
            ends[keep].tolist(),
            seg_bands[keep].tolist(),
            values[keep].tolist(),
            strict=True,
        ):
            runs.setdefault((start + y0, end + y0, offset), []).append(band + c0)
        copies: list[Copy] = []
        for (start, end, offset), band_list in sorted(runs.items()):
            band_list.sort()
            group = [band_list[0]]
            for band in [*band_list[1:], -2]:
                if band == group[-1] + 1:
                    group.append(band)
                    continue
                bx0 = group[0] * CELL
                bx1 = min((group[-1] + 1) * CELL, self.width)
                copies.append(Copy(bx0, start - offset, bx1 - bx0, end - start, bx0, start))
                group = [band]
        # Apply order matters when runs of one band overlap each other's sources:
        # moving content up, copy top runs first; moving it down, bottom runs first.
        copies.sort(key=lambda c: c.dy if c.dy < c.sy else -c.dy)
        # Runs were matched against the frame before any copy, so runs moving in
        # opposite directions can read what another one overwrote (no order avoids
        # that): callers must re-check the copies' destinations and send what is
        # stale as pixels. Still cheaper than dropping such copies (measured).
        return copies


def apply_copy(frame: U32, copy: Copy) -> None:
    """Perform a copy on a framebuffer (numpy handles overlapping views)."""
    frame[copy.dy : copy.dy + copy.h, copy.dx : copy.dx + copy.w] = frame[
        copy.sy : copy.sy + copy.h, copy.sx : copy.sx + copy.w
    ]


# ------------------------------------------------------------------- classification


def classify(frame: U32, boxes: list[Box]) -> tuple[list[Solid], list[Box]]:
    """Split dirty boxes into single-colour fills and images."""
    solids: list[Solid] = []
    images: list[Box] = []
    for box in boxes:
        region = frame[box.y0 : box.y1, box.x0 : box.x1]
        first = region[0, 0]
        # Probe a few pixels before comparing them all: most image cells fail at once.
        if (
            region[-1, -1] == first
            and region[box.h // 2, box.w // 2] == first
            and (region == first).all()
        ):
            solids.append(Solid(box.x0, box.y0, box.x1, box.y1, int(first)))
        else:
            images.append(box)
    return solids, images


def combine_solids(solids: list[Solid]) -> list[Solid]:
    """Join same-coloured fills sharing a whole edge (rows first, then columns)."""
    if len(solids) < 2:
        return solids
    rows: list[Solid] = []
    for s in sorted(solids, key=lambda s: (s.y0, s.y1, s.x0)):
        last = rows[-1] if rows else None
        if (
            last is not None
            and last.colour == s.colour
            and last.y0 == s.y0
            and last.y1 == s.y1
            and last.x1 == s.x0
        ):
            last.x1 = s.x1
        else:
            rows.append(Solid(s.x0, s.y0, s.x1, s.y1, s.colour))
    out: list[Solid] = []
    open_by_edge: dict[tuple[int, int, int, int], Solid] = {}
    for s in sorted(rows, key=lambda s: (s.x0, s.y0)):
        key = (s.x0, s.x1, s.y0, s.colour)
        above = open_by_edge.pop(key, None)
        if above is not None:
            above.y1 = s.y1
            open_by_edge[(s.x0, s.x1, s.y1, s.colour)] = above
        else:
            out.append(s)
            open_by_edge[(s.x0, s.x1, s.y1, s.colour)] = s
    return out


def _worth_merging(a: Box, b: Box) -> bool:
    """guacd-style rule: merge when small, or when the cost grows by under a quarter."""
    w = max(a.x1, b.x1) - min(a.x0, b.x0)
    h = max(a.y1, b.y1) - min(a.y0, b.y0)
    if w <= CELL and h <= CELL:
        return True
    separate = 2 * BASE_COST + a.area + b.area
    return BASE_COST + w * h <= separate + separate // 4


def _absorb(into: Box, other: Box) -> None:
    into.x0, into.y0 = min(into.x0, other.x0), min(into.y0, other.y0)
    into.x1, into.y1 = max(into.x1, other.x1), max(into.y1, other.y1)
    into.cells.extend(other.cells)


def combine_images(boxes: list[Box]) -> list[Box]:
    """Merge image boxes within each 512x512 tile (never across tiles).

    A tile whose boxes are cheaper as one image (the usual case for big changes) is
    merged at once; otherwise boxes merge pairwise, along cell rows then down columns.
    The boxes passed in may be modified.
    """
    if len(boxes) < 2:
        return boxes
    tiles: dict[tuple[int, int], list[Box]] = {}
    for box in boxes:
        tiles.setdefault((box.x0 // TILE, box.y0 // TILE), []).append(box)
    out: list[Box] = []
    for group in tiles.values():
        if len(group) == 1:
            out += group
            continue
        x0 = min(b.x0 for b in group)
        y0 = min(b.y0 for b in group)
        x1 = max(b.x1 for b in group)
        y1 = max(b.y1 for b in group)
        separate = len(group) * BASE_COST + sum(b.area for b in group)
        if BASE_COST + (x1 - x0) * (y1 - y0) <= separate + separate // 4:
            out.append(Box(x0, y0, x1, y1, [c for b in group for c in b.cells]))
        else:
            out += _combine_pairwise(group)
    return out


def _combine_pairwise(boxes: list[Box]) -> list[Box]:
    by_row: dict[int, list[Box]] = {}
    for box in boxes:
        by_row.setdefault(box.cells[0][0], []).append(box)
    rows: list[list[Box]] = []
    for r in sorted(by_row):
        merged: list[Box] = []
        for box in sorted(by_row[r], key=lambda b: b.x0):
            if merged and _worth_merging(merged[-1], box):
                _absorb(merged[-1], box)
            else:
                merged.append(box)
        rows.append(merged)
    done: list[Box] = []
    open_: list[Box] = []
    last_row = -2
    for r, row in zip(sorted(by_row), rows, strict=True):
        if r != last_row + 1:
            done += open_
            open_ = []
        next_open: list[Box] = []
        for box in row:
            for i, above in enumerate(open_):
                if _worth_merging(above, box):
                    _absorb(above, box)
                    box = above
                    del open_[i]
                    break
            next_open.append(box)
        done += open_
        open_ = next_open
        last_row = r
    return done + open_


# ------------------------------------------------------------------- format choice


def png_score(region: U32) -> int:
    """guacd's PNG-optimality: 256 * same / different neighbours - 1024 (< 0: photo)."""
    if region.shape[1] < 2:
        return 0
    step = max(1, region.shape[0] // 32)  # a row sample is plenty for the decision
    rows = region[::step]
    same = int(np.count_nonzero(rows[:, 1:] == rows[:, :-1]))
    different = int(rows.shape[0] * (rows.shape[1] - 1)) - same
    if different == 0:
        return 1 << 20
    return 256 * same // different - 1024


def few_colours(region: U32) -> bool:
    """True if a pixel sample shows at most 256 colours (anti-aliased text, UI).

    guacd's neighbour score alone calls dense anti-aliased text "photo-like"; such
    content is far smaller as a palette PNG than as JPEG (and stays sharp).
    """
    h, w = region.shape
    step = max(1, int((h * w / PALETTE_SAMPLE) ** 0.5))
    return palette.count_colours(region, step) is not None


def choose_format(
    region: U32,
    fps: float,
    *,
    lossless: bool,
    jpeg_ok: bool,
    webp_ok: bool,
) -> str:
    """guacd's choice: WebP, else JPEG for busy photo-like regions; PNG otherwise.

    One addition: content with few colours stays PNG (see ``few_colours``).
    """
    if fps < MIN_LOSSY_FPS:
        return PNG
    photo = png_score(region) < 0 and not few_colours(region)
    if webp_ok and photo:
        return WEBP
    if jpeg_ok and not lossless and photo and region.size > MIN_LOSSY_AREA:
        return JPEG
    return PNG


def align_lossy(box: Box, width: int, height: int) -> Box:
    """Grow a lossy box to 16-px blocks (inside the display and its 512 tile)."""
    a = LOSSY_ALIGN
    x0 = box.x0 // a * a
    y0 = box.y0 // a * a
    x1 = min(-(-box.x1 // a) * a, width)
    y1 = min(-(-box.y1 // a) * a, height)
    return Box(x0, y0, x1, y1, box.cells)
