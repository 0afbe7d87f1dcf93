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
    # guacd judges the *area* (800x600 = 480000 px), not each side: a wide, low window
    # at 192 DPI is 1200x350 at 96 (too small), 1500x437 at 120 (enough).
    assert display_size(params(), 2400, 700, 192) == (1500, 437, 120)
    # dpi given: the client's pixels are converted to it; width/height still win.
    assert display_size(params(dpi="144"), 1000, 800, 96) == (1500, 1200, 144)
    assert display_size(params(dpi="48", width="1000"), 1000, 800, 96) == (1000, 400, 48)
    # invalid sizes fall back to guacd's defaults one by one.
    assert display_size(params(width="-5"), 1000, 800, 96) == (1024, 800, 96)
    assert display_size(params(height="0"), 1000, 800, 96) == (1000, 768, 96)


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

    accepts_input = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bool]] = []

    def key(self, scancode: int, extended: bool, pressed: bool) -> None:
        self.sent.append(("key", scancode | (0x100 if extended else 0), pressed))

    def unicode(self, codepoint: int, pressed: bool) -> None:
        self.sent.append(("unicode", codepoint, pressed))

    def synchronize(self, flags: int) -> None:
        self.sent.append(("sync", flags, True))


def keyboard(layout: str, synced: bool = True) -> tuple[object, FakeRDP]:
    import logging

    from guacr.handlers.rdp.handler import RDPHandler, RDPSettings

    handler = object.__new__(RDPHandler)
    settings = RDPSettings.parse(params(**{"server-layout": layout}), lambda _: None)
    fake = FakeRDP()
    handler.__dict__.update(
        settings=settings, rdp=fake, _held={}, _mods=0, _shift_keys=set(),
        log=logging.getLogger("test"), _locks=0, _locks_synced=synced,
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
    # guacd's guac_rect_shrink: too large is scaled down keeping the aspect ratio.
    assert clamp_size(16384, 4096) == (8192, 2048)
    assert clamp_size(9000, 9000) == (8192, 8192)
    assert clamp_size(1023, 767) == (1022, 767)


class SizeRecorder:
    can_resize = True

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))


