"""Hostile or broken server input must raise RFBProtocolError (typed), never crash."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.events import (
    FramebufferUpdateStart,
    RFBError,
    RFBProtocolError,
    RFBStateError,
)
from tests.vnc import rfb_fakes as F


def bad(data: bytes, match: str) -> None:
    client = F.connect(64, 48)
    with pytest.raises(RFBProtocolError, match=match):
        client.receive_data(data)
    # A failed client refuses further use instead of resuming a desynced stream.
    with pytest.raises(RFBStateError):
        client.receive_data(b"\x02")


def zrle(tiles: bytes, w: int = 16, h: int = 16) -> bytes:
    data = zlib.compress(tiles)
    return F.update(F.rect(0, 0, w, h, 16, struct.pack(">I", len(data)) + data))


def test_unknown_message_type() -> None:
    bad(b"\x07", "unknown server message type 7")


def test_rect_outside_framebuffer() -> None:
    bad(F.update(F.rect(60, 0, 10, 10, 0, bytes(400))), "outside framebuffer")


def test_copyrect_source_outside() -> None:
    bad(F.update(F.rect(0, 0, 10, 10, 1, struct.pack(">HH", 60, 45))), "outside framebuffer")


def test_unsupported_encoding() -> None:
    bad(F.update(F.rect(0, 0, 4, 4, 99, b"")), "unsupported encoding 99")


def test_corrupt_zlib() -> None:
    bad(F.update(F.rect(0, 0, 4, 4, 6, struct.pack(">I", 5) + b"\x78\x9c\xff\xff\xff")), "zlib")


def test_zlib_wrong_size() -> None:
    data = zlib.compress(bytes(10))
    bad(F.update(F.rect(0, 0, 4, 4, 6, struct.pack(">I", len(data)) + data)), "expected 64")


def test_zrle_invalid_subencoding() -> None:
    bad(zrle(b"\x11"), "sub-encoding 17")


def test_zrle_run_overflow() -> None:
    bad(zrle(b"\x80" + b"\1\2\3" + b"\xff\x10"), "overflows")


def test_zrle_truncated() -> None:
    bad(zrle(b"\x00" + bytes(10)), "truncated")


def test_zrle_palette_index_out_of_range() -> None:
    bad(zrle(bytes([130]) + bytes(6) + b"\x05" + bytes(255)), "palette index")


def test_zrle_stray_bytes() -> None:
    bad(zrle(b"\x01\1\2\3" + b"junk"), "stray")


def test_hextile_subrect_outside_tile() -> None:
    body = bytes([2 | 4 | 8]) + bytes(8) + b"\x01" + bytes([0xF0, 0x10])
    bad(F.update(F.rect(0, 0, 16, 16, 5, body)), "Hextile subrectangle")


def test_rre_subrect_outside() -> None:
    body = struct.pack(">I", 1) + bytes(4) + bytes(4) + struct.pack(">HHHH", 0, 0, 5, 5)
    bad(F.update(F.rect(0, 0, 4, 4, 2, body)), "RRE subrectangle")


def test_tight_unknown_filter_and_type() -> None:
    bad(F.update(F.rect(0, 0, 4, 4, 7, b"\x40\x07")), "unknown filter 7")
    bad(F.update(F.rect(0, 0, 4, 4, 7, b"\xa0")), "compression type 10")


def test_tight_palette_index_out_of_range() -> None:
    body = b"\x40\x01\x02" + bytes(9) + F.compact_length(len(zlib.compress(b"\x09" * 16)))
    body += zlib.compress(b"\x09" * 16)
    bad(F.update(F.rect(0, 0, 4, 4, 7, body)), "palette index")


def test_cursor_too_large() -> None:
    bad(F.update(F.rect(0, 0, 4000, 10, Encoding.CURSOR)), "too large")


def test_huge_cut_text() -> None:
    bad(struct.pack(">B3xI", 3, 0x7FFFFFFF), "cut text")


def test_extended_clipboard_bad_action() -> None:
    bad(F.extended_clipboard(struct.pack(">I", 0x40000000)), "action")


def test_truncated_stream_is_just_incomplete() -> None:
    client = F.connect(8, 8)
    msg = F.update(F.rect(0, 0, 8, 8, 0, bytes(256)))
    events = client.receive_data(msg[:-1])
    assert events == [FramebufferUpdateStart(1)]
    assert len(client.receive_data(msg[-1:])) == 2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_only_raise_rfb_errors(data: bytes) -> None:
    client = F.connect(32, 32)
    try:
        client.receive_data(data)
    except RFBError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0, 2, 5, 6, 7, 16]),
    st.binary(max_size=300),
    st.integers(0, 40),
    st.integers(0, 40),
)
def test_random_rect_bodies_only_raise_rfb_errors(enc: int, body: bytes, w: int, h: int) -> None:
    client = F.connect(40, 40)
    try:
        client.receive_data(F.update(F.rect(0, 0, w, h, enc, body)))
    except RFBError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_handshake_bytes_only_raise_rfb_errors(data: bytes) -> None:
    from guacr.handlers.vnc.client import RFBClient

    client = RFBClient(password="x")
    try:
        client.receive_data(b"RFB 003.008\n" + data)
        client.receive_data(b"")
    except RFBError:
        pass


def test_mutated_valid_updates_only_raise_rfb_errors() -> None:
    """Flip bytes in valid Hextile/ZRLE/Tight updates: errors must stay typed."""
    rng = np.random.default_rng(3)
    img = F.random_image(40, 40, 4)
    bodies = [
        F.update(F.rect(0, 0, 40, 40, 5, F.hextile_body(img, F.BGRX))),
        F.update(F.rect(0, 0, 40, 40, 16, F.zrle_body(img, F.BGRX, F.ZlibStream(), "prle"))),
        F.update(F.rect(0, 0, 40, 40, 7, F.tight_palette(img, F.BGRX, F.ZlibStream()))),
    ]
    for body in bodies:
        for _ in range(150):
            mutated = bytearray(body)
            for pos in rng.integers(4, len(body), 3):
                mutated[pos] = int(rng.integers(0, 256))
            client = F.connect(40, 40)
            try:
                client.receive_data(bytes(mutated))
            except RFBError:
                pass


def test_absurd_framebuffer_sizes_refused() -> None:
    from guacr.handlers.vnc.client import RFBClient

    client = RFBClient()
    with pytest.raises(RFBProtocolError, match="exceeds"):
        client.receive_data(b"RFB 003.008\n\x01\x01\0\0\0\0" + F.server_init(65535, 65535))
    bad(F.update(F.rect(0, 0, 40000, 20, Encoding.DESKTOP_SIZE)), "exceeds")
