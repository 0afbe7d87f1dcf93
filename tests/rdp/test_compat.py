"""Each aardwolf fix in guacr.handlers.rdp.compat is needed against the real xrdp.

For every fix: with it, the session works; with only that fix turned off, the symptom
described in compat's docstring comes back. All sessions log in as guest, whom xrdp
reconnects to the same Xorg display.
"""

from __future__ import annotations

import secrets
import subprocess
import time

import numpy as np
import pytest
from servers.xrdp import XrdpServer

from guacr.handlers.rdp import compat
from tests.rdp.rdp_probe import Collected, differing, run_session


def screen(server: XrdpServer) -> np.ndarray:
    return np.asarray(server.grab().convert("RGB"))


def test_all_fixes_give_a_pixel_exact_32bpp_desktop(xrdp: XrdpServer) -> None:
    # Waits (generously, for a loaded machine) until the whole screen arrived and
    # matches the server's framebuffer, then checks it once more after the close.
    out = run_session(
        xrdp, depth=32, seconds=30.0, until=lambda sink: differing(sink.rgb(), screen(xrdp)) == 0
    )
    assert out.error is None, out.error
    assert out.client is not None and out.client.depths == {32}
    assert out.client.bad_rects == 0
    assert out.sink.painted.all()
    assert differing(out.sink.rgb(), screen(xrdp)) == 0


def test_16bpp_desktop_is_close(xrdp: XrdpServer) -> None:
    def close(sink: Collected) -> bool:
        diff = np.abs(sink.rgb().astype(int) - screen(xrdp).astype(int))
        return bool(diff.max() <= 8)  # RGB565 keeps 5-6 bits per channel

    out = run_session(xrdp, depth=16, seconds=30.0, until=close)
    assert out.error is None, out.error
    assert out.client is not None and out.client.depths == {16}
    assert out.sink.painted.all()
    assert close(out.sink)


@pytest.mark.parametrize(
    "fix, kind",
    [
        ("mcs_user_channel_join", "timeout"),  # xrdp drops it: licensing never completes
        ("unknown_capability_sets", "protocol"),  # ValueError: 6 is not a valid CAPSTYPE
        ("client_first_finalization", "timeout"),  # both sides wait for Synchronize
        ("share_data_header_length", "timeout"),  # xrdp: bad TS_SHARECONTROLHEADER length
    ],
)
def test_connect_fails_without(xrdp: XrdpServer, fix: str, kind: str) -> None:
    with compat.without(fix):
        out = run_session(xrdp, timeout=3.0)
    assert out.error is not None, f"connected without {fix}"
    assert out.error.kind in (kind, "protocol", "timeout"), out.error
    assert out.seconds < 6.0  # every wait is bounded


def test_no_bitmaps_without_slow_path_bitmaps(xrdp: XrdpServer) -> None:
    with compat.without("slow_path_bitmaps"):
        out = run_session(xrdp, seconds=1.0)
    assert out.error is None
    assert out.sink.rects == 0


def odd_width_window(server: XrdpServer) -> None:
    """Map and unmap a 101 px wide window: xrdp pads such updates to 104 px."""
    proc = subprocess.Popen(
        ["xclock", "-geometry", "101x37+700+500", "-update", "1"], env=server.x_env()
    )
    try:
        time.sleep(0.8)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("enabled", [True, False])
def test_padded_bitmap_width(xrdp: XrdpServer, enabled: bool) -> None:
    fixes = () if enabled else ("padded_bitmap_width",)
    with compat.without(*fixes):
        out = run_session(
            xrdp, seconds=1.0, until_full=False, during=lambda: odd_width_window(xrdp)
        )
    assert out.error is None and out.client is not None
    if enabled:
        assert out.client.bad_rects == 0
        assert differing(out.sink.rgb(), screen(xrdp)) == 0
    else:
        assert out.client.bad_rects > 0


def test_login_dialog_without_auto_logon(xrdp: XrdpServer) -> None:
    with compat.without("auto_logon"):
        out = run_session(xrdp, seconds=1.5)
    assert out.error is None
    assert out.sink.painted.any()
    # xrdp's own login window, not guest's desktop.
    assert differing(out.sink.rgb(), screen(xrdp)) > 10000


def test_bulk_compressed_session_is_pixel_exact(xrdp: XrdpServer) -> None:
    # guacr asks for no bulk compression by default (RDPConfig.bulk_compression), but
    # decodes it right when asked for it.
    out = run_session(
        xrdp,
        depth=32,
        seconds=30.0,
        bulk=True,
        until=lambda sink: differing(sink.rgb(), screen(xrdp)) == 0,
    )
    assert out.error is None, out.error
    assert out.client is not None and out.client.bad_rects == 0
    assert differing(out.sink.rgb(), screen(xrdp)) == 0