@pytest.mark.parametrize(
    "dpi, client_dpi, size, sent",
    [(96, 96, (800, 600), (800, 600)), (96, 192, (2000, 1200), (1000, 600))],
)
def test_client_size_is_converted_to_the_sessions_dpi(
    dpi: int, client_dpi: int, size: tuple[int, int], sent: tuple[int, int]
) -> None:
    """guacd's size handler: client pixels * session DPI / client DPI, then fitted;
    throttled, and nothing is sent for the size the session already has."""
    import asyncio
    import logging

    from guacr.handlers.rdp import handler as rdp_handler
    from guacr.handlers.rdp.handler import RDPHandler, RDPSettings

    owner = object()
    h = object.__new__(RDPHandler)
    rec = SizeRecorder()
    settings = RDPSettings.parse(params(**{"resize-method": "display-update"}), print)
    h.__dict__.update(
        settings=settings, rdp=rec, conn=type("C", (), {"owner": owner})(),
        display=type("D", (), {"width": 1024, "height": 768})(), _size_task=None,
        _size_wanted=None, _reconnecting=False, _dpi=dpi, _client_dpi=client_dpi,
        log=logging.getLogger("test"),
    )  # fmt: skip

    async def main() -> None:
        rdp_handler.RESIZE_INTERVAL, saved = 0.01, rdp_handler.RESIZE_INTERVAL
        try:
            h.on_size(object(), *size)  # not the owner: ignored
            h.on_size(owner, 1024 * client_dpi // dpi, 768 * client_dpi // dpi)
            h.on_size(owner, *size)  # within the interval: only the last one counts
            await h._size_task
            h.on_size(owner, 1024 * client_dpi // dpi, 768 * client_dpi // dpi)
            await h._size_task  # the session's own size: nothing to do
        finally:
            rdp_handler.RESIZE_INTERVAL = saved

    asyncio.run(main())
    assert rec.sizes == [sent]


def test_layouts_know_which_keys_caps_lock_changes() -> None:
    us, fr = keymap.LAYOUTS["en-us-qwerty"], keymap.LAYOUTS["fr-fr-azerty"]
    assert {ord("a"), ord("A"), ord("z")} <= us.caps
    assert not {ord("1"), ord("!"), ord(";")} & us.caps
    assert ord("a") in fr.caps and 0xE9 not in fr.caps  # é shifts to 2, not to É


def test_lock_keys_as_guacd() -> None:
    """First key: sync to the client's locks (none); lock keys toggle; with Caps Lock
    on a capital needs no Shift; a keypad digit turns Num Lock on first."""
    handler, rdp = keyboard("en-us-qwerty", synced=False)
    type_ = lambda ks: (handler.on_key(None, ks, True), handler.on_key(None, ks, False))  # noqa: E731
    type_(ord("A"))
    assert rdp.sent[0] == ("sync", 0, True)
    assert ("key", keymap.SC_LSHIFT, True) in rdp.sent
    rdp.sent.clear()
    handler.on_key(None, 0xFFE5, True)  # Caps_Lock, held: a repeat does not toggle again
    handler.on_key(None, 0xFFE5, True)
    handler.on_key(None, 0xFFE5, False)
    type_(ord("A"))
    assert rdp.sent[-2:] == [("key", 0x1E, True), ("key", 0x1E, False)]
    assert not any(e[0] == "sync" for e in rdp.sent)
    rdp.sent.clear()
    type_(0xFFB1)  # KP_1
    assert rdp.sent == [("sync", 0x4 | 0x2, True), ("key", 0x4F, True), ("key", 0x4F, False)]


def test_keypad_digits_are_sent_without_shift_as_guacd() -> None:
    """guacd's keymaps map KP_0..KP_9 "-shift +num": with the user holding Shift,
    Shift is let go for the digit (Shift+keypad would be End, Down... on the server),
    then pressed again since the user still holds it; other keys keep Shift."""
    handler, rdp = keyboard("en-us-qwerty")
    handler._locks = keymap.SYNC_NUM
    handler.on_key(None, 0xFFE1, True)  # Shift_L held
    handler.on_key(None, 0xFFB7, True)  # KP_7
    handler.on_key(None, 0xFFB7, False)
    handler.on_key(None, 0xFF09, True)  # Tab: a fixed key, Shift stays down for it
    handler.on_key(None, 0xFF09, False)
    handler.on_key(None, 0xFFE1, False)
    assert rdp.sent == [
        ("key", keymap.SC_LSHIFT, True),
        ("key", keymap.SC_LSHIFT, False), ("key", keymap.SC_RSHIFT, False),
        ("key", 0x47, True),
        ("key", keymap.SC_LSHIFT, True),
        ("key", 0x47, False),
        ("key", 0x0F, True), ("key", 0x0F, False),
        ("key", keymap.SC_LSHIFT, False),
    ]  # fmt: skip
    rdp.sent.clear()
    handler.on_key(None, 0xFFB0, True)  # KP_0 without Shift: nothing else is sent
    handler.on_key(None, 0xFFB0, False)
    assert rdp.sent == [("key", 0x52, True), ("key", 0x52, False)]


def test_drive_download_paths_as_guacd() -> None:
    from guacr.handlers.rdp.drive import download_path

    assert download_path("\\Download\\report.pdf") == "/Download/report.pdf"
    assert download_path("\\Download\\sub\\a.txt") == "/Download/sub/a.txt"
    assert download_path("\\Download\\") is None
    assert download_path("\\Download") is None
    assert download_path("\\Downloads\\a.txt") is None
    assert download_path("\\other\\Download\\a.txt") is None


def test_drive_files_stay_inside_the_drive(tmp_path: object) -> None:
    """The Guacamole side of the drive never leaves drive-path, symlinks included."""
    import asyncio
    from pathlib import Path

    import asyncssh

    from guacr.handlers.rdp.drive import LocalFiles, prepare

    root = Path(str(tmp_path)) / "drive"
    with pytest.raises(OSError):
        prepare(str(root), create=False)
    prepare(str(root), create=True)
    assert (root / "Download").is_dir() and root.stat().st_mode & 0o777 == 0o700
    (root / "a.txt").write_text("a")
    (root / "out").symlink_to("/etc")
    files = LocalFiles(root)

    async def main() -> None:
        assert (await files.stat("/a.txt")).size == 1
        names = [n.filename async for n in files.scandir("/")]
        assert names == ["Download", "a.txt", "out"]
        for escape in ("/out/passwd", "/../../etc/passwd"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await files.open(escape, "rb")
        f = await files.open("/new.bin", "wb")
        await f.write(b"xyz")
        await f.close()
        assert (root / "new.bin").read_bytes() == b"xyz"

    asyncio.run(main())
