"""RDP pointer updates -> straight RGBA cursor images (MS-RDPBCGR 2.2.9.1.1.4).

aardwolf drops pointer updates, so guacr parses them itself: the color pointer (24 bpp
XOR mask plus 1 bpp AND mask), the "new" pointer (with its own XOR depth, 32 bpp
carrying alpha), the cached pointer (an index into the pointers seen so far), and the
system hidden/default pointers. Masks are bottom-up, each row padded to 2 bytes.

Sans-I/O: :class:`PointerCache` turns update payloads into :class:`Cursor` values; the
handler draws them with the display engine's ``set_cursor``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

# Fast-path update codes (the slow-path messageType values map onto the same kinds).
PTR_NULL = 0x5
PTR_DEFAULT = 0x6
PTR_POSITION = 0x8
PTR_COLOR = 0x9
PTR_CACHED = 0xA
PTR_NEW = 0xB
POINTER_CODES = frozenset({PTR_NULL, PTR_DEFAULT, PTR_POSITION, PTR_COLOR, PTR_CACHED, PTR_NEW})

# Slow-path TS_POINTER_PDU messageType -> the fast-path code with the same payload.
SLOW_PATH_TYPES = {0x0001: None, 0x0003: PTR_POSITION, 0x0006: PTR_COLOR, 0x0007: PTR_CACHED,
                   0x0008: PTR_NEW}  # fmt: skip
SYSPTR_NULL = 0x00000000


@dataclass(frozen=True)
class Cursor:
    """A pointer image: hotspot, size, straight RGBA (empty = hidden); or the default."""

    hotspot_x: int
    hotspot_y: int
    width: int
    height: int
    rgba: bytes
    default: bool = False


HIDDEN = Cursor(0, 0, 0, 0, b"")
DEFAULT = Cursor(0, 0, 0, 0, b"", default=True)


def _row_bytes(width: int, bpp: int) -> int:
    raw = (width * bpp + 7) // 8
    return raw + (raw & 1)  # rows are padded to a multiple of 2 bytes


def decode_masks(width: int, height: int, xor_bpp: int, xor: bytes, and_mask: bytes) -> bytes:
    """XOR/AND masks -> straight RGBA, top-down."""
    if width == 0 or height == 0:
        return b""
    xor_stride = _row_bytes(width, xor_bpp)
    and_stride = _row_bytes(width, 1)
    if len(xor) < xor_stride * height:
        raise ValueError("short XOR mask")
    rows = np.frombuffer(xor, np.uint8, xor_stride * height).reshape(height, xor_stride)
    rows = rows[::-1]  # bottom-up
    rgba = np.zeros((height, width, 4), np.uint8)
    if xor_bpp == 32:
        px = rows[:, : width * 4].reshape(height, width, 4)
        rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = (
            px[..., 2], px[..., 1], px[..., 0], px[..., 3],
        )  # fmt: skip
        if not rgba[..., 3].any():  # no alpha at all: opaque where the AND mask says so
            rgba[..., 3] = 255
        else:
            return rgba.tobytes()
    elif xor_bpp == 24:
        px = rows[:, : width * 3].reshape(height, width, 3)
        rgba[..., 0], rgba[..., 1], rgba[..., 2] = px[..., 2], px[..., 1], px[..., 0]
        rgba[..., 3] = 255
    elif xor_bpp == 16:
        v = rows[:, : width * 2].copy().view("<u2").reshape(height, width).astype(np.uint32)
        rgba[..., 0] = ((v >> 11) & 0x1F) * 255 // 31
        rgba[..., 1] = ((v >> 5) & 0x3F) * 255 // 63
        rgba[..., 2] = (v & 0x1F) * 255 // 31
        rgba[..., 3] = 255
    elif xor_bpp == 1:
        bits = np.unpackbits(rows, axis=1)[:, :width]
        value = np.where(bits.astype(bool), 255, 0).astype(np.uint8)
        rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = value
        rgba[..., 3] = 255
    else:
        raise ValueError(f"unsupported pointer depth {xor_bpp}")
    if len(and_mask) >= and_stride * height:
        amask = np.frombuffer(and_mask, np.uint8, and_stride * height).reshape(height, and_stride)
        transparent = np.unpackbits(amask[::-1], axis=1)[:, :width].astype(bool)
        black = (rgba[..., :3] == 0).all(axis=2)
        # AND 1 + XOR black: transparent. AND 1 + XOR colour: "invert the screen", which
        # a client-side cursor cannot do: drawn opaque (as guacd does).
        rgba[transparent & black] = 0
    return rgba.tobytes()


class PointerCache:
    """The pointers a session defined, by cache index, and the parser for updates."""

    def __init__(self) -> None:
        self._cache: dict[int, Cursor] = {}

    def update(self, code: int, data: bytes) -> Cursor | None:
        """A pointer update's payload -> the cursor to show (None: nothing to draw)."""
        if code == PTR_NULL:
            return HIDDEN
        if code == PTR_DEFAULT:
            return DEFAULT
        if code == PTR_POSITION:
            return None
        if code == PTR_CACHED:
            (index,) = struct.unpack_from("<H", data)
            return self._cache.get(index)
        if code == PTR_NEW:
            (xor_bpp,) = struct.unpack_from("<H", data)
            return self._color(data[2:], xor_bpp)
        if code == PTR_COLOR:
            return self._color(data, 24)
        return None

    def slow_path(self, data: bytes) -> Cursor | None:
        """A slow-path TS_POINTER_PDU (after the share data header)."""
        msg_type, _pad = struct.unpack_from("<HH", data)
        body = data[4:]
        if msg_type == 0x0001:  # system pointer
            (kind,) = struct.unpack_from("<I", body)
            return HIDDEN if kind == SYSPTR_NULL else DEFAULT
        code = SLOW_PATH_TYPES.get(msg_type)
        return None if code is None else self.update(code, body)

    def _color(self, data: bytes, xor_bpp: int) -> Cursor:
        index, hx, hy, w, h, and_len, xor_len = struct.unpack_from("<7H", data)
        xor = data[14 : 14 + xor_len]
        and_mask = data[14 + xor_len : 14 + xor_len + and_len]
        rgba = decode_masks(w, h, xor_bpp, xor, and_mask)
        cursor = Cursor(min(hx, max(0, w - 1)), min(hy, max(0, h - 1)), w, h, rgba)
        self._cache[index] = cursor
        return cursor
