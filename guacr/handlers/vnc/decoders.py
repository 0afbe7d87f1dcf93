"""Rectangle decoders for Raw, RRE, Hextile and Zlib, plus the shared decoder state.

Each decoder is a reader generator returning one event for its rectangle (or None for
an empty one). Work is done per rectangle or per tile with numpy; there are no
per-pixel Python loops. ZRLE and Tight live in their own modules.
"""

from __future__ import annotations

import struct
import sys
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.events import Event, RectDecoded, RFBProtocolError, SolidRect
from guacr.handlers.vnc.pixels import PixelConverter
from guacr.handlers.vnc.stream import Reader

# Native unsigned dtypes per bytes-per-pixel: pixels are moved as opaque integers whose
# in-memory bytes equal the wire bytes, and only interpreted once per rectangle.
NATIVE_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.uint16),
    4: np.dtype(np.uint32),
}
_BYTEORDER = sys.byteorder
_U32 = struct.Struct(">I")

# A single compressed rectangle larger than this is treated as hostile.
MAX_COMPRESSED = 64 << 20


class DecoderState:
    """Per-connection decoder state: pixel conversion and persistent zlib streams."""

    def __init__(self, converter: PixelConverter) -> None:
        self.converter = converter
        self.zlib_stream: Any = zlib.decompressobj()
        self.zrle_stream: Any = zlib.decompressobj()
        self.tight_streams: list[Any] = [zlib.decompressobj() for _ in range(4)]

    def set_converter(self, converter: PixelConverter) -> None:
        self.converter = converter


def inflate(stream: Any, data: bytes, expected: int, what: str) -> bytes:
    """Decompress exactly ``expected`` bytes from a persistent stream, or raise."""
    try:
        out: bytes = stream.decompress(data, expected)
        # Input left over once ``expected`` bytes came out may only be flush markers
        # (empty stored blocks); anything that inflates to more is a protocol error.
        tail = stream.unconsumed_tail
        while tail:
            if stream.decompress(tail, 1):
                raise RFBProtocolError(f"{what}: more data than the rectangle needs")
            if stream.unconsumed_tail == tail:
                break
            tail = stream.unconsumed_tail
    except zlib.error as exc:
        raise RFBProtocolError(f"{what}: corrupt zlib data ({exc})") from exc
    if len(out) != expected:
        raise RFBProtocolError(f"{what}: inflated {len(out)} bytes, expected {expected}")
    return out


def inflate_all(stream: Any, data: bytes, bound: int, what: str) -> bytes:
    """Decompress everything ``data`` yields, refusing more than ``bound`` bytes."""
    try:
        out: bytes = stream.decompress(data, bound + 1)
    except zlib.error as exc:
        raise RFBProtocolError(f"{what}: corrupt zlib data ({exc})") from exc
    if len(out) > bound or stream.unconsumed_tail:
        raise RFBProtocolError(f"{what}: inflated data exceeds {bound} bytes")
    return out


def rgb_event(
    st: DecoderState, x: int, y: int, w: int, h: int, raw: npt.NDArray[np.uint8], enc: int
) -> RectDecoded:
    return RectDecoded(x, y, w, h, st.converter.to_rgb(raw), enc)


def decode_raw(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    bpp = st.converter.bpp
    if w == 0 or h == 0:
        return None
    data = yield w * h * bpp
    raw = np.frombuffer(data, np.uint8).reshape(h, w, bpp)
    return rgb_event(st, x, y, w, h, raw, Encoding.RAW)


def decode_zlib(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    """Zlib encoding: u32 length, then Raw pixels through one persistent stream."""
    length = _U32.unpack((yield 4))[0]
    if length > MAX_COMPRESSED:
        raise RFBProtocolError(f"zlib rect of {length} bytes")
    data = (yield length) if length else b""
    bpp = st.converter.bpp
    pixels = inflate(st.zlib_stream, data, w * h * bpp, "Zlib")
    if w == 0 or h == 0:
        return None
    raw = np.frombuffer(pixels, np.uint8).reshape(h, w, bpp)
    return rgb_event(st, x, y, w, h, raw, Encoding.ZLIB)


def _check_sub(sx: int, sy: int, sw: int, sh: int, w: int, h: int, what: str) -> None:
    if sx + sw > w or sy + sh > h:
        raise RFBProtocolError(f"{what} subrectangle {sw}x{sh}+{sx}+{sy} outside {w}x{h}")


def decode_rre(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    """RRE: background pixel plus (pixel, x, y, w, h) subrectangles."""
    bpp = st.converter.bpp
    head = yield 4 + bpp
    count = _U32.unpack_from(head)[0]
    if count > w * h:
        raise RFBProtocolError(f"RRE with {count} subrects for {w}x{h}")
    bg = head[4:]
    subs = (yield count * (bpp + 8)) if count else b""
    if count == 0:
        return SolidRect(x, y, w, h, st.converter.pixel_rgb(bg), Encoding.RRE)
    dt = NATIVE_DTYPES[bpp]
    canvas = np.empty((h, w), dt)
    canvas.fill(int.from_bytes(bg, _BYTEORDER))
    geometry = struct.Struct(">HHHH")
    stride = bpp + 8
    for off in range(0, len(subs), stride):
        sx, sy, sw, sh = geometry.unpack_from(subs, off + bpp)
        _check_sub(sx, sy, sw, sh, w, h, "RRE")
        canvas[sy : sy + sh, sx : sx + sw] = int.from_bytes(subs[off : off + bpp], _BYTEORDER)
    raw = canvas.view(np.uint8).reshape(h, w, bpp)
    return rgb_event(st, x, y, w, h, raw, Encoding.RRE)
