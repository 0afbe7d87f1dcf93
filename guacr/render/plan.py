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
from typing import Final

import numpy as np
import numpy.typing as npt

from guacr.render.encode import JPEG, PNG, WEBP

U32 = npt.NDArray[np.uint32]
Bool = npt.NDArray[np.bool_]

CELL: Final = 64
TILE: Final = 512
BASE_COST: Final = 4096  # fixed cost of one operation, in pixels
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


def mark(grid: Bool, x: int, y: int, w: int, h: int) -> None:
    """Mark the cells under a rectangle (already clipped to the display) in ``grid``."""
    if w > 0 and h > 0:
        grid[y // CELL : (y + h - 1) // CELL + 1, x // CELL : (x + w - 1) // CELL + 1] = True


def overlaps(grid: Bool, x: int, y: int, w: int, h: int) -> bool:
    """True if any marked cell lies under the rectangle."""
    if w <= 0 or h <= 0:
        return False
    return bool(
        grid[y // CELL : (y + h - 1) // CELL + 1, x // CELL : (x + w - 1) // CELL + 1].any()
    )


def find_dirty(new: U32, old: U32, touched: Bool) -> list[Box]:
    """Dirty cells (tight boxes) among the touched ones, in row-major order."""
    if not touched.any():
        return []
    rows = np.flatnonzero(touched.any(axis=1))
    cols = np.flatnonzero(touched.any(axis=0))
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    height, width = new.shape
    py0, py1 = r0 * CELL, min(r1 * CELL, height)
    px0, px1 = c0 * CELL, min(c1 * CELL, width)
    diff = new[py0:py1, px0:px1] != old[py0:py1, px0:px1]
    nr, nc = r1 - r0, c1 - c0
    if diff.shape != (nr * CELL, nc * CELL):
        padded = np.zeros((nr * CELL, nc * CELL), np.bool_)
        padded[: diff.shape[0], : diff.shape[1]] = diff
        diff = padded
    d4 = diff.reshape(nr, CELL, nc, CELL)
    row_any = d4.any(axis=3).transpose(0, 2, 1)  # (nr, nc, 64): which rows of each cell
    dirty = row_any.any(axis=2) & touched[r0:r1, c0:c1]
    if not dirty.any():
        return []
    col_any = d4.any(axis=1)  # (nr, nc, 64): which columns of each cell
    top = row_any.argmax(axis=2)
    bottom = CELL - row_any[:, :, ::-1].argmax(axis=2)
    left = col_any.argmax(axis=2)
    right = CELL - col_any[:, :, ::-1].argmax(axis=2)
    boxes = []
    for r, c in zip(*np.nonzero(dirty), strict=True):
        cy, cx = int(r) + r0, int(c) + c0
        bx, by = cx * CELL, cy * CELL
        boxes.append(
            Box(
                bx + int(left[r, c]),
                by + int(top[r, c]),
                min(bx + int(right[r, c]), width),
                min(by + int(bottom[r, c]), height),
                [(cy, cx)],
            )
        )
    return boxes


# ----------------------------------------------------------------------- copy search

_rng = np.random.default_rng(0x6775_6163)
_WEIGHTS = (_rng.integers(1, 1 << 63, CELL, dtype=np.uint64) | np.uint64(1)).astype(np.uint64)


def _row_hashes(frame: U32, y0: int, y1: int, x0: int, bands: int) -> npt.NDArray[np.uint64]:
    """Hash of each row of each 64-px column band: shape (rows, bands)."""
    width = frame.shape[1]
    x1 = min(x0 + bands * CELL, width)
    block = frame[y0:y1, x0:x1].astype(np.uint64)
    if x1 - x0 != bands * CELL:
        padded = np.zeros((y1 - y0, bands * CELL), np.uint64)
        padded[:, : x1 - x0] = block
        block = padded
    with np.errstate(over="ignore"):
        hashed: npt.NDArray[np.uint64] = (block.reshape(y1 - y0, bands, CELL) * _WEIGHTS).sum(
            axis=2, dtype=np.uint64
        )
    return hashed


def find_scrolls(new: U32, old: U32, boxes: list[Box]) -> list[Copy]:
    """Vertical moves of content between ``old`` and ``new`` inside the dirty area.

    For each 64-px column band, rows that occur once in the old frame vote for the
    offset at which they reappear; the winning offset's runs of matching rows (verified
    pixel for pixel) become copies. Adjacent bands with the same run merge into one copy.
    Horizontal and diagonal moves are left to explicit copies from the server.
    """
    if len(boxes) < 2:
        return []
    cols = sorted({cx for b in boxes for _, cx in b.cells})
    ys = [cy for b in boxes for cy, _ in b.cells]
    height, width = new.shape
    y0, y1 = min(ys) * CELL, min((max(ys) + 1) * CELL, height)
    c0, c1 = cols[0], cols[-1] + 1
    if y1 - y0 < 2 * MIN_SCROLL_ROWS:
        return []
    bands = c1 - c0
    hn = _row_hashes(new, y0, y1, c0 * CELL, bands)
    ho = _row_hashes(old, y0, y1, c0 * CELL, bands)
    dirty_cols = set(cols)
    runs: dict[tuple[int, int, int], list[int]] = {}  # (start, end, offset) -> bands
    for band in range(bands):
        if band + c0 not in dirty_cols:
            continue
        found = _band_runs(hn[:, band], ho[:, band])
        for start, end, offset in found:
            runs.setdefault((start + y0, end + y0, offset), []).append(band + c0)
    copies: list[Copy] = []
    for (start, end, offset), band_list in sorted(runs.items()):
        band_list.sort()
        group = [band_list[0]]
        for band in [*band_list[1:], -2]:
            if band == group[-1] + 1:
                group.append(band)
                continue
            x0 = group[0] * CELL
            x1 = min((group[-1] + 1) * CELL, width)
            src_y = start - offset
            if np.array_equal(new[start:end, x0:x1], old[src_y : src_y + end - start, x0:x1]):
                copies.append(Copy(x0, src_y, x1 - x0, end - start, x0, start))
            group = [band]
    # Apply order matters when runs of one band overlap each other's sources: moving
    # content up, copy top runs first; moving it down, bottom runs first.
    copies.sort(key=lambda c: c.dy if c.dy < c.sy else -c.dy)
    return copies


def _band_runs(
    hn: npt.NDArray[np.uint64], ho: npt.NDArray[np.uint64]
) -> list[tuple[int, int, int]]:
    """Runs (start, end, offset) of rows where new[i] == old[i - offset] in one band."""
    n = len(hn)
    changed = hn != ho
    if int(changed.sum()) < MIN_SCROLL_ROWS:
        return []
    values, first, counts = np.unique(ho, return_index=True, return_counts=True)
    unique_old = values[counts == 1]
    if not len(unique_old):
        return []
    where = first[counts == 1]
    pos = np.searchsorted(unique_old, hn)
    pos[pos >= len(unique_old)] = 0
    hit = (unique_old[pos] == hn) & changed
    if int(hit.sum()) < MIN_SCROLL_ROWS:
        return []
    offsets = np.flatnonzero(hit) - where[pos[hit]]
    offsets = offsets[offsets != 0]
    if not len(offsets):
        return []
    vals, votes = np.unique(offsets, return_counts=True)
    best = int(np.argmax(votes))
    if votes[best] < MIN_SCROLL_ROWS:
        return []
    offset = int(vals[best])
    idx = np.arange(n)
    src = idx - offset
    ok = (src >= 0) & (src < n)
    match = np.zeros(n, np.bool_)
    match[ok] = hn[ok] == ho[src[ok]]
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], match.view(np.int8), [0]))))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= MIN_SCROLL_ROWS and changed[start:end].any():
            out.append((int(start), int(end), offset))
    return out


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
        if (region == first).all():
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


