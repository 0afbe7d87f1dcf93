"""ZRLE (encoding 16): 64x64 tiles inside one persistent zlib stream.

The whole rectangle's zlib payload is length-prefixed, so tiles are parsed from the
inflated bytes directly. Raw, solid and packed-palette tiles are pure numpy; the two
RLE forms need a Python loop per run (not per pixel) to find run boundaries, then
expand with ``np.repeat``.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.decoders import MAX_COMPRESSED, DecoderState, inflate_all
from guacr.handlers.vnc.events import Event, RectDecoded, RFBProtocolError
from guacr.handlers.vnc.stream import Reader

_U32 = struct.Struct(">I")
_TILE = 64


def decode_zrle(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    length = _U32.unpack((yield 4))[0]
    if length > MAX_COMPRESSED:
        raise RFBProtocolError(f"ZRLE rect of {length} bytes")
    data = (yield length) if length else b""
    cps = st.converter.cpixel_size
    tiles = ((w + _TILE - 1) // _TILE) * ((h + _TILE - 1) // _TILE)
    # Worst case per tile: palette-RLE header plus two bytes per pixel, or plain RLE.
    bound = tiles * (1 + 127 * cps) + w * h * (cps + 2) + 16
    payload = inflate_all(st.zrle_stream, data, bound, "ZRLE")
    if w == 0 or h == 0:
        return None
    out = np.empty((h, w, cps), np.uint8)
    try:
        end = _decode_tiles(payload, out, w, h, cps)
    except IndexError as exc:
        raise RFBProtocolError("ZRLE: tile data truncated") from exc
    if end != len(payload):
        raise RFBProtocolError(f"ZRLE: {len(payload) - end} stray bytes after tiles")
    return RectDecoded(x, y, w, h, st.converter.cpixels_to_rgb(out), Encoding.ZRLE)


def _decode_tiles(buf: bytes, out: npt.NDArray[np.uint8], w: int, h: int, cps: int) -> int:
    """Fill ``out`` (h, w, cps) from tile data; returns the offset after the last tile."""
    arr = np.frombuffer(buf, np.uint8)
    pos = 0
    for ty in range(0, h, _TILE):
        th = min(_TILE, h - ty)
        for tx in range(0, w, _TILE):
            tw = min(_TILE, w - tx)
            tile = out[ty : ty + th, tx : tx + tw]
            sub = buf[pos]
            pos += 1
            npix = tw * th
            if sub == 0:
                end = pos + npix * cps
                _need(buf, end)
                tile[:] = arr[pos:end].reshape(th, tw, cps)
                pos = end
            elif sub == 1:
                _need(buf, pos + cps)
                tile[:] = arr[pos : pos + cps]
                pos += cps
            elif 2 <= sub <= 16:
                palette = _palette(arr, buf, pos, sub, cps)
                pos += sub * cps
                bits = 1 if sub == 2 else 2 if sub <= 4 else 4
                row_bytes = (tw * bits + 7) // 8
                end = pos + row_bytes * th
                _need(buf, end)
                idx = _unpack_indices(arr[pos:end].reshape(th, row_bytes), bits, tw)
                pos = end
                if int(idx.max()) >= sub:
                    raise RFBProtocolError("ZRLE: palette index out of range")
                tile[:] = palette[idx]
            elif sub == 128:
                pos = _plain_rle(buf, arr, pos, tile, npix, cps)
            elif sub >= 130:
                size = sub - 128
                palette = _palette(arr, buf, pos, size, cps)
                pos += size * cps
                pos = _palette_rle(buf, pos, tile, palette, npix)
            else:
                raise RFBProtocolError(f"ZRLE: invalid tile sub-encoding {sub}")
    return pos


def _need(buf: bytes, end: int) -> None:
    if end > len(buf):
        raise RFBProtocolError("ZRLE: tile data truncated")


def _palette(
    arr: npt.NDArray[np.uint8], buf: bytes, pos: int, size: int, cps: int
) -> npt.NDArray[np.uint8]:
    _need(buf, pos + size * cps)
    return arr[pos : pos + size * cps].reshape(size, cps)


def _unpack_indices(rows: npt.NDArray[np.uint8], bits: int, width: int) -> npt.NDArray[np.uint8]:
    """Packed palette indices, MSB first, each row padded to a byte."""
    if bits == 1:
        return np.unpackbits(rows, axis=1)[:, :width]
    per_byte = 8 // bits
    shifts = np.arange(8 - bits, -1, -bits, dtype=np.uint8)
    mask = np.uint8((1 << bits) - 1)
    idx = (rows[:, :, None] >> shifts) & mask
    return idx.reshape(rows.shape[0], rows.shape[1] * per_byte)[:, :width]


def _plain_rle(
    buf: bytes,
    arr: npt.NDArray[np.uint8],
    pos: int,
    tile: npt.NDArray[np.uint8],
    npix: int,
    cps: int,
) -> int:
    starts: list[int] = []
    lengths: list[int] = []
    filled = 0
    while filled < npix:
        starts.append(pos)
        pos += cps
        length = 1
        while True:
            b = buf[pos]
            pos += 1
            length += b
            if b != 255:
                break
        lengths.append(length)
        filled += length
    _need(buf, pos)
    if filled != npix:
        raise RFBProtocolError("ZRLE: run overflows tile")
    offsets = np.asarray(starts, np.intp)[:, None] + np.arange(cps)
    colours = arr[offsets]
    th, tw = tile.shape[:2]
    tile[:] = np.repeat(colours, lengths, axis=0).reshape(th, tw, cps)
    return pos


def _palette_rle(
    buf: bytes, pos: int, tile: npt.NDArray[np.uint8], palette: npt.NDArray[np.uint8], npix: int
) -> int:
    indices: list[int] = []
    lengths: list[int] = []
    filled = 0
    while filled < npix:
        b = buf[pos]
        pos += 1
        if b < 128:
            indices.append(b)
            lengths.append(1)
            filled += 1
            continue
        length = 1
        while True:
            c = buf[pos]
            pos += 1
            length += c
            if c != 255:
                break
        indices.append(b & 127)
        lengths.append(length)
        filled += length
    if filled != npix:
        raise RFBProtocolError("ZRLE: run overflows tile")
    idx = np.asarray(indices, np.intp)
    if int(idx.max()) >= len(palette):
        raise RFBProtocolError("ZRLE: palette index out of range")
    th, tw = tile.shape[:2]
    tile[:] = np.repeat(palette[idx], lengths, axis=0).reshape(th, tw, -1)
    return pos
