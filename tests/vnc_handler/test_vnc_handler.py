"""The ``vnc`` handler end to end: real guacr daemon, real VNC servers, a replaying client.

What the Guacamole client ends up showing (every received instruction replayed onto a
canvas) is compared with the X server's own screenshot; input is checked from the X
side (files written by the xterm's shell, xdotool, xclip, xprop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import TigerVNCServer, X11VNCServer, remove_orphan_shm, wait_listening

from guacr.handlers.vnc.handler import VNC_ARGS, VNCHandler, repeater_id
from guacr.services.wol import magic_packet as wol_packet
from tests.guacr_process import Guacr, free_port, run_guacr
from tests.vnc_handler.guac_session import GuacSession

HANDLERS = "vnc=guacr.handlers.vnc.handler:VNCHandler"


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-vnc"), workers=1, handlers=HANDLERS) as g:
        yield g


@pytest.fixture(params=["tigervnc", "x11vnc"])
def desktop(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def tigervnc_resizable() -> Iterator[TigerVNCServer]:
    """Security None and client-driven resizes allowed (the shared fixture forbids them)."""
    with TigerVNCServer(security="None", accept_resize=True) as server:
        yield server


def values(server: Any, **extra: str) -> dict[str, str]:
    v = {"hostname": server.host, "port": str(server.port), "password": server.password}
    v.update(extra)
    return v


def screenshot(server: Any) -> np.ndarray:
    return np.asarray(server.grab().convert("RGB"))


def describe(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    bad = (a != b).any(axis=2)
    if not bad.any():
        return "identical"
    ys, xs = np.nonzero(bad)
    return f"{bad.sum()} px differ in x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}"


def connected(s: GuacSession, server: Any, **extra: str) -> GuacSession:
    """Connect, wait for the first frame, and own the pointer (parked near a corner).

    Xtigervnc paints the pointer into the framebuffer while it sits where another
    client or xdotool left it (xwd never shows it), and only stops once the pointer
    really moves: parking it at a fresh spot makes shots comparable.
    """
    s.connect(values(server, **extra))
    s.wait_frames(1)
    park(s, server)
    return s


def park(s: GuacSession, server: Any) -> None:
    s.mouse(server.width - 2 - secrets.randbelow(40), server.height - 2 - secrets.randbelow(40))


def assert_matches_screen(
    s: GuacSession, server: Any, tolerance: float | None = None, seconds: float = 8.0
) -> None:
    """The client's canvas equals the server's screen (or is within ``tolerance``)."""
    deadline = time.monotonic() + seconds
    while True:
        s.pump(0.3)
        shot, screen = screenshot(server), s.screen()
        if screen.shape == shot.shape:
            if tolerance is None and np.array_equal(screen, shot):
                return
            if tolerance is not None:
                # Lossy areas may differ a little everywhere, but nothing may be wrong:
                # a stale or misplaced region would show as large errors.
                diff = np.abs(screen.astype(int) - shot.astype(int))
                if diff.mean() <= tolerance and (diff > 64).mean() < 0.001:
                    return
        if time.monotonic() > deadline:
            raise AssertionError(describe(screen, shot))


# ---------------------------------------------------------------------------- handshake


def test_args_are_guacds_53_vnc_parameters(guacr: Guacr) -> None:
    reference = (Path(__file__).parent / "vnc_args.json").read_text()
    assert tuple(json.loads(reference)) == VNC_ARGS
    assert len(VNC_ARGS) == 53
    assert VNCHandler.arg_names() == list(VNC_ARGS)
    with guacr.client() as c:
        c.send("select", "vnc")
        args = c.expect("args")
        assert list(args[2:]) == list(VNC_ARGS)


# ------------------------------------------------------------------------------ display


def test_display_matches_server_screen(guacr: Guacr, desktop: Any) -> None:
    with GuacSession(guacr) as s:
        connected(s, desktop)
        assert s.canvas.size == (desktop.width, desktop.height)
        assert s.canvas.names and s.canvas.names[-1]
        assert_matches_screen(s, desktop)
        assert not s.errors


def test_display_follows_changes(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    """New content (a window appears, then the root changes colour) reaches the client."""
    with GuacSession(guacr) as s:
        connected(s, tigervnc)
        assert_matches_screen(s, tigervnc)
        colour = f"#{secrets.randbelow(1 << 24):06x}"
        tigervnc.run_x(["xsetroot", "-solid", colour], check=True)
        try:
            rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
            s.wait_for(lambda: tuple(s.screen()[-5, 5]) == rgb, 10, "root colour")
            assert_matches_screen(s, tigervnc)
        finally:
            tigervnc.run_x(["xsetroot", "-solid", "#2f5f8f"], check=True)


def write_xwd(path: Path, rgb: np.ndarray) -> None:
    """A TrueColor 24-bit XWD file (what xwud displays), big-endian 0RGB pixels."""
    h, w = rgb.shape[:2]
    name = b"guacr\0"
    header = [
        100 + len(name), 7, 2, 24, w, h, 0, 1, 32, 1, 32, 32, w * 4, 4,
        0xFF0000, 0xFF00, 0xFF, 8, 256, 0, w, h, 0, 0, 0,
    ]  # fmt: skip
    pixels = np.zeros((h, w, 4), np.uint8)
    pixels[..., 1:] = rgb
    path.write_bytes(np.array(header, ">u4").tobytes() + name + pixels.tobytes())


def photo(h: int, w: int) -> np.ndarray:
    """A smooth, many-coloured picture: what Tight sends as JPEG."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    g = 128 + 100 * np.sin((xx + yy) / 37.0)
    b = 128 + 100 * np.cos(xx / 17.0 - yy / 29.0)
    return np.dstack([r, g, b]).clip(0, 255).astype(np.uint8)


