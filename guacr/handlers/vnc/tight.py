"""Tight (encoding 7): fill, JPEG pass-through, and basic compression with filters.

JPEG sub-rectangles are not decoded here: they surface as ``JpegRect`` so the handler
can relay the server's JPEG to the browser as ``image/jpeg`` unchanged. ``decode_jpeg``
is offered for consumers that also need the pixels (e.g. to keep a framebuffer).
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.decoders import MAX_COMPRESSED, DecoderState, inflate
from guacr.handlers.vnc.events import Event, JpegRect, RectDecoded, RFBProtocolError, SolidRect
from guacr.handlers.vnc.pixels import PixelConverter
from guacr.handlers.vnc.stream import Reader, read_compact_length

_FILL = 8
_JPEG = 9
_FILTER_COPY = 0
_FILTER_PALETTE = 1
_FILTER_GRADIENT = 2
# Data shorter than this is sent uncompressed (no length, no zlib).
_MIN_TO_COMPRESS = 12


def decode_tight(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    conv = st.converter
    tps = conv.tpixel_size
    ctl = (yield 1)[0]
    for i in range(4):
        if ctl & (1 << i):
            st.tight_streams[i] = zlib.decompressobj()
    kind = ctl >> 4
    if kind == _FILL:
        tpixel = yield tps
        rgb = conv.tpixels_to_rgb(np.frombuffer(tpixel, np.uint8).reshape(1, tps))[0]
        return SolidRect(x, y, w, h, (int(rgb[0]), int(rgb[1]), int(rgb[2])), Encoding.TIGHT)
    if kind == _JPEG:
        length = yield from read_compact_length()
        data = (yield length) if length else b""
        return JpegRect(x, y, w, h, data)
    if kind > _JPEG:
        raise RFBProtocolError(f"Tight: unsupported compression type {kind}")
    stream = kind & 3
    filter_id = (yield 1)[0] if kind & 4 else _FILTER_COPY
    if filter_id == _FILTER_COPY:
        size = w * h * tps
        data = yield from _read_data(st, stream, size)
        if not size:
            return None
        pixels = conv.tpixels_to_rgb(np.frombuffer(data, np.uint8).reshape(h, w, tps))
    elif filter_id == _FILTER_PALETTE:
        colours = (yield 1)[0] + 1
        palette_raw = yield colours * tps
        palette = conv.tpixels_to_rgb(np.frombuffer(palette_raw, np.uint8).reshape(colours, tps))
        row_bytes = (w + 7) // 8 if colours == 2 else w
        data = yield from _read_data(st, stream, row_bytes * h)
        if not w or not h:
            return None
        packed = np.frombuffer(data, np.uint8).reshape(h, row_bytes)
        idx = np.unpackbits(packed, axis=1)[:, :w] if colours == 2 else packed
        if colours != 2 and int(idx.max()) >= colours:
            raise RFBProtocolError("Tight: palette index out of range")
        pixels = palette[idx]
    elif filter_id == _FILTER_GRADIENT:
        size = w * h * tps
        data = yield from _read_data(st, stream, size)
        if not size:
            return None
        pixels = _gradient(conv, np.frombuffer(data, np.uint8).reshape(h, w, tps))
    else:
        raise RFBProtocolError(f"Tight: unknown filter {filter_id}")
    return RectDecoded(x, y, w, h, pixels, Encoding.TIGHT)


def _read_data(st: DecoderState, stream: int, size: int) -> Reader[bytes]:
    if size < _MIN_TO_COMPRESS:
        return (yield size) if size else b""
    length = yield from read_compact_length()
    if length > MAX_COMPRESSED:
        raise RFBProtocolError(f"Tight: compressed block of {length} bytes")
    data = (yield length) if length else b""
    return inflate(st.tight_streams[stream], data, size, "Tight")


def _gradient(conv: PixelConverter, diff: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Undo Tight's gradient filter: each channel predicted from left + up - up-left.

    The clamp in the predictor makes it non-linear, so pixels are rebuilt along
    anti-diagonals (all independent of each other) rather than one at a time.
    """
    h, w = diff.shape[:2]
    if conv.tpixel_size == 3:
        comps = diff.astype(np.int32)
        maxes = np.array([255, 255, 255], np.int32)
    else:
        pf = conv.pf
        maxes = np.array([pf.red_max, pf.green_max, pf.blue_max], np.int32)
        shifts = np.array([pf.red_shift, pf.green_shift, pf.blue_shift], np.uint32)
        values = conv.values(diff)
        comps = ((values[..., None] >> shifts) & maxes.astype(np.uint32)).astype(np.int32)
    stride = w + 1
    plane = np.zeros(((h + 1) * stride, 3), np.int32)
    flat_diff = comps.reshape(h * w, 3)
    for d in range(h + w - 1):
        ys = np.arange(max(0, d - w + 1), min(h - 1, d) + 1)
        xs = d - ys
        target = (ys + 1) * stride + xs + 1
        pred = plane[target - 1] + plane[target - stride] - plane[target - stride - 1]
        np.clip(pred, 0, maxes, out=pred)
        pred += flat_diff[ys * w + xs]
        pred &= maxes
        plane[target] = pred
    out = plane.reshape(h + 1, stride, 3)[1:, 1:]
    if conv.tpixel_size == 3:
        return conv.tpixels_to_rgb(out.astype(np.uint8))
    pf = conv.pf
    packed = (
        (out[..., 0].astype(np.uint32) << pf.red_shift)
        | (out[..., 1].astype(np.uint32) << pf.green_shift)
        | (out[..., 2].astype(np.uint32) << pf.blue_shift)
    )
    dt = np.dtype(f"{'>' if pf.big_endian else '<'}u{conv.bpp}")
    raw = packed.astype(dt).view(np.uint8).reshape(h, w, conv.bpp)
    return conv.to_rgb(raw)


def decode_jpeg(data: bytes) -> npt.NDArray[np.uint8]:
    """Decode a JpegRect payload to (h, w, 3) RGB with Pillow (CPU-heavy: use a worker)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
