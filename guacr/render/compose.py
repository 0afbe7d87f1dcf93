"""Terminal cells to a palette image in C (``_compose.c``; its header says why C).

:meth:`guacr.render.glyphs.FontSet.compose` maps each cell to a glyph coverage tile
and a colour pair in Python; this module turns those into the image's palette indices
without holding the GIL. Built at install time with ``python -m guacr.render.compose``;
where it cannot be built or loaded, :data:`palette_indices` is None and the numpy
version in ``glyphs.py`` composes the same image.

Measured on this project's 2-core machine with ``benchmarks/bench_compose.py`` (C vs
the numpy fallback, one run): a full screen of text (1020x760) 1.14 vs 10.3 ms; that
screen + its PNG in an encoder thread 7.7 vs 18.0 ms of CPU, the event loop beside it
waiting 2.6 vs 5.1 ms more per image for the GIL; a 10-cell echo image 45 vs 50 us.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from guacr.native_build import CLibrary, NativeLibraryError

__all__ = ["LIBRARY", "PaletteIndices", "native_palette_indices", "palette_indices"]

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]
#: (tiles (n, ch, cw) uint8, per-cell tile indices and pair indices (rows, cols) int32,
#: number of pairs) -> (the occurring pair * 256 + coverage values, ascending; the
#: (rows * ch, cols * cw) palette indices), or None above 256 such values
PaletteIndices = Callable[[U8, I32, I32, int], tuple[I32, U8] | None]

#: Must match GCMP_ABI in _compose.c.
ABI = 1
LIBRARY = CLibrary(Path(__file__).with_name("_compose.c"), "glyph compositor")

#: (tiles, ntiles, ch, cw, tid, pid, rows, cols, npairs, lut, used, out) addresses and
#: sizes -> entries, -1 above 256, -2 for bad arguments
RawCompose = Callable[[int, int, int, int, int, int, int, int, int, int, int, int], int]


def bind(lib: ctypes.CDLL) -> RawCompose:
    """Wrap ``gcmp_compose`` of a loaded library (also used on test builds)."""
    if lib.gcmp_abi() != ABI:
        raise NativeLibraryError(f"{lib._name} has ABI {lib.gcmp_abi()}, expected {ABI}")
    fn = lib.gcmp_compose
    fn.restype = ctypes.c_int
    vp, c_int = ctypes.c_void_p, ctypes.c_int
    fn.argtypes = [vp, c_int, c_int, c_int, vp, vp, c_int, c_int, c_int, vp, vp, vp]
    return cast(RawCompose, fn)


def native_palette_indices(raw: RawCompose) -> PaletteIndices:
    """:data:`PaletteIndices` over the C compositor."""

    def palette_indices_c(tiles: U8, tid: I32, pid: I32, npairs: int) -> tuple[I32, U8] | None:
        if tiles.ndim != 3 or tid.ndim != 2 or tid.shape != pid.shape:
            raise ValueError("compositor: tiles must be (n, ch, cw), cells (rows, cols)")
        ntiles, ch, cw = tiles.shape
        rows, cols = tid.shape
        tiles = np.ascontiguousarray(tiles, np.uint8)
        tid = np.ascontiguousarray(tid, np.int32)
        pid = np.ascontiguousarray(pid, np.int32)
        lut = np.empty(max(1, npairs) * 256, np.int32)
        used = np.empty(256, np.int32)
        out = np.empty((rows * ch, cols * cw), np.uint8)
        n = raw(
            tiles.ctypes.data, ntiles, ch, cw, tid.ctypes.data, pid.ctypes.data, rows, cols,
            npairs, lut.ctypes.data, used.ctypes.data, out.ctypes.data,
        )  # fmt: skip
        if n < -1:
            raise ValueError(f"compositor rejected its arguments ({n})")
        return None if n < 0 else (used[:n], out)

    return palette_indices_c


def _choose() -> PaletteIndices | None:
    """Decided once per process (at import, so a forking server loads it once)."""
    try:
        return native_palette_indices(bind(LIBRARY.load()))
    except (NativeLibraryError, OSError, AttributeError) as exc:
        log.warning("%s; terminal images are composed with numpy (slower)", exc)
        return None


#: The C compositor, or None where it cannot be built or loaded.
palette_indices: PaletteIndices | None = _choose()


if __name__ == "__main__":
    raise SystemExit(LIBRARY.main())
