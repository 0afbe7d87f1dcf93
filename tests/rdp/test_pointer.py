"""RDP pointer updates -> cursor images (guacr.handlers.rdp.pointer), and on the real xrdp."""

from __future__ import annotations

import struct

import numpy as np
from servers.xrdp import XrdpServer

from guacr.handlers.rdp import compat
from guacr.handlers.rdp.pointer import (
    DEFAULT,
    HIDDEN,
    PTR_CACHED,
    PTR_COLOR,
    PTR_NEW,
    PTR_NULL,
    PointerCache,
)
from tests.rdp.rdp_probe import run_session


def color_pointer(index: int = 3) -> bytes:
    """A 2x2 24 bpp color pointer: top row red + transparent, bottom row blue + black."""
    # XOR rows bottom-up, BGR, each row padded to an even length (6 bytes: no padding).
    xor = bytes([255, 0, 0, 0, 0, 0]) + bytes([0, 0, 255, 0, 0, 0])
    # AND rows bottom-up, 1 bit per pixel, padded to 2 bytes: top row's 2nd pixel is 1.
    and_mask = bytes([0b00000000, 0]) + bytes([0b01000000, 0])
    head = struct.pack("<7H", index, 1, 0, 2, 2, len(and_mask), len(xor))
    return head + xor + and_mask


def test_color_pointer_masks() -> None:
    cache = PointerCache()
    cursor = cache.update(PTR_COLOR, color_pointer())
    assert cursor is not None
    assert (cursor.width, cursor.height, cursor.hotspot_x, cursor.hotspot_y) == (2, 2, 1, 0)
    rgba = np.frombuffer(cursor.rgba, np.uint8).reshape(2, 2, 4)
    assert rgba[0, 0].tolist() == [255, 0, 0, 255]  # red, opaque
    assert rgba[0, 1, 3] == 0  # AND 1 over black: transparent
    assert rgba[1, 0].tolist() == [0, 0, 255, 255]  # blue
    assert rgba[1, 1].tolist() == [0, 0, 0, 255]  # black, opaque (AND 0)


def test_cached_new_and_system_pointers() -> None:
    cache = PointerCache()
    first = cache.update(PTR_COLOR, color_pointer(index=7))
    assert cache.update(PTR_CACHED, struct.pack("<H", 7)) == first
    assert cache.update(PTR_CACHED, struct.pack("<H", 8)) is None
    assert cache.update(PTR_NULL, b"") == HIDDEN
    # A 32 bpp "new" pointer carries its own alpha.
    xor = bytes([10, 20, 30, 128]) * 1 + bytes(0)
    head = struct.pack("<H7H", 32, 1, 0, 0, 1, 1, 2, len(xor))
    cursor = cache.update(PTR_NEW, head + xor + b"\0\0")
    assert cursor is not None
    assert np.frombuffer(cursor.rgba, np.uint8).tolist() == [30, 20, 10, 128]
    # Slow-path system pointers: hidden, then default.
    assert cache.slow_path(struct.pack("<HHI", 1, 0, 0)) == HIDDEN
    assert cache.slow_path(struct.pack("<HHI", 1, 0, 0x7F00)) == DEFAULT


def test_xrdp_pointer_shapes_arrive_only_with_fast_path_updates(xrdp: XrdpServer) -> None:
    def move() -> None:
        xrdp.run_x(["xdotool", "mousemove", "5", "700"])  # root window: X's own cursor
        xrdp.run_x(["xdotool", "mousemove", "300", "200"])  # over the xterm

    out = run_session(xrdp, seconds=1.0, until_full=False, during=move)
    assert out.error is None
    shapes = [c for c in out.sink.cursors if c.width]  # type: ignore[attr-defined]
    assert shapes, out.sink.cursors
    with compat.without("fast_path_updates"):
        out = run_session(xrdp, seconds=1.0, until_full=False, during=move)
    assert out.error is None and not out.sink.cursors
