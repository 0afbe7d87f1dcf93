"""The RFB core against real Xtigervnc and x11vnc servers on 127.0.0.1.

Decoded frames are compared with the X server's own screenshot (xwd): exactly for the
lossless encodings, within a tolerance for Tight JPEG. Input and clipboard are checked
from the X side (xdotool, xclip, files written by the xterm's shell).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import TigerVNCServer

from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.constants import VeNCryptSubtype, build_encodings
from guacr.handlers.vnc.events import (
    AuthFailed,
    Connected,
    DesktopResized,
    RFBSecurityError,
    ServerCutText,
)
from guacr.handlers.vnc.pixels import PixelFormat
from tests.vnc import rfb_fakes as F
from tests.vnc.rfb_session import Session

XK_RETURN = 0xFF0D
XK_CONTROL_L = 0xFFE3


@pytest.fixture(params=["tigervnc", "x11vnc"])
def desktop(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def tigervnc_open() -> Iterator[TigerVNCServer]:
    """Security None and client resizes allowed (the shared fixture forbids both)."""
    with TigerVNCServer(security="None", accept_resize=True) as server:
        yield server


@contextlib.asynccontextmanager
async def session(server: Any, **kwargs: Any) -> AsyncIterator[Session]:
    kwargs.setdefault("password", server.password)
    s = await Session.open(server.host, server.port, **kwargs)
    try:
        yield s
    finally:
        await s.close()


def screenshot(server: Any) -> np.ndarray:
    return np.asarray(server.grab().convert("RGB"))


async def park_pointer(s: Session, x: int, y: int) -> None:
    """Own the pointer: Xtigervnc draws the cursor into the framebuffer while the pointer
    sits where another client (or xdotool) left it; after our own move it does not."""
    s.client.pointer_event(x, y, 0)
    s.flush()
    await asyncio.sleep(0.3)


async def frame_matching_screen(
    s: Session, server: Any, encodings: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """A full frame and a screenshot; one retry covers a redraw racing the grab."""
    frame = await s.full_frame(encodings)
    shot = screenshot(server)
    if not np.array_equal(frame, shot):
        await asyncio.sleep(0.3)
        frame = await s.full_frame()
        shot = screenshot(server)
    return frame, shot


def describe_diff(frame: np.ndarray, shot: np.ndarray) -> str:
    bad = (frame != shot).any(axis=2)
    if not bad.any():
        return "identical"
    ys, xs = np.nonzero(bad)
    return f"{bad.sum()} pixels differ in x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}"


LOSSLESS = {
    "tigervnc": ["raw", "hextile", "zrle", "tight"],
    "x11vnc": ["raw", "hextile", "zlib", "zrle", "tight"],
}


@pytest.mark.parametrize("server_name", ["tigervnc", "x11vnc"])
async def test_lossless_encodings_match_screenshot(
    request: pytest.FixtureRequest, server_name: str
) -> None:
    server = request.getfixturevalue(server_name)
    async with session(server) as s:
        assert (s.client.width, s.client.height) == (server.width, server.height)
        await park_pointer(s, server.width - 2, server.height - 2)
        for name in LOSSLESS[server_name]:
            frame, shot = await frame_matching_screen(s, server, build_encodings(name))
            assert F.count_distinct(shot) >= 8, "desktop should show the xterm's text"
            expected = "enc" + str(
                {"raw": 0, "hextile": 5, "zlib": 6, "zrle": 16, "tight": 7}[name]
            )
            assert s.stats.get(expected, 0) > 0, f"{name}: server used {s.stats}"
            assert np.array_equal(frame, shot), f"{name}: {describe_diff(frame, shot)}"


@contextlib.contextmanager
def photo_window(server: Any, tmp_path: Path) -> Iterator[None]:
    """Show a smooth, many-coloured image (what makes Tight choose JPEG) with xwud."""
    h, w = 200, 320
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.dstack(
        [
            127 + 127 * np.sin(xx / 23.0) * np.cos(yy / 31.0),
            127 + 127 * np.sin((xx + yy) / 17.0),
            127 + 127 * np.cos(xx / 11.0 - yy / 29.0),
        ]
    ).astype(np.uint8)
    path = tmp_path / "photo.xwd"
    path.write_bytes(F.make_xwd(img))
    proc = subprocess.Popen(
        ["xwud", "-in", str(path), "-geometry", "+680+520"],
        env=server.x_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            shot = screenshot(server)
            if F.count_distinct(shot[520:720, 680:1000]) > 1000:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("xwud window did not appear")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.mark.parametrize("server_name", ["tigervnc", "x11vnc"])
async def test_tight_jpeg_within_tolerance(
    request: pytest.FixtureRequest, server_name: str, tmp_path: Path
) -> None:
    server = request.getfixturevalue(server_name)
    with photo_window(server, tmp_path):
        async with session(server) as s:
            await park_pointer(s, server.width - 2, server.height - 2)
            frame = await s.full_frame(build_encodings("tight", quality_level=6))
            shot = screenshot(server)
    assert s.stats.get("jpeg", 0) > 0, f"no JPEG rects: {s.stats}"
    err = np.abs(frame.astype(np.int16) - shot.astype(np.int16))
    assert err.mean() < 3.0, err.mean()
    assert np.percentile(err, 99.5) < 48
    region = err[520:720, 680:1000]
    assert region.mean() < 8.0, region.mean()


async def open_expecting_failure(server: Any, **kwargs: Any) -> AuthFailed:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    s = Session(RFBClient(**kwargs), reader, writer)
    try:
        event = await s.wait_for(lambda e: isinstance(e, (Connected, AuthFailed)))
    finally:
        await s.close()
    assert isinstance(event, AuthFailed), event
    return event


async def test_wrong_password_is_auth_failed(desktop: Any) -> None:
    event = await open_expecting_failure(desktop, password="not-it!")
    assert event.reason


async def test_missing_password_asks_then_connects(desktop: Any) -> None:
    from guacr.handlers.vnc.events import AuthRequired

    reader, writer = await asyncio.open_connection(desktop.host, desktop.port)
    s = Session(RFBClient(), reader, writer)
    try:
        event = await s.wait_for(lambda e: isinstance(e, AuthRequired))
        assert event == AuthRequired(("password",))
        s.events += s.client.provide_credentials(password=desktop.password)
        connected = await s.wait_for(lambda e: isinstance(e, Connected))
        assert isinstance(connected, Connected) and connected.security_type == 2
    finally:
        await s.close()


def type_text(s: Session, text: str) -> None:
    for ch in text:
        s.client.key_event(ord(ch), True)
        s.client.key_event(ord(ch), False)


async def test_keyboard_reaches_xterm(desktop: Any) -> None:
    target = f"/tmp/guacr-vnc-key-{secrets.token_hex(4)}"
    path = Path(target)
    try:
        async with session(desktop) as s:
            await park_pointer(s, 200, 120)  # over the xterm: focus follows the pointer
            s.client.key_event(XK_CONTROL_L, True)  # Ctrl-U: clear any half-typed line
            type_text(s, "u")
            s.client.key_event(XK_CONTROL_L, False)
            type_text(s, f"echo hi > {target}")
            s.client.key_event(XK_RETURN, True)
            s.client.key_event(XK_RETURN, False)
            s.flush()
            deadline = time.monotonic() + 10
            while not (path.exists() and path.read_text() == "hi\n"):
                assert time.monotonic() < deadline, "typed command never ran"
                await asyncio.sleep(0.1)
    finally:
        path.unlink(missing_ok=True)


def mouse_location(server: Any) -> tuple[int, int]:
    out = server.run_x(["xdotool", "getmouselocation"], check=True).stdout.decode()
    fields = dict(part.split(":") for part in out.split())
    return int(fields["x"]), int(fields["y"])


async def test_pointer_moves(desktop: Any) -> None:
    rng = np.random.default_rng()
    async with session(desktop) as s:
        for _ in range(2):
            x = int(rng.integers(50, desktop.width - 50))
            y = int(rng.integers(50, desktop.height - 50))
            s.client.pointer_event(x, y, 0)
            s.flush()
            deadline = time.monotonic() + 5
            while mouse_location(desktop) != (x, y):
                assert time.monotonic() < deadline, f"pointer not at {(x, y)}"
                await asyncio.sleep(0.05)


def set_x_clipboard(server: Any, text: str, selection: str = "clipboard") -> None:
    # xclip forks to serve the selection; detach its output so run() returns.
    server.run_x(
        ["sh", "-c", f"xclip -selection {selection} >/dev/null 2>&1"],
        input=text.encode(),
        check=True,
    )


def get_x_clipboard(server: Any, selection: str = "clipboard") -> str:
    out = server.run_x(["xclip", "-selection", selection, "-o"])
    return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else ""


CLIP_TEXT = {"tigervnc": "gr\u00fc\u00dfe \u20ac {}", "x11vnc": "caf\u00e9 {}"}


async def test_clipboard_server_to_client_tigervnc(tigervnc: TigerVNCServer) -> None:
    text = CLIP_TEXT["tigervnc"].format(secrets.token_hex(3))
    async with session(tigervnc) as s:
        s.client.set_encodings(build_encodings("zrle"))
        s.client.framebuffer_update_request(True)
        await pump(s)  # ExtendedClipboard caps exchange
        assert s.client.extended_clipboard
        set_x_clipboard(tigervnc, text)
        event = await s.wait_for(lambda e: isinstance(e, ServerCutText) and text in e.text)
        assert isinstance(event, ServerCutText) and event.extended


async def test_clipboard_server_to_client_x11vnc(x11vnc: Any) -> None:
    """x11vnc forwards PRIMARY/CLIPBOARD only 15 s after a client connects (its
    ``sel_waittime``) but CUT_BUFFER0 at once, as classic Latin-1 ServerCutText. It
    skips the send while any client is still initialising, hence the retries."""
    text = f"cut-buffer-{secrets.token_hex(4)}"
    async with session(x11vnc) as s:
        await s.full_frame(build_encodings("zrle"))
        for _attempt in range(5):
            x11vnc.run_x(
                ["xprop", "-root", "-format", "CUT_BUFFER0", "8s", "-set", "CUT_BUFFER0", text]
            )
            with contextlib.suppress(TimeoutError):
                event = await s.wait_for(
                    lambda e: isinstance(e, ServerCutText) and text in e.text, 2.0
                )
                break
        else:
            raise AssertionError("x11vnc never sent CUT_BUFFER0")
        assert isinstance(event, ServerCutText) and not event.extended


async def test_clipboard_client_to_server_tigervnc(tigervnc: TigerVNCServer) -> None:
    text = CLIP_TEXT["tigervnc"].format(secrets.token_hex(3)) + "\nsecond line"
    async with session(tigervnc) as s:
        s.client.set_encodings(build_encodings("zrle"))
        s.client.framebuffer_update_request(True)
        await pump(s)  # ExtendedClipboard caps exchange
        s.client.client_cut_text(text)
        s.flush()
        deadline = time.monotonic() + 10
        while True:
            # Xvnc fetches the text from us only when an X client asks for it, so keep
            # answering RFB traffic while xclip waits.
            reader = asyncio.ensure_future(asyncio.to_thread(get_x_clipboard, tigervnc))
            while not reader.done():
                await pump(s, 0.05)
            if reader.result() == text:
                break
            assert time.monotonic() < deadline, repr(reader.result())
            await asyncio.sleep(0.1)


def cut_buffer(server: Any) -> str:
    out = server.run_x(["xprop", "-root", "-notype", "CUT_BUFFER0"]).stdout.decode("ascii")
    if "=" not in out:
        return ""
    quoted = out.split("=", 1)[1].strip()[1:-1]
    return str(quoted.encode("latin-1").decode("unicode_escape"))


async def test_clipboard_client_to_server_x11vnc(x11vnc: Any) -> None:
    """x11vnc takes client text as classic Latin-1 ClientCutText and stores it in
    CUT_BUFFER0. (It would also own PRIMARY/CLIPBOARD, but only once it has created its
    selection window, which it postpones while "guessing" a display manager may run.)"""
    text = f"caf\u00e9 {secrets.token_hex(3)}"
    async with session(x11vnc) as s:
        s.client.set_encodings(build_encodings("zrle"))
        s.client.framebuffer_update_request(True)
        await pump(s)
        assert s.client.extended_clipboard  # libvncserver offers it; we still send Latin-1
        s.client.client_cut_text(text + " \u20ac")
        s.flush()
        deadline = time.monotonic() + 10
        while cut_buffer(x11vnc) != text + " ?":
            assert time.monotonic() < deadline, repr(cut_buffer(x11vnc))
            await pump(s, 0.1)


async def pump(s: Session, timeout: float = 0.2) -> None:
    """Process whatever the server sent recently (events are kept in ``s.events``)."""
    with contextlib.suppress(TimeoutError):
        await s.wait_for(lambda e: False, timeout)


async def test_xrandr_resize_reaches_client(tigervnc: TigerVNCServer) -> None:
    async with session(tigervnc) as s:
        await s.full_frame(build_encodings("zrle"))
        try:
            tigervnc.run_x(["xrandr", "-s", "800x600"], check=True)
            s.client.framebuffer_update_request(True)
            event = await s.wait_for(
                lambda e: isinstance(e, DesktopResized) and e.width == 800, timeout=10
            )
            assert isinstance(event, DesktopResized) and event.height == 600
            assert (s.client.width, s.client.height) == (800, 600)
            await park_pointer(s, 790, 590)
            frame, shot = await frame_matching_screen(s, tigervnc, build_encodings("zrle"))
            assert frame.shape == (600, 800, 3)
            assert np.array_equal(frame, shot), describe_diff(frame, shot)
        finally:
            tigervnc.run_x(["xrandr", "-s", f"{tigervnc.width}x{tigervnc.height}"], check=True)
        s.client.framebuffer_update_request(True)
        event = await s.wait_for(lambda e: isinstance(e, DesktopResized) and e.width == 1024)
        assert (s.client.width, s.client.height) == (tigervnc.width, tigervnc.height)


async def test_security_none_and_client_resize(tigervnc_open: TigerVNCServer) -> None:
    server = tigervnc_open
    async with session(server, password=None) as s:
        assert s.client.security_type == 1
        await s.full_frame(build_encodings("tight"))
        assert s.client.supports_set_desktop_size
        try:
            assert s.client.set_desktop_size(900, 700)
            s.client.framebuffer_update_request(True)  # the answer rides on an update
            event = await s.wait_for(lambda e: isinstance(e, DesktopResized) and e.reason == 1)
            assert isinstance(event, DesktopResized)
            assert (event.status, event.width, event.height) == (0, 900, 700)
            out = server.run_x(["xdpyinfo"]).stdout.decode()
            assert "900x700 pixels" in out
        finally:
            s.client.set_desktop_size(server.width, server.height)
            s.client.framebuffer_update_request(True)
            await s.wait_for(lambda e: isinstance(e, DesktopResized) and e.width == server.width)


@pytest.mark.parametrize(
    "subtype",
    [
        VeNCryptSubtype.TLS_VNC,
        VeNCryptSubtype.TLS_PLAIN,
        VeNCryptSubtype.X509_VNC,
        VeNCryptSubtype.X509_PLAIN,
    ],
)
async def test_vencrypt_subtypes(tigervnc_vencrypt: TigerVNCServer, subtype: int) -> None:
    server = tigervnc_vencrypt
    plain = subtype in (VeNCryptSubtype.TLS_PLAIN, VeNCryptSubtype.X509_PLAIN)
    creds = (
        {"username": server.plain_username, "password": server.plain_password}
        if plain
        else {"password": server.password}
    )
    async with session(server, security_types=[subtype], **creds) as s:
        assert s.client.security_type == subtype and s.client.uses_tls
        assert s.client.tls_cipher
        if subtype == VeNCryptSubtype.TLS_VNC:
            # The whole encrypted stream decodes to the right picture.
            await park_pointer(s, server.width - 2, server.height - 2)
            frame, shot = await frame_matching_screen(s, server, build_encodings("tight zrle"))
            assert np.array_equal(frame, shot), describe_diff(frame, shot)


async def test_vencrypt_wrong_password(tigervnc_vencrypt: TigerVNCServer) -> None:
    event = await open_expecting_failure(
        tigervnc_vencrypt, password="wrong!!", security_types=[VeNCryptSubtype.TLS_VNC]
    )
    assert event.reason


async def test_vencrypt_refused_when_no_common_subtype(tigervnc_vencrypt: TigerVNCServer) -> None:
    reader, writer = await asyncio.open_connection(tigervnc_vencrypt.host, tigervnc_vencrypt.port)
    s = Session(RFBClient(security_types=[VeNCryptSubtype.X509_NONE]), reader, writer)
    try:
        with pytest.raises(RFBSecurityError, match="sub-type"):
            await s.wait_for(lambda e: isinstance(e, Connected))
    finally:
        await s.close()


@pytest.mark.parametrize("depth", [8, 16])
async def test_low_colour_depths(tigervnc: TigerVNCServer, depth: int) -> None:
    pf = PixelFormat.for_color_depth(depth)
    async with session(tigervnc, pixel_format=pf) as s:
        await park_pointer(s, tigervnc.width - 2, tigervnc.height - 2)
        frame = await s.full_frame(build_encodings("zrle hextile"))
        shot = screenshot(tigervnc)
    # The server rounds 8-bit channels down to 3/5/6 bits; we scale back up.
    step = {8: 256 // 4, 16: 256 // 32}[depth]
    err = np.abs(frame.astype(int) - shot.astype(int))
    assert err.max() <= step, err.max()
    assert F.count_distinct(frame) > 2


async def test_swap_red_blue(tigervnc: TigerVNCServer) -> None:
    async with session(tigervnc, swap_red_blue=True) as s:
        await park_pointer(s, tigervnc.width - 2, tigervnc.height - 2)
        frame, shot = await frame_matching_screen(s, tigervnc, build_encodings("raw"))
    assert np.array_equal(frame, shot[..., ::-1]), describe_diff(frame, shot[..., ::-1])


async def test_copyrect_on_window_move(x11vnc: Any) -> None:
    """CopyRect keeps the framebuffer right when the server reuses on-screen pixels."""
    async with session(x11vnc) as s:
        await s.full_frame(build_encodings("copyrect zrle"))
        ids = x11vnc.run_x(["xdotool", "search", "--onlyvisible", "--class", "XTerm"])
        window = ids.stdout.split()[0].decode()
        try:
            x11vnc.run_x(["xdotool", "windowmove", window, "40", "60"], check=True)
            deadline = time.monotonic() + 10
            while True:
                s.client.framebuffer_update_request(True)
                await s.wait_for(lambda e: type(e).__name__ == "FramebufferUpdateEnd")
                shot = screenshot(x11vnc)
                if np.array_equal(s.fb, shot) or time.monotonic() > deadline:
                    break
            assert np.array_equal(s.fb, shot), describe_diff(s.fb, shot)
        finally:
            x11vnc.run_x(["xdotool", "windowmove", window, "10", "10"], check=True)
