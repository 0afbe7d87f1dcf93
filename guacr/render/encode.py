"""Image encoding for the display engine: PNG (palette when possible), JPEG and WebP.

Everything here runs in worker threads: Pillow's encoders release the GIL, so a small
pool keeps the event loop free. Efforts are picked from measured costs (see
benchmarks/bench_display.py): PNG ``compress_level=1`` and WebP ``method=0``; JPEG is
baseline, the cheapest of the three by far.
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]

PNG: Final = "image/png"
JPEG: Final = "image/jpeg"
WEBP: Final = "image/webp"

PNG_LEVEL = 1
WEBP_METHOD = 0
MAX_QUALITY = 90
MIN_QUALITY = 30

_HASH_MULT = np.uint32(0x9E3779B1)  # Fibonacci hashing into a 2**16 palette table


def lossy_quality(lag_ms: int) -> int:
    """guacd's rule: 90 up to 20 ms of client lag, then one step down per ms, floor 30."""
    return max(MIN_QUALITY, min(MAX_QUALITY, MAX_QUALITY - (lag_ms - 20)))


def _rgb_image(pixels: U8) -> Image.Image:
    """An RGB Pillow image from an (h, w, 4) RGBX array (one C-level repack)."""
    h, w = pixels.shape[:2]
    return Image.frombytes("RGB", (w, h), np.ascontiguousarray(pixels), "raw", "RGBX")


def _palette_image(pixels: U8) -> Image.Image | None:
    """A palette ("P") image when the region has at most 256 colours, else None.

    Palette PNGs of desktop text are several times smaller and faster to deflate than
    RGB ones. Pillow's quantizers are exact only by luck and cost ~15 ms per 512x512
    tile, so indices come from a hashed lookup table instead (well under 1 ms).
    """
    h, w = pixels.shape[:2]
    packed = np.ascontiguousarray(pixels).view(np.uint32).reshape(h, w)
    # Cheap early exit for busy regions: a sample with too many colours.
    sample = packed[:: max(1, h // 8), :: max(1, w // 64)]
    if len(np.unique(sample)) > 256:
        return None
    colours = np.unique(packed) if packed.size <= 4096 else _unique_small(packed)
    if colours is None or len(colours) > 256:
        return None
    keys = (colours * _HASH_MULT) >> np.uint32(16)
    if len(np.unique(keys)) != len(colours):
        return None  # hash collision: rare; plain RGB PNG is still correct
    table = np.zeros(1 << 16, np.uint8)
    table[keys] = np.arange(len(colours), dtype=np.uint8)
    index = table[(packed * _HASH_MULT) >> np.uint32(16)]
    if not np.array_equal(colours[index], packed):
        return None  # a colour outside the sampled set hashed onto a known one
    image = Image.frombytes("P", (w, h), index.tobytes())
    image.putpalette(colours.view(np.uint8).reshape(-1, 4)[:, :3].tobytes())
    return image


def _unique_small(packed: U32) -> U32 | None:
    """Distinct colours if there are at most 256 (Pillow's C counter stops early)."""
    h, w = packed.shape
    rgb = Image.frombytes("RGB", (w, h), packed.tobytes(), "raw", "RGBX")
    found = rgb.getcolors(256)
    if found is None:
        return None
    values = [r | (g << 8) | (b << 16) | (255 << 24) for _, (r, g, b) in found]  # type: ignore[misc]
    return np.array(sorted(values), np.uint32)


def encode_png(pixels: U8) -> bytes:
    """Lossless PNG, as a palette image when the content allows."""
    image = _palette_image(pixels) or _rgb_image(pixels)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=PNG_LEVEL)
    return out.getvalue()


def encode_jpeg(pixels: U8, quality: int) -> bytes:
    """Baseline JPEG straight from RGBX (libjpeg-turbo takes it without a repack)."""
    h, w = pixels.shape[:2]
    image = Image.frombuffer("RGBX", (w, h), np.ascontiguousarray(pixels), "raw", "RGBX", 0, 1)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def encode_webp(pixels: U8, quality: int, lossless: bool = False) -> bytes:
    """WebP at the cheapest effort (default effort costs ~3x for a few % of size)."""
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


def executor() -> ThreadPoolExecutor:
    """The process-wide encoder pool: one thread per CPU (at least 2)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="guacr-encode")
        return _executor
