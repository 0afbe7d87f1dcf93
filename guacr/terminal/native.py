"""Build and load the C screen layer (`_vtscreen.c`) over the system libvterm.

Why C at all: libvterm's own screen layer cannot reach guacr's speed target
(see the header of `_vtscreen.c` for the measurements), so guacr keeps
libvterm's parser and state layer and adds its own cell store. The store is a
plain shared library loaded with ctypes: no Python headers and no CFFI needed,
only a C compiler and libvterm's header at build time.

Build it once at install time with ``python -m guacr.terminal.build`` (needs
the Debian packages ``gcc`` and ``libvterm-dev``); at run time only ``libvterm0``
is needed. If the library has not been built, the first import tries to build
it (into the package directory, or ``$XDG_CACHE_HOME/guacr`` when that is not
writable) and fails with a message naming the packages if it cannot.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

from guacr.native_build import CLibrary, NativeLibraryError

__all__ = ["ABI", "LIBRARY", "NativeLibraryError", "build", "library_path", "load"]

#: Must match GVT_ABI in _vtscreen.c.
ABI = 3

_LIBVTERM_SONAME = "libvterm.so.0"
LIBRARY = CLibrary(
    Path(__file__).with_name("_vtscreen.c"),
    "terminal library",
    link=("-lvterm",),
    packages=("gcc", "libvterm-dev"),
    hints=(
        ("vterm.h", "install the Debian package 'libvterm-dev'"),
        ("-lvterm", "install the Debian packages 'libvterm0' and 'libvterm-dev'"),
    ),
)
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def library_path() -> Path | None:
    """The built library for the current source, if any."""
    return LIBRARY.built()


def build(dest: Path | None = None) -> Path:
    """Compile `_vtscreen.c` against the system libvterm; returns the library path."""
    return LIBRARY.build(dest)


def _libvterm_missing_message() -> str:
    return (
        f"the terminal emulator needs libvterm ({_LIBVTERM_SONAME}); "
        "install the Debian package 'libvterm0' (apt-get install libvterm0)"
    )


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_size, vp, cp = ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p
    i32p = ctypes.POINTER(ctypes.c_int32)
    u32p = ctypes.POINTER(ctypes.c_uint32)
    sigs: dict[str, tuple[type | None, list[type]]] = {
        "gvt_abi": (c_int, []),
        "gvt_cell_size": (c_int, []),
        "gvt_new": (vp, [c_int, c_int, c_int]),
        "gvt_free": (None, [vp]),
        "gvt_set_answerback": (None, [vp, cp, c_int]),
        "gvt_feed": (c_int, [vp, cp, c_size]),
        "gvt_resize": (None, [vp, c_int, c_int]),
        "gvt_take_damage": (c_int, [vp, i32p, c_int]),
        "gvt_set_full_damage": (None, [vp]),
        "gvt_cursor": (None, [vp, i32p]),
        "gvt_modes": (c_int, [vp]),
        "gvt_geometry": (None, [vp, i32p]),
        "gvt_take_output": (c_size, [vp, cp, c_size]),
        "gvt_output_len": (c_size, [vp]),
        "gvt_take_osc": (c_size, [vp, cp, c_size]),
        "gvt_osc_len": (c_size, [vp]),
        "gvt_line_wrapped": (c_int, [vp, c_int]),
        "gvt_line_runs": (c_int, [vp, c_int, c_int, i32p, c_int, u32p, c_int, i32p]),
        "gvt_set_scrollback": (c_int, [vp, c_int]),
        "gvt_clear_scrollback": (None, [vp]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def load() -> ctypes.CDLL:
    """Load (building first if needed) the screen library; cached per process."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        try:
            ctypes.CDLL(_LIBVTERM_SONAME)
        except OSError as exc:
            raise NativeLibraryError(_libvterm_missing_message()) from exc
        lib = LIBRARY.load()
        _declare(lib)
        if lib.gvt_abi() != ABI:
            raise NativeLibraryError(f"{lib._name} has ABI {lib.gvt_abi()}, expected {ABI}")
        _lib = lib
        return lib
