"""Hextile (encoding 5): 16x16 tiles, raw or background plus subrectangles.

Tiles arrive one after another with no length prefix, so the tile headers are read in
a Python loop (three reads per tile at most). Subrectangles, which text screens have by
the ten thousand, are not painted one by one: their bytes are collected for the whole
rectangle and painted in one vectorised scatter at the end (see ``_paint``).
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.decoders import NATIVE_DTYPES, DecoderState, rgb_event
from guacr.handlers.vnc.events import Event, RFBProtocolError
from guacr.handlers.vnc.stream import Reader

_RAW, _BG, _FG, _ANY, _COLOURED = 1, 2, 4, 8, 16


def decode_hextile(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    bpp = st.converter.bpp
    dt = NATIVE_DTYPES[bpp]
    canvas = np.empty((h, w), dt)
    order = sys.byteorder
    bg = fg = 0
    mono: list[bytes] = []
    mono_meta: list[tuple[int, int, int, int, int, int]] = []
    coloured: list[bytes] = []
    coloured_meta: list[tuple[int, int, int, int, int, int]] = []
    for ty in range(0, h, 16):
        th = min(16, h - ty)
        for tx in range(0, w, 16):
            tw = min(16, w - tx)
            sub = (yield 1)[0]
            if sub & _RAW:
                data = yield tw * th * bpp
                canvas[ty : ty + th, tx : tx + tw] = np.frombuffer(data, dt).reshape(th, tw)
                continue
            head_len = (bpp if sub & _BG else 0) + (bpp if sub & _FG else 0) + (sub >> 3 & 1)
            head = (yield head_len) if head_len else b""
            off = bpp if sub & _BG else 0
            if off:
                bg = int.from_bytes(head[:bpp], order)
            if sub & _FG:
                fg = int.from_bytes(head[off : off + bpp], order)
            canvas[ty : ty + th, tx : tx + tw] = bg
            count = head[-1] if sub & _ANY else 0
            if not count:
                continue
            if sub & _COLOURED:
                coloured.append((yield count * (bpp + 2)))
                coloured_meta.append((tx, ty, tw, th, count, 0))
            else:
                mono.append((yield count * 2))
                mono_meta.append((tx, ty, tw, th, count, fg))
    if w == 0 or h == 0:
        return None
    if mono:
        _paint(canvas, mono, mono_meta, 0)
    if coloured:
        _paint(canvas, coloured, coloured_meta, bpp)
    raw = canvas.view(np.uint8).reshape(h, w, bpp)
    return rgb_event(st, x, y, w, h, raw, Encoding.HEXTILE)


def _paint(
    canvas: npt.NDArray[np.generic],
    blocks: list[bytes],
    meta: list[tuple[int, int, int, int, int, int]],
    colour_bytes: int,
) -> None:
    """Scatter all subrectangles at once, in wire order (later ones overwrite earlier).

    ``meta`` rows are (tile x, tile y, tile w, tile h, count, mono colour); with
    ``colour_bytes`` > 0 each subrectangle carries its own pixel value instead.
    """
    stride = colour_bytes + 2
    recs = np.frombuffer(b"".join(blocks), np.uint8).reshape(-1, stride)
    tiles = np.array(meta, np.int64)
    owner = np.repeat(np.arange(len(tiles)), tiles[:, 4])
    xy = recs[:, colour_bytes].astype(np.int64)
    wh = recs[:, colour_bytes + 1].astype(np.int64)
    sx, sy = xy >> 4, xy & 15
    sw, sh = (wh >> 4) + 1, (wh & 15) + 1
    if ((sx + sw) > tiles[owner, 2]).any() or ((sy + sh) > tiles[owner, 3]).any():
        raise RFBProtocolError("Hextile subrectangle outside its tile")
    if colour_bytes:
        values = np.ascontiguousarray(recs[:, :colour_bytes]).view(canvas.dtype).ravel()
    else:
        values = tiles[owner, 5].astype(canvas.dtype)
    sizes = sw * sh
    pick = np.repeat(np.arange(len(sizes)), sizes)
    within = np.arange(int(sizes.sum())) - (np.cumsum(sizes) - sizes)[pick]
    width = sw[pick]
    rows = tiles[owner, 1][pick] + sy[pick] + within // width
    cols = tiles[owner, 0][pick] + sx[pick] + within % width
    # Fancy assignment applies repeated indices in order, so overlaps keep the last.
    canvas.reshape(-1)[rows * canvas.shape[1] + cols] = values[pick]
