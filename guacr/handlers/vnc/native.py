"""The C ZRLE tile decoder (``_zrle.c``), loaded with ctypes.

``python -m guacr.handlers.vnc.native`` builds it (install time; needs ``gcc``).
:func:`load` raises NativeLibraryError when it can be neither found nor built; zrle.py then
keeps its Python decoder: the C one is an optimisation, never a requirement.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

from guacr.native_build import CLibrary, NativeLibraryError

__all__ = ["ABI", "LIBRARY", "RawTileDecoder", "bind", "load"]

#: Must match GZRLE_ABI in _zrle.c.
ABI = 1
LIBRARY = CLibrary(Path(__file__).with_name("_zrle.c"), "ZRLE tile decoder")

#: (tile bytes, address of an (h, w, cps) uint8 C-contiguous array, w, h, cps) ->
#: (0 or a negative error code, offset after the tiles or of the failing byte).
RawTileDecoder = Callable[[bytes, int, int, int, int], tuple[int, int]]


def bind(lib: ctypes.CDLL) -> RawTileDecoder:
    """Wrap ``gzrle_decode_tiles`` of a loaded library (also used on test builds)."""
    if lib.gzrle_abi() != ABI:
        raise NativeLibraryError(f"{lib._name} has ABI {lib.gzrle_abi()}, expected {ABI}")
    fn = lib.gzrle_decode_tiles
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_size_t),
    ]

    def decode(buf: bytes, out: int, w: int, h: int, cps: int) -> tuple[int, int]:
        end = ctypes.c_size_t(0)
        rc: int = fn(buf, len(buf), out, w, h, cps, ctypes.byref(end))
        return rc, end.value

    return decode


def load() -> RawTileDecoder:
    """The library's decoder, building the library first if needed."""
    try:
        return bind(LIBRARY.load())
    except (OSError, AttributeError) as exc:  # a foreign or broken .so
        raise NativeLibraryError(f"unusable {LIBRARY.what}: {exc}") from exc


if __name__ == "__main__":
    raise SystemExit(LIBRARY.main())