def test_tight_jpeg_is_relayed_within_tolerance(
    guacr: Guacr, tigervnc: TigerVNCServer, tmp_path: Path
) -> None:
    """A photo on screen with Tight + JPEG allowed: the server's JPEG reaches the
    client as image/jpeg (no re-encode) and the picture stays close to the screen."""
    image = tmp_path / "photo.xwd"
    write_xwd(image, photo(240, 320))
    viewer = subprocess.Popen(
        ["xwud", "-in", str(image), "-geometry", "+600+420"],
        env=tigervnc.x_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        with GuacSession(guacr) as s:
            connected(s, tigervnc, encodings="tight", **{"quality-level": "5"})
            s.wait_for(lambda: "image/jpeg" in s.canvas.mimetypes, 10, "a JPEG")
            assert_matches_screen(s, tigervnc, tolerance=1.0)
            shot, screen = screenshot(tigervnc), s.screen()
            region = (slice(430, 650), slice(610, 910))  # inside the photo window
            diff = np.abs(screen[region].astype(int) - shot[region].astype(int))
            assert 0 < diff.mean() < 6, diff.mean()  # lossy, but close
    finally:
        viewer.kill()
        viewer.wait(5)


def test_force_lossless_and_16_bit_colour(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, tigervnc, **{"color-depth": "16", "force-lossless": "true"})
        assert_matches_screen(s, tigervnc, tolerance=4.0)
        assert set(s.canvas.mimetypes) <= {"image/png"}


def test_swap_red_blue(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, tigervnc, **{"swap-red-blue": "true"})
        deadline = time.monotonic() + 8
        while not np.array_equal(s.screen()[..., ::-1], shot := screenshot(tigervnc)):
            assert time.monotonic() < deadline, describe(s.screen()[..., ::-1], shot)
            s.pump(0.3)


def test_remote_cursor_shows_a_dot(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, tigervnc, cursor="remote")
        assert s.canvas.cursor is not None
        hx, hy, image = s.canvas.cursor
        assert image.shape[:2] == (5, 5) and (hx, hy) == (2, 2)


def test_local_cursor_comes_from_the_server(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, tigervnc)
        s.mouse(300, 200)  # over the xterm: its I-beam pointer (9x16 with DejaVu)

        def ibeam() -> bool:
            cursor = s.canvas.cursor
            return cursor is not None and cursor[2].shape[:2] == (16, 9)

        s.wait_for(ibeam, 10, "the xterm's pointer")
        assert s.canvas.cursor is not None and s.canvas.cursor[2][..., 3].any()
        s.mouse(900, 100)  # over the root window: X's default cross
        s.wait_for(lambda: not ibeam(), 10, "the root window's pointer")


def test_joiner_sees_the_same_screen(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as owner:
        connected(owner, tigervnc)
        assert_matches_screen(owner, tigervnc)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {"read-only": "true"})
            joiner.wait_frames(1)
            owner.pump(0.5)
            joiner.pump(0.5)
            assert joiner.canvas.size == owner.canvas.size
            assert np.array_equal(joiner.screen(), owner.screen())
            assert joiner.canvas.cursor is not None


# -------------------------------------------------------------------------------- input


def test_typed_text_reaches_the_xterm(guacr: Guacr, desktop: Any) -> None:
    token = secrets.token_hex(6)
    path = Path(f"/tmp/guacr-vnc-{token}")
    try:
        with GuacSession(guacr) as s:
            connected(s, desktop)
            s.mouse(300, 200)  # no window manager: focus follows the pointer
            s.pump(0.3)
            s.type_text(f"echo {token} > {path}\n")
            deadline = time.monotonic() + 10
            while not (path.exists() and path.read_text().strip() == token):
                assert time.monotonic() < deadline, "the typed command did not run"
                s.pump(0.2)
    finally:
        path.unlink(missing_ok=True)


def test_mouse_lands_where_sent(guacr: Guacr, desktop: Any) -> None:
    with GuacSession(guacr) as s:
        connected(s, desktop)
        for _ in range(2):
            x, y = 20 + secrets.randbelow(900), 20 + secrets.randbelow(700)
            s.mouse(x, y)
            deadline = time.monotonic() + 5
            while True:
                s.pump(0.1)
                out = desktop.run_x(["xdotool", "getmouselocation"]).stdout.decode()
                fields = dict(part.split(":") for part in out.split())
                if (int(fields["x"]), int(fields["y"])) == (x, y):
                    break
                assert time.monotonic() < deadline, out


def test_mouse_is_shown_to_other_users(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as owner:
        connected(owner, tigervnc)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {})
            joiner.wait_frames(1)
            owner.mouse(123, 234)
            joiner.wait_for(lambda: joiner.canvas.mouse == (123, 234), 5, "mouse")


# ---------------------------------------------------------------------------- clipboard


def set_x_clipboard(server: Any, text: str) -> None:
    # xclip forks to serve the selection; detach its output so run() returns.
    server.run_x(["sh", "-c", "xclip -selection clipboard >/dev/null 2>&1"], input=text.encode())


def test_clipboard_server_to_client_tigervnc(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    text = f"gr\u00fc\u00dfe \u20ac {secrets.token_hex(3)}"
    with GuacSession(guacr) as s:
        connected(s, tigervnc)
        s.pump(0.3)
        set_x_clipboard(tigervnc, text)
        s.wait_for(lambda: s.canvas.clipboard_text() == text, 10, "clipboard")


def test_clipboard_client_to_server_tigervnc(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    text = f"hall\u00f6 \u20ac {secrets.token_hex(3)}\nsecond line"
    with GuacSession(guacr) as s:
        connected(s, tigervnc)
        s.pump(0.3)
        s.send_clipboard(text)
        s.pump(0.3)
        deadline = time.monotonic() + 10
        while True:
            # Xvnc asks us for the text only when an X client wants it: keep pumping.
            got: list[str] = []
            reader = threading.Thread(
                target=lambda: got.append(
                    tigervnc.run_x(
                        ["xclip", "-selection", "clipboard", "-o"], timeout=5
                    ).stdout.decode("utf-8", "replace")
                )
            )
            reader.start()
            while reader.is_alive():
                s.pump(0.05)
            if got and got[0] == text:
                break
            assert time.monotonic() < deadline, got


def cut_buffer(server: Any) -> bytes:
    """CUT_BUFFER0's raw bytes (x11vnc's clipboard on both directions)."""
    out = server.run_x(["xprop", "-root", "-notype", "CUT_BUFFER0"]).stdout.decode("ascii")
    if "=" not in out:
        return b""
    quoted = out.split("=", 1)[1].strip()[1:-1]
    return quoted.encode("latin-1").decode("unicode_escape").encode("latin-1")


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("", "caf\u00e9"), ("UTF-8", "caf\u00e9 \u2713"), ("CP1252", "\u20ac 5")],
)
def test_clipboard_encodings_with_x11vnc(
    guacr: Guacr, x11vnc: X11VNCServer, encoding: str, text: str
) -> None:
    """x11vnc keeps classic cut text in CUT_BUFFER0 as raw bytes, so the bytes there
    show the clipboard-encoding at work in both directions."""
    codec = {"": "latin-1", "UTF-8": "utf-8", "CP1252": "cp1252"}[encoding]
    text = f"{text} {secrets.token_hex(3)}"
    with GuacSession(guacr) as s:
        connected(s, x11vnc, **{"clipboard-encoding": encoding})
        s.pump(0.5)
        s.send_clipboard(text)
        deadline = time.monotonic() + 10
        while cut_buffer(x11vnc) != text.encode(codec):
            assert time.monotonic() < deadline, cut_buffer(x11vnc)
            s.pump(0.2)
        back = f"back {text[::-1]}"
        for _attempt in range(6):  # x11vnc skips sends while a client initialises
            # Raw bytes as the argument: xprop stores an 8s value unchanged.
            x11vnc.run_x(
                [
                    b"xprop",
                    b"-root",
                    b"-format",
                    b"CUT_BUFFER0",
                    b"8s",
                    b"-set",
                    b"CUT_BUFFER0",
                    back.encode(codec),
                ]
            )
            if s.pump(2.0, lambda: s.canvas.clipboard_text() == back):
                break
        assert s.canvas.clipboard_text() == back


def test_disable_copy_and_paste(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    before = f"untouched {secrets.token_hex(3)}"
    set_x_clipboard(tigervnc, before)
    with GuacSession(guacr) as s:
        connected(s, tigervnc, **{"disable-copy": "true", "disable-paste": "true"})
        s.pump(0.3)
        s.send_clipboard("should not arrive")
        set_x_clipboard(tigervnc, f"not for the client {secrets.token_hex(3)}")
        s.pump(1.5)
        assert s.canvas.clipboard == []
        out = tigervnc.run_x(["xclip", "-selection", "clipboard", "-o"], timeout=5)
        assert b"should not arrive" not in out.stdout


# ------------------------------------------------------------------------------- resize


def test_xrandr_resize_reaches_client(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, tigervnc)
        try:
            tigervnc.run_x(["xrandr", "-s", "800x600"], check=True)
            s.wait_for(lambda: s.canvas.size == (800, 600), 10, "size 800x600")
            s.mouse(700 + secrets.randbelow(90), 500 + secrets.randbelow(90))
            assert_matches_screen(s, tigervnc)
        finally:
            tigervnc.run_x(["xrandr", "-s", f"{tigervnc.width}x{tigervnc.height}"], check=True)
        s.wait_for(lambda: s.canvas.size == (tigervnc.width, tigervnc.height), 10, "restore")


def xdpyinfo_size(server: Any) -> str:
    out = server.run_x(["xdpyinfo"]).stdout.decode()
    return next(line.split()[1] for line in out.splitlines() if "dimensions:" in line)


def test_owner_size_resizes_the_server(guacr: Guacr, tigervnc_resizable: TigerVNCServer) -> None:
    server = tigervnc_resizable
    with GuacSession(guacr) as s:
        s.connect(values(server, password=""), size=(900, 700, 96))
        s.wait_for(lambda: s.canvas.size == (900, 700), 10, "server resized to the client")
        assert xdpyinfo_size(server) == "900x700"
        s.client.send("size", 1000, 650)
        s.wait_for(lambda: s.canvas.size == (1000, 650), 10, "second resize")
        assert xdpyinfo_size(server) == "1000x650"
        s.mouse(900 + secrets.randbelow(90), 600 + secrets.randbelow(40))
        assert_matches_screen(s, server)


def test_disable_display_resize(guacr: Guacr, tigervnc_resizable: TigerVNCServer) -> None:
    server = tigervnc_resizable
    with GuacSession(guacr) as s:
        s.connect(values(server, password="", **{"disable-display-resize": "true"}))
        s.wait_frames(1)
        size = s.canvas.size
        s.client.send("size", 640, 480)
        s.pump(1.5)
        assert s.canvas.size == size
        assert xdpyinfo_size(server) == f"{size[0]}x{size[1]}"


# ------------------------------------------------------------------------ authentication


def test_wrong_password_is_769(guacr: Guacr, x11vnc: X11VNCServer) -> None:
    # x11vnc rather than Xtigervnc: TigerVNC blacklists an address after 5 failures,
    # which would break every other test sharing that server.
    with GuacSession(guacr) as s:
        s.connect(values(x11vnc, password="wrong-pw"))
        s.wait_for(lambda: bool(s.errors), 15, "error")
        assert s.errors[0][2] == "769", s.errors


def test_unreachable_port_is_519(guacr: Guacr) -> None:
    with GuacSession(guacr) as s:
        s.connect({"hostname": "127.0.0.1", "port": str(free_port()), "password": "x"})
        s.wait_for(lambda: bool(s.errors), 10, "error")
        assert s.errors[0][2] == "519", s.errors
        assert "refused" in s.errors[0][1].lower()


def test_autoretry_keeps_trying(guacr: Guacr) -> None:
    start = time.monotonic()
    with GuacSession(guacr) as s:
        s.connect({"hostname": "127.0.0.1", "port": str(free_port()), "autoretry": "2"})
        s.wait_for(lambda: bool(s.errors), 15, "error")
        assert s.errors[0][2] == "519"
    assert time.monotonic() - start >= 1.9  # two retries, a second apart


def test_missing_password_is_asked_for(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        s.connect(values(tigervnc, password=""))
        required = s.wait_opcode("required")
        assert required[1:] == ("password",)
        s.send_argv("password", tigervnc.password)
        ack = s.wait_opcode("ack")
        assert ack[1:] == ("12", "Ready for updated parameter.", "0")
        s.wait_frames(1)
        assert s.canvas.size == (tigervnc.width, tigervnc.height)
        assert not s.errors
        # The prompt is answered: further credential updates are refused, as in guacd.
        s.send_argv("password", "late", stream=16)
        assert s.wait_opcode("ack")[1:] == ("16", "Not allowed.", "771")


def test_old_client_without_required_gets_769(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        s.connect(values(tigervnc, password=""), version="VERSION_1_1_0")
        s.wait_for(lambda: bool(s.errors), 10, "error")
        assert s.errors[0][2] == "769"


def test_vencrypt_tls(guacr: Guacr, tigervnc_vencrypt: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, tigervnc_vencrypt)
        assert_matches_screen(s, tigervnc_vencrypt)


def test_vencrypt_plain_asks_username_and_password(guacr: Guacr) -> None:
    with TigerVNCServer(security="TLSPlain") as server, GuacSession(guacr) as s:
        s.connect({"hostname": server.host, "port": str(server.port)})
        required = s.wait_opcode("required")
        assert set(required[1:]) == {"username", "password"}
        s.send_argv("username", server.plain_username, stream=12)
        s.send_argv("password", server.plain_password, stream=14)
        s.wait_frames(1)
        assert s.canvas.size == (server.width, server.height)


# ----------------------------------------------------------------- repeater, WoL, listen


class FakeRepeater:
    """An UltraVNC-style repeater: banner, 250-byte "host:port" ID, then a plain relay."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requested: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeRepeater:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 000.000\n")
        ident = await reader.readexactly(250)
        self.requested.append(ident)
        host, _, port = ident.rstrip(b"\0").decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))

        async def relay(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))


def test_repeater(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    assert repeater_id("example", 5901) == b"example:5901" + bytes(238)
    with FakeRepeater() as repeater, GuacSession(guacr) as s:
        s.connect(
            {
                "hostname": "127.0.0.1",
                "port": str(repeater.port),
                "password": tigervnc.password,
                "dest-host": tigervnc.host,
                "dest-port": str(tigervnc.port),
            }
        )
        s.wait_frames(1)
        assert repeater.requested == [repeater_id(tigervnc.host, tigervnc.port)]
        assert s.canvas.size == (tigervnc.width, tigervnc.height)


def test_wake_on_lan_packet_is_sent(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    mac = "52:54:00:12:34:56"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(10)
        with GuacSession(guacr) as s:
            s.connect(
                values(
                    tigervnc,
                    **{
                        "wol-send-packet": "true",
                        "wol-mac-addr": mac,
                        "wol-broadcast-addr": "127.0.0.1",
                        "wol-udp-port": str(udp.getsockname()[1]),
                    },
                )
            )
            packet = udp.recv(1024)
            s.wait_frames(1)
    assert packet == wol_packet(mac) == b"\xff" * 6 + bytes.fromhex("525400123456") * 16


def test_reverse_connection(guacr: Guacr, x11vnc: X11VNCServer) -> None:
    """reverse-connect: guacr listens and a second x11vnc on the same X display dials in."""
    port = free_port()
    with GuacSession(guacr) as s:
        s.connect(
            {
                "hostname": "127.0.0.1",
                "port": str(port),
                "reverse-connect": "true",
                "listen-timeout": "60000",
            }
        )
        wait_listening(port)  # guacr's listener, before x11vnc dials in (once)
        proc = x11vnc._spawn(
            ["x11vnc", "-display", x11vnc.display, "-norc", "-nopw", "-noxdamage",
             "-connect_or_exit", f"127.0.0.1:{port}", "-rfbport", "0"],
            "x11vnc-reverse.log",
            env=x11vnc.x_env(),
        )  # fmt: skip
        try:
            s.wait_frames(1, 15)
            assert s.canvas.size == (x11vnc.width, x11vnc.height)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, 9)
            proc.wait(5)
            remove_orphan_shm([proc.pid])
            x11vnc.procs.remove(proc)