def _tile(box: Box) -> tuple[int, int]:
    return box.x0 // TILE, box.y0 // TILE


def _same_tile(a: Box, b: Box) -> bool:
    x0, y0 = min(a.x0, b.x0), min(a.y0, b.y0)
    x1, y1 = max(a.x1, b.x1), max(a.y1, b.y1)
    return x0 // TILE == (x1 - 1) // TILE and y0 // TILE == (y1 - 1) // TILE


def _worth_merging(a: Box, b: Box) -> bool:
    """guacd-style rule: merge when small, or when the cost grows by under a quarter."""
    x0, y0 = min(a.x0, b.x0), min(a.y0, b.y0)
    x1, y1 = max(a.x1, b.x1), max(a.y1, b.y1)
    w, h = x1 - x0, y1 - y0
    if w <= CELL and h <= CELL:
        return True
    merged = BASE_COST + w * h
    separate = 2 * BASE_COST + a.area + b.area
    return merged <= separate + separate // 4


def _union(a: Box, b: Box) -> Box:
    return Box(
        min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1), a.cells + b.cells
    )


def combine_images(boxes: list[Box]) -> list[Box]:
    """Merge image boxes horizontally within cell rows, then vertically across rows."""
    if len(boxes) < 2:
        return boxes
    by_row: dict[int, list[Box]] = {}
    for box in boxes:
        by_row.setdefault(box.cells[0][0], []).append(box)
    rows: list[list[Box]] = []
    for r in sorted(by_row):
        merged: list[Box] = []
        for box in sorted(by_row[r], key=lambda b: b.x0):
            last = merged[-1] if merged else None
            if last is not None and _same_tile(last, box) and _worth_merging(last, box):
                merged[-1] = _union(last, box)
            else:
                merged.append(box)
        rows.append(merged)
    done: list[Box] = []
    open_: list[Box] = []
    for row in rows:
        next_open: list[Box] = []
        for box in row:
            for i, above in enumerate(open_):
                if (
                    above.y1 >= box.y0 - CELL
                    and _same_tile(above, box)
                    and _worth_merging(above, box)
                ):
                    box = _union(above, box)
                    del open_[i]
                    break
            next_open.append(box)
        done += open_
        open_ = next_open
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


def choose_format(
    region: U32,
    fps: float,
    *,
    lossless: bool,
    jpeg_ok: bool,
    webp_ok: bool,
) -> str:
    """guacd's choice: WebP, else JPEG for busy photo-like regions; PNG otherwise."""
    if fps < MIN_LOSSY_FPS:
        return PNG
    photo = png_score(region) < 0
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