def test_bulk_compressed_pdus_fail_without_lenient_length(xrdp: XrdpServer) -> None:
    with compat.without("bulk_decompression_length"):
        out = run_session(xrdp, seconds=1.5, bulk=True)
    assert out.error is not None or out.closed or not out.sink.painted.all()


def test_16bpp_session_without_request_32bpp(xrdp: XrdpServer) -> None:
    with compat.without("request_32bpp"):
        out = run_session(xrdp, depth=32)
    assert out.error is None and out.client is not None
    assert out.client.depths == {16}


def test_wrong_colours_without_pixel_order_32bpp(xrdp: XrdpServer) -> None:
    with compat.without("pixel_order_32bpp"):
        out = run_session(xrdp, depth=32)
    assert out.error is None
    assert differing(out.sink.rgb(), screen(xrdp)) > 10000


def test_unknown_fix_name_is_refused() -> None:
    with pytest.raises(KeyError), compat.without("no_such_fix"):
        pass


@pytest.mark.parametrize("enabled", [True, False])
def test_clipboard_startup_keeps_the_x_clipboard(xrdp: XrdpServer, enabled: bool) -> None:
    text = f"pre-existing-{secrets.token_hex(3)}"
    xrdp.run_x(["sh", "-c", "xclip -selection clipboard >/dev/null 2>&1"], input=text.encode())
    fixes = () if enabled else ("clipboard_startup",)
    with compat.without(*fixes):
        out = run_session(xrdp, seconds=1.0, until_full=False)
    assert out.error is None
    try:
        pasted = xrdp.run_x(["xclip", "-selection", "clipboard", "-o"], timeout=3).stdout
    except subprocess.TimeoutExpired:
        pasted = b""
    if enabled:
        assert pasted.decode() == text
    else:
        assert pasted.decode() != text


def test_early_server_format_list_is_handled() -> None:
    """A CB_FORMAT_LIST that arrives before our list was acknowledged (spec-built PDU)."""
    import asyncio
    import struct

    from aardwolf.commons.iosettings import RDPIOSettings
    from aardwolf.extensions.RDPECLIP.channel import CLIPBRDSTATUS, RDPECLIPChannel

    compat.install()
    entry = struct.pack("<I", 13) + b"\0" * 32  # CF_UNICODETEXT, short (unnamed) format
    cliprdr = struct.pack("<HHI", 2, 0, len(entry)) + entry  # CB_FORMAT_LIST
    pdu = struct.pack("<II", len(cliprdr), 0x03) + cliprdr  # CHANNEL_FLAG_FIRST | LAST

    class FakeConnection:
        cryptolayer = None

        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.ext_out_queue: asyncio.Queue[object] = asyncio.Queue()

        async def handle_out_data(self, data: bytes, *rest: object) -> None:
            self.sent.append(data.to_bytes())  # type: ignore[attr-defined]

    async def feed() -> list[int]:
        settings = RDPIOSettings()
        settings.clipboard_use_pyperclip = False
        channel = RDPECLIPChannel(settings)
        channel.connection = FakeConnection()
        channel.status = CLIPBRDSTATUS.CLIENT_INIT
        await channel.process_channel_data(pdu)
        assert channel.status == CLIPBRDSTATUS.CLIENT_INIT
        # cliprdr msgType of each sent PDU (after the 8-byte channel header)
        return [struct.unpack_from("<H", d, 8)[0] for d in channel.connection.sent]

    # Response OK (3) to the list, then a data request (4) for the text.
    assert asyncio.run(feed()) == [3, 4]
    with compat.without("clipboard_startup"):
        assert asyncio.run(feed()) == []


@pytest.mark.parametrize("enabled", [True, False])
def test_display_control_needs_dvc_version_2(xrdp: XrdpServer, enabled: bool) -> None:
    fixes = () if enabled else ("dvc_version_2",)
    try:
        with compat.without(*fixes):
            out = run_session(xrdp, seconds=1.5, until_full=False, resize_to=(800, 600))
        assert out.error is None and out.client is not None
        assert out.client.can_resize is enabled
        assert xrdp.screen_size() == ((800, 600) if enabled else (1024, 768))
        assert out.sink.resized == ([(800, 600)] if enabled else [])
    finally:
        restore(xrdp)


def test_resize_needs_deactivation_reactivation(xrdp: XrdpServer) -> None:
    try:
        with compat.without("deactivation_reactivation"):
            out = run_session(xrdp, seconds=1.5, until_full=False, resize_to=(800, 600))
        assert out.error is None and out.client is not None
        assert xrdp.screen_size() == (800, 600)  # X did resize...
        assert out.sink.resized == []  # ...but the session never learnt the new size
    finally:
        restore(xrdp)


def restore(server: XrdpServer) -> None:
    """Back to 1024x768 the way a client would: a Display Control layout."""
    if server.screen_size() != (1024, 768):
        run_session(server, seconds=1.0, until_full=False, resize_to=(1024, 768))
    assert server.screen_size() == (1024, 768)
