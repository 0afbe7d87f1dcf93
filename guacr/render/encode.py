"""Image encoding for the display engine: PNG (palette when possible), JPEG and WebP.

Everything here runs in worker threads: Pillow's encoders release the GIL, so a small
pool keeps the event loop free. Efforts are picked from measured costs (see
benchmarks/bench_display.py): PNG ``compress_level=1`` and WebP ``method=0``; JPEG is
baseline, the cheapest of the three by far.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from guacr.render import palette

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]

PNG: Final = "image/png"
JPEG: Final = "image/jpeg"
WEBP: Final = "image/webp"

PNG_LEVEL = 1
# Palette images deflate 1 byte per pixel: level 4 makes them noticeably smaller for
# about the same time as level 1 (bench_display.py --micro); RGB PNGs keep level 1.
PALETTE_PNG_LEVEL = 4
WEBP_METHOD = 0
MAX_QUALITY = 90
MIN_QUALITY = 30

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def lossy_quality(lag_ms: int) -> int:
    """guacd's rule: 90 up to 20 ms of client lag, then one step down per ms, floor 30."""
    return max(MIN_QUALITY, min(MAX_QUALITY, MAX_QUALITY - (lag_ms - 20)))


def _rgb_image(pixels: U8) -> Image.Image:
    """An RGB Pillow image from an (h, w, 4) RGBX array (one C-level repack)."""
    h, w = pixels.shape[:2]
    return Image.frombytes("RGB", (w, h), np.ascontiguousarray(pixels), "raw", "RGBX")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
    )


def _palette_png(pixels: U8) -> bytes | None:
    """A palette PNG of an (h, w, 4) RGBX array with at most 256 colours, else None.

    Palette PNGs of desktop text are smaller and faster to deflate than RGB ones
    (``palette.py`` finds the colours). The file is written here rather than by
    Pillow's PNG plugin: the same bytes (unfiltered rows, as Pillow does for palettes)
    for about 25% less time, most of it the plugin's per-image overhead on the many
    small images of a busy desktop (bench_display.py --micro).
    """
    h, w = pixels.shape[:2]
    indexed = palette.index_colours(pixels.view(np.uint32)[..., 0])
    if indexed is None:
        return None
    colours, rows = indexed
    deflate = zlib.compressobj(PALETTE_PNG_LEVEL)
    data = deflate.compress(rows.data) + deflate.flush()
    plte = colours.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)),
            _chunk(b"PLTE", plte),
            _chunk(b"IDAT", data),
            _IEND,
        )
    )


def encode_png(pixels: U8) -> bytes:
    """Lossless PNG, as a palette image when the content allows."""
    palette = _palette_png(pixels)
    if palette is not None:
        return palette
    out = io.BytesIO()
    _rgb_image(pixels).save(out, "PNG", compress_level=PNG_LEVEL)
    return out.getvalue()


def encode_jpeg(pixels: U8, quality: int) -> bytes:
    """Baseline JPEG straight from RGBX (libjpeg-turbo takes it without a repack)."""
    h, w = pixels.shape[:2]
    image = Image.frombuffer("RGBX", (w, h), np.ascontiguousarray(pixels), "raw", "RGBX", 0, 1)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def encode_webp(pixels: U8, quality: int, lossless: bool = False) -> bytes:
    """WebP at the cheapest effort: the default costs 2-3x the time for a few % of size
    (bench_display.py --micro)."""
    out = io.BytesIO()
    _rgb_image(pixels).save(
        out, "WEBP", quality=quality, method=WEBP_METHOD, lossless=lossless, exact=lossless
    )
    return out.getvalue()


def encode_rgba_png(width: int, height: int, rgba: bytes) -> bytes:
    """A PNG with alpha (cursor images)."""
    out = io.BytesIO()
    Image.frombytes("RGBA", (width, height), rgba).save(out, "PNG", compress_level=PNG_LEVEL)
    return out.getvalue()


def encode(pixels: U8, mimetype: str, quality: int, lossless: bool = False) -> bytes:
    """Encode an (h, w, 4) RGBX region in ``mimetype``."""
    if mimetype == JPEG:
        return encode_jpeg(pixels, quality)
    if mimetype == WEBP:
        return encode_webp(pixels, quality, lossless)
    return encode_png(pixels)


def decode_rgb(data: bytes) -> U8:
    """Decode any Pillow-readable image to (h, w, 3) RGB (for JPEG pass-through)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


WORKERS = max(2, os.cpu_count() or 2)
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _forget_executor() -> None:
    global _executor
    _executor = None  # its threads are not in a forked child: the child starts its own


os.register_at_fork(after_in_child=_forget_executor)


def executor() -> ThreadPoolExecutor:
    """The process-wide encoder pool: one thread per CPU (at least 2)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="guacr-encode")
        return _executor
