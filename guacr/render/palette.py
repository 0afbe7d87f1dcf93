"""Palettes of few-colour images: the colours and the PNG scanlines of their indices.

Text and UI regions have at most 256 colours and go out as palette PNGs. The work is
done by the C indexer ``_palette.c`` (one pass, see its header for why C), built at
install time with ``python -m guacr.render.palette``; where it cannot be built or
loaded, the Python version below (Pillow's ``getcolors`` plus a hashed lookup table)
gives the same images, with the palette in another order.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Final, cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from guacr.native_build import CLibrary, NativeLibraryError

__all__ = ["LIBRARY", "MAX_COLOURS", "count_colours", "index_colours"]

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
#: (colours as masked uint32 pixels, (h, w + 1) scanlines: filter byte 0 + indices)
Indexed = tuple[U32, U8]

MAX_COLOURS: Final = 256
#: Must match GPAL_ABI in _palette.c.
ABI = 1
LIBRARY = CLibrary(Path(__file__).with_name("_palette.c"), "palette indexer")

RGB_MASK: Final = int.from_bytes(b"\xff\xff\xff\x00", sys.byteorder)
_RGB_MASK32 = np.uint32(RGB_MASK)
_HASH_MULT = np.uint32(0x9E3779B1)  # Fibonacci hashing into a 2**16 lookup table


# ------------------------------------------------------------------------------ Python


def _pillow_colours(pixels: U32, step: int) -> list[tuple[int, tuple[int, ...]]] | None:
    sample = np.ascontiguousarray(pixels[::step, ::step])
    h, w = sample.shape
    image = Image.frombuffer("RGBX", (w, h), sample, "raw", "RGBX", 0, 1)
    # Pillow's colour counter gives up as soon as it passes the limit: cheap for photos.
    return cast(list[tuple[int, tuple[int, ...]]] | None, image.getcolors(MAX_COLOURS))


def count_colours_py(pixels: U32, step: int = 1) -> int | None:
    found = _pillow_colours(pixels, step)
    return None if found is None else len(found)


def index_colours_py(pixels: U32) -> Indexed | None:
    found = _pillow_colours(pixels, 1)
    if found is None:
        return None
    flat = bytes(chain.from_iterable(c for _, c in found))
    colours = np.frombuffer(flat, np.uint32) & _RGB_MASK32  # the padding byte is no colour
    keys = (colours * _HASH_MULT) >> np.uint32(16)
    if len(set(keys.tolist())) != len(colours):
        return None  # hash collision (or one colour twice): callers fall back to RGB
    table = np.zeros(1 << 16, np.uint8)
    table[keys] = np.arange(len(colours), dtype=np.uint8)
    h, w = pixels.shape
    # Every pixel's colour is in ``colours`` (getcolors is exact), so this is exact.
    packed = pixels & _RGB_MASK32
    rows = np.zeros((h, w + 1), np.uint8)
    rows[:, 1:] = table[(packed * _HASH_MULT) >> np.uint32(16)]
    return colours, rows


# ------------------------------------------------------------------------------ native

#: (pixels address, w, h, row stride in pixels, step, mask, palette address,
#:  rows address or None) -> colour count, -1 above 256, -2 for bad arguments
RawIndexer = Callable[[int, int, int, int, int, int, int, int | None], int]


def bind(lib: ctypes.CDLL) -> RawIndexer:
    """Wrap ``gpal_index`` of a loaded library (also used on test builds)."""
    if lib.gpal_abi() != ABI:
        raise NativeLibraryError(f"{lib._name} has ABI {lib.gpal_abi()}, expected {ABI}")
    fn = lib.gpal_index
    fn.restype = ctypes.c_int
    vp, c_int = ctypes.c_void_p, ctypes.c_int
    fn.argtypes = [vp, c_int, c_int, ctypes.c_ssize_t, c_int, ctypes.c_uint32, vp, vp]
    return cast(RawIndexer, fn)


def _as_rows(pixels: U32) -> tuple[U32, int]:
    """``pixels`` (or a contiguous copy) with aligned, contiguous rows, and its row
    stride in pixels: what the C code may read."""
    s0, s1 = pixels.strides
    if s1 != 4 or s0 % 4 or s0 < 4 * pixels.shape[1] or pixels.ctypes.data % 4:
        pixels = np.ascontiguousarray(pixels)
        s0 = pixels.strides[0]
    return pixels, s0 // 4


def native_functions(
    raw: RawIndexer,
) -> tuple[Callable[[U32, int], int | None], Callable[[U32], Indexed | None]]:
    """count_colours and index_colours over the C indexer."""

    def count_colours_c(pixels: U32, step: int = 1) -> int | None:
        h, w = pixels.shape
        if not h or not w:
            return 0
        pixels, stride = _as_rows(pixels)
        palette = np.empty(MAX_COLOURS, np.uint32)
        n = raw(pixels.ctypes.data, w, h, stride, step, RGB_MASK, palette.ctypes.data, None)
        if n < -1:
            raise ValueError(f"palette indexer rejected its arguments ({n})")
        return None if n < 0 else n

    def index_colours_c(pixels: U32) -> Indexed | None:
        h, w = pixels.shape
        if not h or not w:
            return None
        pixels, stride = _as_rows(pixels)
        palette = np.empty(MAX_COLOURS, np.uint32)
        rows = np.empty((h, w + 1), np.uint8)
        n = raw(
            pixels.ctypes.data, w, h, stride, 1, RGB_MASK, palette.ctypes.data, rows.ctypes.data
        )
        if n < -1:
            raise ValueError(f"palette indexer rejected its arguments ({n})")
        return None if n < 0 else (palette[:n], rows)

    return count_colours_c, index_colours_c


def _choose() -> tuple[Callable[[U32, int], int | None], Callable[[U32], Indexed | None]]:
    """Decided once per process (at import, so a forking server loads it once)."""
    try:
        return native_functions(bind(LIBRARY.load()))
    except (NativeLibraryError, OSError, AttributeError) as exc:
        log.warning("%s; palettes are built in Python (slower)", exc)
        return count_colours_py, index_colours_py


#: Colours among every ``step``-th pixel of every ``step``-th row (None above 256).
count_colours: Callable[[U32, int], int | None]
#: The palette and index scanlines of an (h, w) array of RGBX pixels (as uint32), None
#: above 256 colours.
index_colours: Callable[[U32], Indexed | None]
count_colours, index_colours = _choose()


if __name__ == "__main__":
    raise SystemExit(LIBRARY.main())
