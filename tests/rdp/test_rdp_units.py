"""Unit tests of the RDP handler's pure parts: keymaps, error mapping, sizes, fingerprints."""

from __future__ import annotations

import hashlib

import pytest

from guacr.contract.params import Params
from guacr.handlers.rdp import keymap
from guacr.handlers.rdp.client import RDPConnectError
from guacr.handlers.rdp.handler import (
    PARAMS_DECLARED,
    cert_matches,
    connect_error,
    display_size,
    error_for_info,
    fingerprints,
)
from guacr.protocol.status import Status


@pytest.mark.parametrize(
    "layout, ch, code, mods",
    [
        ("en-us-qwerty", "a", 0x1E, 0),
        ("en-us-qwerty", "A", 0x1E, keymap.SHIFT),
        ("en-us-qwerty", ":", 0x27, keymap.SHIFT),
        ("en-us-qwerty", "_", 0x0C, keymap.SHIFT),
        ("de-de-qwertz", "z", 0x15, 0),
        ("de-de-qwertz", "y", 0x2C, 0),
        ("de-de-qwertz", "@", 0x10, keymap.ALTGR),
        ("de-de-qwertz", "ß", 0x0C, 0),
        ("de-de-qwertz", "€", 0x12, keymap.ALTGR),
        ("fr-fr-azerty", "a", 0x10, 0),
        ("fr-fr-azerty", "1", 0x02, keymap.SHIFT),
        ("fr-fr-azerty", "é", 0x03, 0),
        ("fr-fr-azerty", "m", 0x27, 0),
        ("fr-fr-azerty", "@", 0x0B, keymap.ALTGR),
    ],
)
def test_layouts_type_characters(layout: str, ch: str, code: int, mods: int) -> None:
    assert keymap.LAYOUTS[layout].keys[keymap.keysym_of(ch)] == (code, mods)


def test_characters_a_layout_lacks_fall_back_to_unicode() -> None:
    us = keymap.LAYOUTS["en-us-qwerty"]
    for ch in "éß€漢":
        assert keymap.keysym_of(ch) not in us.keys
        assert keymap.codepoint_of(keymap.keysym_of(ch)) == ord(ch)
    assert keymap.codepoint_of(0xFF0D) is None  # Return is a key, not a character


def test_error_info_codes_map_as_guacd() -> None:
    assert error_for_info(0x1) == (Status.SESSION_CLOSED, "Forcibly disconnected.")
    assert error_for_info(0x3) == (Status.SESSION_TIMEOUT, "Idle session time limit exceeded.")
    assert error_for_info(0x5)[0] == Status.SESSION_CONFLICT
    assert error_for_info(0x9)[0] == Status.CLIENT_FORBIDDEN
    assert error_for_info(0xC)[0] == Status.SUCCESS
    assert error_for_info(0x1234) == (Status.UPSTREAM_ERROR, "Upstream error.")


def test_connect_errors_map_as_guacd() -> None:
    assert connect_error(RDPConnectError("unreachable", "x")).status == Status.UPSTREAM_NOT_FOUND
    assert connect_error(RDPConnectError("certificate", "x")).status == Status.UPSTREAM_NOT_FOUND
    assert connect_error(RDPConnectError("security", "x")).status == Status.CLIENT_UNAUTHORIZED
    assert connect_error(RDPConnectError("protocol", "x")).status == Status.UPSTREAM_ERROR


def params(**values: str) -> Params:
    return Params(PARAMS_DECLARED, values)


def test_display_size_as_guacd() -> None:
    assert display_size(params(), 1024, 768, 96) == (1024, 768, 96)
    assert display_size(params(), 1366, 768, 96) == (1364, 768, 96)  # multiple of 4
    assert display_size(params(width="800", height="600"), 1024, 768, 96) == (800, 600, 96)
    # HiDPI clients: 96 DPI if the scaled size is still at least 800x600, else 120, else
    # the client's own DPI.
    assert display_size(params(), 2560, 1600, 192) == (1280, 800, 96)
    assert display_size(params(), 1400, 1100, 192) == (872, 687, 120)
    assert display_size(params(), 1200, 900, 192) == (1200, 900, 192)


def test_fingerprints() -> None:
    der = b"certificate"
    digest = hashlib.sha256(der).hexdigest()
    colons = ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert cert_matches(der, fingerprints(f"sha256:{colons.upper()}"))
    assert cert_matches(der, fingerprints(f" sha1:00, sha256:{digest}"))
    assert not cert_matches(der, fingerprints("sha256:" + "0" * 64))
    assert not cert_matches(der, fingerprints(""))


class FakeRDP:
    """Records what the handler's keyboard logic sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bool]] = []

    def key(self, scancode: int, extended: bool, pressed: bool) -> None:
        self.sent.append(("key", scancode | (0x100 if extended else 0), pressed))

    def unicode(self, codepoint: int, pressed: bool) -> None:
        self.sent.append(("unicode", codepoint, pressed))


def keyboard(layout: str) -> tuple[object, FakeRDP]:
    import logging

    from guacr.handlers.rdp.handler import RDPHandler, RDPSettings

    handler = object.__new__(RDPHandler)
    settings = RDPSettings.parse(params(**{"server-layout": layout}), lambda _: None)
    fake = FakeRDP()
    handler.__dict__.update(
        settings=settings, rdp=fake, _held={}, _mods=0, _shift_keys=set(),
        log=logging.getLogger("test"),
    )  # fmt: skip
    return handler, fake


def test_keys_press_the_modifiers_the_layout_needs() -> None:
    handler, rdp = keyboard("de-de-qwertz")
    type_ = lambda ks: (handler.on_key(None, ks, True), handler.on_key(None, ks, False))  # noqa: E731
    type_(ord("@"))  # AltGr+Q on German keyboards
    assert rdp.sent == [
        ("key", keymap.SC_ALTGR, True), ("key", 0x10, True), ("key", keymap.SC_ALTGR, False),
        ("key", 0x10, False),
    ]  # fmt: skip
    rdp.sent.clear()
    handler.on_key(None, 0xFFE1, True)  # the user holds Shift...
    type_(ord("z"))  # ...but a lower-case z needs it released for a moment
    handler.on_key(None, 0xFFE1, False)
    assert rdp.sent == [
        ("key", keymap.SC_LSHIFT, True), ("key", keymap.SC_LSHIFT, False),
        ("key", keymap.SC_RSHIFT, False), ("key", 0x15, True), ("key", keymap.SC_LSHIFT, True),
        ("key", 0x15, False), ("key", keymap.SC_LSHIFT, False),
    ]  # fmt: skip


def test_characters_outside_the_layout_are_unicode_events() -> None:
    handler, rdp = keyboard("en-us-qwerty")
    handler.on_key(None, 0x1000000 | 0x263A, True)  # ☺
    handler.on_key(None, 0x1000000 | 0x263A, False)
    assert rdp.sent == [("unicode", 0x263A, True), ("unicode", 0x263A, False)]


def test_display_control_layout_pdu() -> None:
    import struct

    from guacr.handlers.rdp.display_control import clamp_size, layout_pdu

    pdu = layout_pdu(800, 600)
    assert struct.unpack_from("<IIII", pdu) == (2, 56, 40, 1)
    assert struct.unpack_from("<IiiII", pdu, 16) == (1, 0, 0, 800, 600)
    assert len(pdu) == 56
    assert clamp_size(801, 50) == (800, 200)
