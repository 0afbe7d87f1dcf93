"""Test-only RFB server-side encoders, written from the RFB spec, for unit tests.

They build the bytes a server would send (handshake messages, framebuffer updates in
each encoding) from numpy images, so decoders can be checked against known pixels.
Kept deliberately simple and independent of the decoder code under test.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.events import Connected, Event
from guacr.handlers.vnc.pixels import PixelFormat

U8 = npt.NDArray[np.uint8]

BGRX = PixelFormat()  # guacd's default request: 32 bpp LE, red shift 16
RGB565 = PixelFormat.for_color_depth(16)
BGR233 = PixelFormat.for_color_depth(8)


def random_image(h: int, w: int, colours: int = 0, seed: int = 1) -> U8:
    """An RGB test image; with ``colours`` > 0 drawn from that many colours in blocks."""
    rng = np.random.default_rng(seed)
    if colours <= 0:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
    idx = rng.integers(0, colours, (h, w))
    # Runs of equal pixels so RLE paths get exercised.
    idx = np.repeat(idx[:, ::4], 4, axis=1)[:, :w]
    return palette[idx]


def quantize(img: U8, pf: PixelFormat) -> U8:
    """What RGB survives a trip through ``pf`` (for comparing low-depth decodes)."""
    return unpack_pixels(pack_pixels(img, pf), pf).reshape(img.shape)


def _values(img: U8, pf: PixelFormat) -> npt.NDArray[np.uint32]:
    out = np.zeros(img.shape[:-1], np.uint32)
    for c, (mx, sh) in enumerate(
        ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift), (pf.blue_max, pf.blue_shift))
    ):
        chan = (img[..., c].astype(np.uint32) * mx + 127) // 255
        out |= chan << sh
    return out


def pack_pixels(img: U8, pf: PixelFormat) -> bytes:
    """RGB (..., 3) to wire PIXELs in true-colour format ``pf``."""
    dt = np.dtype(f"{'>' if pf.big_endian else '<'}u{pf.bytes_per_pixel}")
    return _values(img, pf).astype(dt).tobytes()


def unpack_pixels(data: bytes, pf: PixelFormat) -> U8:
    dt = np.dtype(f"{'>' if pf.big_endian else '<'}u{pf.bytes_per_pixel}")
    v = np.frombuffer(data, dt).astype(np.uint32)
    out = np.empty((*v.shape, 3), np.uint8)
    for c, (mx, sh) in enumerate(
        ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift), (pf.blue_max, pf.blue_shift))
    ):
        out[..., c] = (((v >> sh) & mx) * 255 + mx // 2) // mx
    return out


def pack_cpixels(img: U8, pf: PixelFormat) -> bytes:
    """ZRLE CPIXELs: 32 bpp pixels whose colour bits fit in 3 bytes drop the spare byte."""
    bpp = pf.bytes_per_pixel
    raw = np.frombuffer(pack_pixels(img, pf), np.uint8).reshape(-1, bpp)
    if bpp != 4 or pf.depth > 24:
        return raw.tobytes()
    used = (pf.red_max << pf.red_shift) | (pf.green_max << pf.green_shift)
    used |= pf.blue_max << pf.blue_shift
    if used < (1 << 24):  # least significant 3 bytes
        keep = slice(1, 4) if pf.big_endian else slice(0, 3)
    elif used & 0xFF == 0:  # most significant 3 bytes
        keep = slice(0, 3) if pf.big_endian else slice(1, 4)
    else:
        return raw.tobytes()
    return np.ascontiguousarray(raw[:, keep]).tobytes()


def pack_tpixels(img: U8, pf: PixelFormat) -> bytes:
    """Tight TPIXELs: R, G, B bytes for 888 formats, else plain PIXELs."""
    if pf.is_888():
        return np.ascontiguousarray(img).tobytes()
    return pack_pixels(img, pf)


# --- handshake ---------------------------------------------------------------------------


def server_init(w: int, h: int, pf: PixelFormat = BGRX, name: bytes = b"test desk") -> bytes:
    return struct.pack(">HH", w, h) + pf.pack() + struct.pack(">I", len(name)) + name


def connect(
    w: int = 64,
    h: int = 48,
    *,
    client_pf: PixelFormat | None = BGRX,
    server_pf: PixelFormat = BGRX,
    swap_red_blue: bool = False,
) -> RFBClient:
    """A client brought to the connected state through a scripted 3.8 None handshake."""
    client = RFBClient(pixel_format=client_pf, swap_red_blue=swap_red_blue)
    events: list[Event] = []
    events += client.receive_data(b"RFB 003.008\n")
    events += client.receive_data(b"\x01\x01")
    events += client.receive_data(struct.pack(">I", 0))
    events += client.receive_data(server_init(w, h, server_pf))
    assert any(isinstance(e, Connected) for e in events)
    client.data_to_send()
    return client


# --- framebuffer updates -------------------------------------------------------------------


def rect(x: int, y: int, w: int, h: int, enc: int, body: bytes = b"") -> bytes:
    return struct.pack(">HHHHi", x, y, w, h, enc) + body


def update(*rects: bytes, count: int | None = None) -> bytes:
    n = len(rects) if count is None else count
    return struct.pack(">BxH", 0, n) + b"".join(rects)


def raw_body(img: U8, pf: PixelFormat) -> bytes:
    return pack_pixels(img, pf)


def rre_body(bg: U8, subs: Sequence[tuple[U8, int, int, int, int]], pf: PixelFormat) -> bytes:
    out = struct.pack(">I", len(subs)) + pack_pixels(bg, pf)
    for colour, x, y, w, h in subs:
        out += pack_pixels(colour, pf) + struct.pack(">HHHH", x, y, w, h)
    return out


def hextile_body(img: U8, pf: PixelFormat, mode: str = "mixed") -> bytes:
    """Hextile with per-tile choice: raw, solid, mono subrects, or coloured subrects."""
    h, w = img.shape[:2]
    out = bytearray()
    n = 0
    for ty in range(0, h, 16):
        for tx in range(0, w, 16):
            tile = img[ty : ty + 16, tx : tx + 16]
            th, tw = tile.shape[:2]
            choice = mode if mode != "mixed" else ("raw", "coloured", "mono", "solid")[n % 4]
            n += 1
            colours = np.unique(tile.reshape(-1, 3), axis=0)
            if choice == "solid" and len(colours) == 1:
                out += bytes([2]) + pack_pixels(colours[0], pf)
                continue
            if choice == "mono" and len(colours) <= 2:
                bg = colours[0]
                fg = colours[-1]
                mono = _pixel_subrects(tile, fg) if len(colours) == 2 else []
                out += bytes([2 | 4 | 8]) + pack_pixels(bg, pf) + pack_pixels(fg, pf)
                out += bytes([len(mono)])
                for sx, sy, sw in mono:
                    out += bytes([(sx << 4) | sy, ((sw - 1) << 4) | 0])
                continue
            if choice == "coloured":
                runs = _row_runs(tile)
                if len(runs) <= 255:
                    bg = tile[0, 0]
                    out += bytes([2 | 8 | 16]) + pack_pixels(bg, pf) + bytes([len(runs)])
                    for colour, sx, sy, sw in runs:
                        out += pack_pixels(colour, pf) + bytes([(sx << 4) | sy, (sw - 1) << 4])
                    continue
            out += bytes([1]) + pack_pixels(tile, pf)
    return bytes(out)


def _row_runs(tile: U8) -> list[tuple[U8, int, int, int]]:
    runs = []
    for y in range(tile.shape[0]):
        x = 0
        row = tile[y]
        while x < tile.shape[1]:
            end = x + 1
            while end < tile.shape[1] and (row[end] == row[x]).all():
                end += 1
            runs.append((row[x], x, y, end - x))
            x = end
    return runs


def _pixel_subrects(tile: U8, fg: U8) -> list[tuple[int, int, int]]:
    return [(x, y, w) for colour, x, y, w in _row_runs(tile) if (colour == fg).all()]


class ZlibStream:
    """Server-side persistent zlib stream, flushed per rectangle like real servers."""

    def __init__(self) -> None:
        self._c = zlib.compressobj()

    def __call__(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)


def zlib_body(img: U8, pf: PixelFormat, stream: ZlibStream) -> bytes:
    data = stream(pack_pixels(img, pf))
    return struct.pack(">I", len(data)) + data


def _rle_length(n: int) -> bytes:
    n -= 1
    return b"\xff" * (n // 255) + bytes([n % 255])


def zrle_tile(tile: U8, pf: PixelFormat, mode: str) -> bytes:
    th, tw = tile.shape[:2]
    flat = tile.reshape(-1, 3)
    colours, idx = np.unique(flat, axis=0, return_inverse=True)
    idx = idx.reshape(-1)
    if mode == "solid" and len(colours) == 1:
        return b"\x01" + pack_cpixels(colours[:1], pf)
    if mode == "packed" and 2 <= len(colours) <= 16:
        bits = 1 if len(colours) == 2 else 2 if len(colours) <= 4 else 4
        rows = idx.reshape(th, tw).astype(np.uint8)
        per = 8 // bits
        pad = (-tw) % per
        rows = np.pad(rows, ((0, 0), (0, pad)))
        packed = np.zeros((th, rows.shape[1] // per), np.uint8)
        for k in range(per):
            packed |= rows[:, k::per] << (8 - bits * (k + 1))
        return bytes([len(colours)]) + pack_cpixels(colours, pf) + packed.tobytes()
    runs = []
    i = 0
    while i < len(idx):
        j = i + 1
        while j < len(idx) and idx[j] == idx[i]:
            j += 1
        runs.append((int(idx[i]), j - i))
        i = j
    if mode == "prle" and 2 <= len(colours) <= 127:
        out = bytearray([128 + len(colours)]) + pack_cpixels(colours, pf)
        for k, n in runs:
            out += bytes([k]) if n == 1 else bytes([k | 128]) + _rle_length(n)
        return bytes(out)
    if mode == "rle":
        out = bytearray([128])
        for k, n in runs:
            out += pack_cpixels(colours[k : k + 1], pf) + _rle_length(n)
        return bytes(out)
    return b"\x00" + pack_cpixels(flat, pf)


def zrle_body(img: U8, pf: PixelFormat, stream: ZlibStream, mode: str = "mixed") -> bytes:
    h, w = img.shape[:2]
    tiles = bytearray()
    n = 0
    for ty in range(0, h, 64):
        for tx in range(0, w, 64):
            tile = img[ty : ty + 64, tx : tx + 64]
            choice = mode if mode != "mixed" else ("raw", "solid", "packed", "rle", "prle")[n % 5]
            n += 1
            tiles += zrle_tile(tile, pf, choice)
    data = stream(bytes(tiles))
    return struct.pack(">I", len(data)) + data


def compact_length(n: int) -> bytes:
    out = bytearray([n & 0x7F])
    if n > 0x7F:
        out[0] |= 0x80
        out.append((n >> 7) & 0x7F)
        if n > 0x3FFF:
            out[1] |= 0x80
            out.append(n >> 14)
    return bytes(out)


def _tight_data(data: bytes, stream: ZlibStream | None) -> bytes:
    if len(data) < 12:
        return data
    assert stream is not None
    comp = stream(data)
    return compact_length(len(comp)) + comp


def tight_fill(colour: U8, pf: PixelFormat) -> bytes:
    return bytes([0x80]) + pack_tpixels(colour.reshape(1, 3), pf)


def tight_jpeg(img: U8, quality: int = 90) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    jpeg = buf.getvalue()
    return bytes([0x90]) + compact_length(len(jpeg)) + jpeg, jpeg


def tight_copy(img: U8, pf: PixelFormat, stream: ZlibStream, sid: int = 0) -> bytes:
    return bytes([sid << 4]) + _tight_data(pack_tpixels(img, pf), stream)


def tight_palette(img: U8, pf: PixelFormat, stream: ZlibStream, sid: int = 1) -> bytes:
    h, w = img.shape[:2]
    colours, idx = np.unique(img.reshape(-1, 3), axis=0, return_inverse=True)
    idx = idx.reshape(h, w).astype(np.uint8)
    if len(colours) == 2:
        data = np.packbits(idx, axis=1).tobytes()
    else:
        data = idx.tobytes()
    head = bytes([0x40 | (sid << 4), 1, len(colours) - 1]) + pack_tpixels(colours, pf)
    return head + _tight_data(data, stream)


def tight_gradient(img: U8, pf: PixelFormat, stream: ZlibStream, sid: int = 2) -> bytes:
    """Gradient filter: residual of each channel against clamp(left + up - upleft)."""
    if pf.is_888():
        comps = img.astype(np.int32)
        maxes = np.array([255, 255, 255])
    else:
        v = _values(img, pf)
        maxes = np.array([pf.red_max, pf.green_max, pf.blue_max])
        shifts = [pf.red_shift, pf.green_shift, pf.blue_shift]
        comps = np.stack([(v >> s) & m for s, m in zip(shifts, maxes, strict=True)], -1)
        comps = comps.astype(np.int32)
    padded = np.pad(comps, ((1, 0), (1, 0), (0, 0)))
    pred = padded[1:, :-1] + padded[:-1, 1:] - padded[:-1, :-1]
    pred = np.clip(pred, 0, maxes)
    diff = (comps - pred) & maxes
    if pf.is_888():
        data = diff.astype(np.uint8).tobytes()
    else:
        vals = np.zeros(diff.shape[:-1], np.uint32)
        for c, s in enumerate(shifts):
            vals |= diff[..., c].astype(np.uint32) << s
        dt = np.dtype(f"{'>' if pf.big_endian else '<'}u{pf.bytes_per_pixel}")
        data = vals.astype(dt).tobytes()
    return bytes([0x40 | (sid << 4), 2]) + _tight_data(data, stream)


def cut_text(data: bytes) -> bytes:
    return struct.pack(">B3xI", 3, len(data)) + data


def extended_clipboard(payload: bytes) -> bytes:
    return struct.pack(">B3xi", 3, -len(payload)) + payload


def count_distinct(img: U8) -> int:
    flat = img.reshape(-1, 3).astype(np.uint32)
    return len(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]))


def make_xwd(img: U8) -> bytes:
    """A 24-bit TrueColor XWD file (what ``xwud`` displays) from an RGB image."""
    h, w = img.shape[:2]
    name = b"guacr\0"
    header_size = 100 + len(name)
    fields = [
        header_size, 7, 2, 24, w, h, 0,  # size, version, ZPixmap, depth, w, h, xoffset
        0, 32, 0, 32, 32, w * 4,  # LSBFirst, bitmap unit/order/pad, bpp, bytes per line
        4, 0xFF0000, 0x00FF00, 0x0000FF, 8, 256, 0,  # TrueColor, masks, bits/rgb, cmap
        w, h, 0, 0, 0,  # window geometry
    ]  # fmt: skip
    pixels = np.zeros((h, w, 4), np.uint8)
    pixels[..., 0] = img[..., 2]
    pixels[..., 1] = img[..., 1]
    pixels[..., 2] = img[..., 0]
    return struct.pack(">25I", *fields) + name + pixels.tobytes()
