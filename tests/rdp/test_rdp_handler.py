"""The ``rdp`` handler end to end: real guacr daemon, real xrdp + xorgxrdp, a replaying client.

What the Guacamole client shows (every instruction replayed onto a canvas) is compared
with ``xwd`` of the session's X display; input is checked from the X side (a file the
xterm's shell writes, ``xdotool getmouselocation``). All sessions log in as guest, whom
xrdp reconnects to the same display, so these tests run one after another.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from servers import SSHServer
from servers.xrdp import XrdpServer

from guacr.handlers.rdp.handler import CERTIFICATE_REFUSED, RDP_ARGS, RDPHandler
from guacr.protocol.parser import Parser
from tests.guacr_process import Guacr, free_port, run_guacr
from tests.render.guac_canvas import Canvas
from tests.vnc_handler.guac_session import GuacSession
from tests.vnc_handler.test_vnc_sftp import ack, read_body, upload

HANDLERS = "rdp=guacr.handlers.rdp.handler:RDPHandler"
XRDP_DIALOG_BLUE = (0x00, 0x9C, 0xB5)  # xrdp.ini's ls_top_window_bg_color


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-rdp"), workers=1, handlers=HANDLERS) as g:
        yield g


def values(server: XrdpServer, **extra: str) -> dict[str, str]:
    v = {
        "hostname": server.host,
        "port": str(server.port),
        "username": server.username,
        "password": server.password,
        "ignore-cert": "true",
        "disable-audio": "true",
    }
    v.update(extra)
    return v


def screenshot(server: XrdpServer) -> np.ndarray:
    return np.asarray(server.grab().convert("RGB"))


def describe(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    bad = (a != b).any(axis=2)
    if not bad.any():
        return "identical"
    ys, xs = np.nonzero(bad)
    return f"{bad.sum()} px differ in x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}"


ROOT_RGB = (0x2F, 0x5F, 0x8F)  # tests/servers ROOT_COLOUR, at the desktop's corner


def connected(
    s: GuacSession, server: XrdpServer, *, desktop: bool = True, **extra: str
) -> GuacSession:
    """Connect and wait until guest's desktop shows (xrdp ignores input before that)."""
    s.connect(values(server, **extra), protocol="rdp")
    s.wait_frames(1, 60)
    if desktop:
        s.wait_for(lambda: tuple(s.screen()[-2, -2]) == ROOT_RGB, 60, "the desktop")
    return s


def assert_matches_screen(s: GuacSession, server: XrdpServer, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        s.pump(0.3)
        shot, screen = screenshot(server), s.screen()
        if screen.shape == shot.shape and np.array_equal(screen, shot):
            return
        if time.monotonic() > deadline:
            raise AssertionError(describe(screen, shot))


def error_of(s: GuacSession, seconds: float = 60.0) -> tuple[str, str]:
    s.wait_for(lambda: bool(s.errors), seconds, "error")
    return s.errors[0][1], s.errors[0][2]


# ---------------------------------------------------------------------------- handshake


def test_args_are_guacds_90_rdp_parameters(guacr: Guacr) -> None:
    reference = json.loads((Path(__file__).parent / "rdp_args.json").read_text())
    assert tuple(reference) == RDP_ARGS
    assert len(RDP_ARGS) == 90
    assert RDPHandler.arg_names() == list(RDP_ARGS)
    with guacr.client() as c:
        c.send("select", "rdp")
        args = c.expect("args")
        assert list(args[2:]) == list(RDP_ARGS)


# ------------------------------------------------------------------------------ display


def test_autologon_and_screen_matches_framebuffer(guacr: Guacr, xrdp: XrdpServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, xrdp, **{"color-depth": "32", "force-lossless": "true"})
        assert s.canvas.size == (1024, 768)
        assert_matches_screen(s, xrdp)
        assert not s.errors


def test_joiner_read_only_sees_screen_and_cannot_type(guacr: Guacr, xrdp: XrdpServer) -> None:
    token = secrets.token_hex(6)
    path = Path(f"/tmp/guacr-rdp-ro-{token}")
    with GuacSession(guacr) as owner:
        connected(owner, xrdp, **{"force-lossless": "true"})
        assert_matches_screen(owner, xrdp)
        owner.mouse(300, 200)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {"read-only": "true"})
            joiner.wait_frames(1)
            owner.pump(0.5)
            joiner.pump(0.5)
            assert np.array_equal(joiner.screen(), owner.screen())
            joiner.type_text(f"echo {token} > {path}\n")
            joiner.pump(1.5)
            assert not path.exists()
            # The same line typed by the owner runs: the joiner's input really was dropped.
            owner.type_text(f"echo {token} > {path}\n")
            deadline = time.monotonic() + 10
            while not path.exists():
                assert time.monotonic() < deadline, "the owner's command did not run"
                owner.pump(0.2)
    path.unlink(missing_ok=True)


# -------------------------------------------------------------------------------- input


def test_typed_text_reaches_the_xterm(guacr: Guacr, xrdp: XrdpServer) -> None:
    token = secrets.token_hex(6)
    path = Path(f"/tmp/guacr-rdp-{token}")
    try:
        with GuacSession(guacr) as s:
            connected(s, xrdp)
            s.mouse(300, 200)  # no window manager: focus follows the pointer
            s.pump(0.3)
            s.type_text(f"echo {token}_X:Y > {path}\n")
            deadline = time.monotonic() + 10
            while not (path.exists() and path.read_text().strip() == f"{token}_X:Y"):
                assert time.monotonic() < deadline, "the typed command did not run"
                s.pump(0.2)
    finally:
        path.unlink(missing_ok=True)


def lock_leds(server: XrdpServer) -> dict[str, bool]:
    """Caps/Num/Scroll Lock as the session's X server has them (``xset q``)."""
    out = server.run_x(["xset", "q"], check=True).stdout.decode()
    found = re.findall(r"(Caps|Num|Scroll) Lock:\s+(on|off)", out)
    assert len(found) == 3, out
    return {name: state == "on" for name, state in found}


def wait_leds(s: GuacSession, server: XrdpServer, **want: bool) -> None:
    deadline = time.monotonic() + 10
    while True:
        s.pump(0.1)
        leds = lock_leds(server)
        if all(leds[k] == v for k, v in want.items()):
            return
        assert time.monotonic() < deadline, f"locks {leds}, wanted {want}"


def test_lock_keys_are_synchronized_as_guacd_does(guacr: Guacr, xrdp: XrdpServer) -> None:
    """The first key synchronizes the server's locks to the client's (none on yet);
    the client's Caps Lock then reaches the server, and text typed with it on still
    arrives exactly (letters without Shift); a keypad digit turns Num Lock on, and is
    typed as a digit even with Shift held."""
    before = lock_leds(xrdp)
    token = secrets.token_hex(6)
    path = Path(f"/tmp/guacr-rdp-caps-{token}")
    try:
        if not before["Caps"]:
            xrdp.run_x(["xdotool", "key", "Caps_Lock"], check=True)
        assert lock_leds(xrdp)["Caps"], "could not turn Caps Lock on from the X side"
        with GuacSession(guacr) as s:
            connected(s, xrdp)
            s.mouse(300, 200)  # over the xterm: focus follows the pointer
            s.key(0xFFE1)  # Shift alone: types nothing, but is the session's first key
            wait_leds(s, xrdp, Caps=False, Num=False, Scroll=False)
            s.key(0xFFE5)  # Caps_Lock
            wait_leds(s, xrdp, Caps=True, Num=False)
            s.type_text(f"echo {token}_Xy")
            s.key(0xFFB4)  # KP_4: a digit only with Num Lock on
            s.key(0xFFE1, True)  # KP_2 with Shift held: guacd lets Shift go for it
            s.key(0xFFB2)  # (X would take Shift+KP_2 as KP_Down)
            s.key(0xFFE1, False)
            s.type_text(f" > {path}\n")
            deadline = time.monotonic() + 10
            while not (path.exists() and path.read_text().strip() == f"{token}_Xy42"):
                assert time.monotonic() < deadline, path.read_text() if path.exists() else ""
                s.pump(0.2)
            wait_leds(s, xrdp, Caps=True, Num=True)
            s.key(0xFFE5)
            s.key(0xFF7F)  # Num_Lock
            wait_leds(s, xrdp, Caps=False, Num=False)
    finally:
        path.unlink(missing_ok=True)
        now = lock_leds(xrdp)
        for name, keysym in (("Caps", "Caps_Lock"), ("Num", "Num_Lock")):
            if now[name] != before[name]:
                xrdp.run_x(["xdotool", "key", keysym])


def test_mouse_lands_where_sent(guacr: Guacr, xrdp: XrdpServer) -> None:
    with GuacSession(guacr) as s:
        connected(s, xrdp)
        for _ in range(2):
            x, y = 20 + secrets.randbelow(900), 20 + secrets.randbelow(700)
            s.mouse(x, y)
            deadline = time.monotonic() + 5
            while True:
                s.pump(0.1)
                out = xrdp.run_x(["xdotool", "getmouselocation"]).stdout.decode()
                fields = dict(part.split(":") for part in out.split())
                if (int(fields["x"]), int(fields["y"])) == (x, y):
                    break
                assert time.monotonic() < deadline, out


# ------------------------------------------------------------------------------ failures


def test_wrong_password_shows_xrdps_login_dialog(guacr: Guacr, xrdp: XrdpServer) -> None:
    """As with guacd, xrdp answers a wrong password with its own login window."""
    with GuacSession(guacr) as s:
        connected(s, xrdp, desktop=False, password="wrong-password")

        def dialog() -> bool:
            screen = s.screen()
            return bool((screen == XRDP_DIALOG_BLUE).all(axis=2).sum() > 2000)

        s.wait_for(dialog, 10, "xrdp's login dialog")
        assert not s.errors


def test_unreachable_host_is_519(guacr: Guacr) -> None:
    with GuacSession(guacr) as s:
        v = {"hostname": "127.0.0.1", "port": str(free_port()), "username": "u", "password": "p"}
        s.connect(v, protocol="rdp")
        message, status = error_of(s)
        assert (message, status) == ("Connection failed.", "519")


def test_self_signed_certificate_is_refused_without_ignore_cert(
    guacr: Guacr, xrdp: XrdpServer
) -> None:
    with GuacSession(guacr) as s:
        s.connect(values(xrdp, **{"ignore-cert": ""}), protocol="rdp")
        # guacd's text for FreeRDP's TLS_CONNECT_FAILED
        assert error_of(s) == (CERTIFICATE_REFUSED, "519")


def test_certificate_fingerprint_makes_it_trusted(guacr: Guacr, xrdp: XrdpServer) -> None:
    with GuacSession(guacr) as s:
        extra = {"ignore-cert": "", "cert-fingerprints": xrdp.cert_fingerprint}
        connected(s, xrdp, **extra)
        assert not s.errors


def test_nla_is_security_negotiation_failure_769(guacr: Guacr, xrdp: XrdpServer) -> None:
    with GuacSession(guacr) as s:
        s.connect(values(xrdp, security="nla"), protocol="rdp")
        message, status = error_of(s)
        assert status == "769", (message, status)


@pytest.mark.parametrize("security", ["tls", "rdp"])
def test_security_tls_and_standard_rdp_connect(
    guacr: Guacr, xrdp: XrdpServer, security: str
) -> None:
    """``tls`` as with guacd. ``rdp`` (standard RDP security, RC4): guacd 1.6.1 fails
    against xrdp 0.9 ("MAC checksum error", 515); aardwolf's crypto layer connects."""
    with GuacSession(guacr) as s:
        connected(s, xrdp, security=security)
        assert not s.errors


def test_missing_password_is_asked_for(guacr: Guacr, xrdp: XrdpServer) -> None:
    with GuacSession(guacr) as s:
        v = values(xrdp)
        del v["password"]
        s.connect(v, protocol="rdp")
        req = s.wait_opcode("required", 60)
        assert list(req[1:]) == ["password"]
        s.send_argv("password", xrdp.password)
        s.wait_frames(1, 60)
        assert_matches_screen(s, xrdp)


def test_missing_username_asks_for_username_domain_and_password(
    guacr: Guacr, xrdp: XrdpServer
) -> None:
    """guacd's order: username, then domain (only when it is missing too), password."""
    with GuacSession(guacr) as s:
        v = values(xrdp)
        del v["username"], v["password"]
        s.connect(v, protocol="rdp")
        req = s.wait_opcode("required", 60)
        assert list(req[1:]) == ["username", "domain", "password"]
        s.send_argv("username", xrdp.username, stream=12)
        s.send_argv("domain", "", stream=13)
        s.send_argv("password", xrdp.password, stream=14)
        s.wait_frames(1, 60)
        assert_matches_screen(s, xrdp)


def test_domain_given_is_not_asked_for(guacr: Guacr, xrdp: XrdpServer) -> None:
    with GuacSession(guacr) as s:
        v = values(xrdp, domain="WORKGROUP")
        del v["username"]
        s.connect(v, protocol="rdp")
        req = s.wait_opcode("required", 60)
        assert list(req[1:]) == ["username"]
        s.send_argv("username", xrdp.username)
        s.wait_frames(1, 60)
        assert_matches_screen(s, xrdp)


# ----------------------------------------------------------------------------- clipboard


def set_x_clipboard(server: XrdpServer, text: str) -> None:
    # xclip forks to serve the selection; detach its output so run() returns.
    server.run_x(["sh", "-c", "xclip -selection clipboard >/dev/null 2>&1"], input=text.encode())


def test_clipboard_server_to_client(guacr: Guacr, xrdp: XrdpServer) -> None:
    text = f"gr\u00fc\u00dfe \u20ac {secrets.token_hex(3)}"
    with GuacSession(guacr) as s:
        connected(s, xrdp)
        s.pump(0.5)
        set_x_clipboard(xrdp, text)
        s.wait_for(lambda: s.canvas.clipboard_text() == text, 10, "clipboard")


def test_clipboard_client_to_server(guacr: Guacr, xrdp: XrdpServer) -> None:
    text = f"hall\u00f6 \u20ac {secrets.token_hex(3)}"
    with GuacSession(guacr) as s:
        connected(s, xrdp)
        s.pump(0.5)
        s.send_clipboard(text)
        deadline = time.monotonic() + 10
        while True:
            s.pump(0.3)
            # chansrv asks guacr for the text only when an X client pastes.
            got = xrdp.run_x(["xclip", "-selection", "clipboard", "-o"], timeout=5)
            if got.stdout.decode("utf-8", "replace") == text:
                break
            assert time.monotonic() < deadline, got


def test_disable_copy(guacr: Guacr, xrdp: XrdpServer) -> None:
    text = f"secret {secrets.token_hex(3)}"
    with GuacSession(guacr) as s:
        connected(s, xrdp, **{"disable-copy": "true"})
        s.pump(0.5)
        set_x_clipboard(xrdp, text)
        s.pump(1.5)
        assert s.canvas.clipboard_text() != text


def test_server_pointer_becomes_the_cursor(guacr: Guacr, xrdp: XrdpServer) -> None:
    """xrdp's pointer shapes (fast-path color pointers) replace guacr's default arrow."""
    with GuacSession(guacr) as s:
        connected(s, xrdp)
        s.mouse(5, 700)
        s.pump(0.3)
        s.mouse(300, 200)

        def server_cursor() -> bool:
            cursor = s.canvas.cursor
            return cursor is not None and cursor[2].shape[:2] == (32, 32)

        s.wait_for(server_cursor, 10, "xrdp's 32x32 pointer")


# ----------------------------------------------------------------------------- recording


def test_recording_replays_to_the_final_screen(
    guacr: Guacr, xrdp: XrdpServer, tmp_path: Path
) -> None:
    extra = {
        "recording-path": str(tmp_path),
        "recording-name": "rec",
        "force-lossless": "true",
    }
    with GuacSession(guacr) as s:
        connected(s, xrdp, **extra)
        assert_matches_screen(s, xrdp)
        final = s.screen().copy()
        cid = s.id
    deadline = time.monotonic() + 10
    while f"Connection {cid} removed." not in guacr.log():
        assert time.monotonic() < deadline, "connection not removed"
        time.sleep(0.05)
    replay = Canvas()
    for ins in Parser().receive_data((tmp_path / "rec").read_bytes()):
        replay.feed(ins)
    assert np.array_equal(replay.rgb(), final), describe(replay.rgb(), final)


# -------------------------------------------------------------------------------- resize


def test_display_update_resize_reaches_the_x_server(guacr: Guacr, xrdp: XrdpServer) -> None:
    """resize-method=display-update: the owner's new size resizes the session's X screen."""
    with GuacSession(guacr) as s:
        connected(s, xrdp, **{"resize-method": "display-update", "force-lossless": "true"})
        try:
            for width, height in ((800, 600), (1024, 768)):
                s.client.send("size", width, height)
                s.wait_for(lambda w=width, h=height: s.canvas.size == (w, h), 15, "resize")
                deadline = time.monotonic() + 10
                while xrdp.screen_size() != (width, height):
                    assert time.monotonic() < deadline, xrdp.screen_size()
                    s.pump(0.2)
                assert_matches_screen(s, xrdp)
        finally:
            s.client.send("size", 1024, 768)
            s.pump(2.0)
    assert xrdp.screen_size() == (1024, 768)


def test_reconnect_resize_reaches_the_x_server(guacr: Guacr, xrdp: XrdpServer) -> None:
    """resize-method=reconnect (guacd): the owner's new size ends the RDP session and
    opens a new one at that size; the Guacamole connection stays, the screen follows,
    and typing still works in the new session."""
    token = secrets.token_hex(6)
    path = Path(f"/tmp/guacr-rdp-reconnect-{token}")
    with GuacSession(guacr) as s:
        connected(s, xrdp, **{"resize-method": "reconnect", "force-lossless": "true"})
        sessions = guacr.log().count("RDP session established.")
        try:
            for width, height in ((800, 600), (1024, 768)):
                s.client.send("size", width, height)
                s.wait_for(lambda w=width, h=height: s.canvas.size == (w, h), 20, "resize")
                deadline = time.monotonic() + 15
                while xrdp.screen_size() != (width, height):
                    assert time.monotonic() < deadline, xrdp.screen_size()
                    s.pump(0.2)
                assert_matches_screen(s, xrdp, 10.0)
            assert guacr.log().count("RDP session established.") == sessions + 2
            s.mouse(300, 200)
            s.pump(0.3)
            s.type_text(f"echo {token} > {path}\n")
            deadline = time.monotonic() + 10
            while not (path.exists() and path.read_text().strip() == token):
                assert time.monotonic() < deadline, "typing after the reconnect failed"
                s.pump(0.2)
            assert not s.errors
        finally:
            path.unlink(missing_ok=True)
            if xrdp.screen_size() != (1024, 768):
                s.client.send("size", 1024, 768)
                s.pump(3.0)
    xrdp.restore_size()
    assert xrdp.screen_size() == (1024, 768)


# ---------------------------------------------------------------------------------- SFTP


def test_sftp_side_channel_is_offered_to_the_owner(
    guacr: Guacr, xrdp: XrdpServer, sshd: SSHServer
) -> None:
    """enable-sftp: a filesystem on a separate SSH connection (sftp-username defaults to
    the RDP username), listed through the Guacamole object protocol."""
    extra = {
        "enable-sftp": "true",
        "sftp-hostname": sshd.host,
        "sftp-port": str(sshd.port),
        "sftp-password": sshd.password,
        "sftp-root-directory": "/",
    }
    with GuacSession(guacr) as s:
        connected(s, xrdp, **extra)
        # The SSH login may take a while on a loaded machine; the desktop is still, so
        # keep the client alive with nop as guacamole-common-js does.
        deadline = time.monotonic() + 40
        while not any(i[0] == "filesystem" for i in s.instructions):
            assert time.monotonic() < deadline and not s.errors, s.errors
            s.client.send("nop")
            s.pump(1.0)
        fs = next(i for i in s.instructions if i[0] == "filesystem")
        s.client.send("get", fs[1], "/")
        body = s.wait_opcode("body", 60)
        assert body[1] == fs[1] and body[4] == "/"  # body,object,stream,mimetype,name
        assert not s.errors


# --------------------------------------------------------------------------------- drive


def in_session(server: XrdpServer, script: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` as guest where the session's chansrv mounts the redirected drives
    (``~/thinclient_drives``, a FUSE mount in the xrdp server's own mount namespace,
    which sesman's process shares)."""
    argv = ["nsenter", "-t", str(server.pid), "-m", "runuser", "-u", "guest", "--"]
    return subprocess.run([*argv, "sh", "-c", script], capture_output=True, timeout=20)


@pytest.fixture
def drive_dir() -> Iterator[Path]:
    """A drive-path that does not exist yet (create-drive-path makes it)."""
    parent = Path(tempfile.mkdtemp(prefix="guacr-rdp-drive-"))
    try:
        yield parent / "drive"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_drive_is_shared_with_the_server_and_the_client(
    guacr: Guacr, xrdp: XrdpServer, drive_dir: Path
) -> None:
    """enable-drive: drive-path is created, redirected to xrdp (its FUSE view in the
    session, ~/thinclient_drives/GUACFS) and offered to the owner as guacd's "Shared
    Drive": a file uploaded by the client is read in the session, a file written in the
    session is listed and downloaded by the client."""
    extra = {"enable-drive": "true", "drive-path": str(drive_dir), "create-drive-path": "true"}
    with GuacSession(guacr) as s:
        connected(s, xrdp, **extra)
        fs = next(i for i in s.instructions if i[0] == "filesystem")
        obj = fs[1]
        assert fs[2] == "Shared Drive"
        assert drive_dir.is_dir()
        payload = secrets.token_hex(2000).encode()
        upload(s, ("put", obj, 4, "text/plain", "/from-client.txt"), 4, payload)
        assert (drive_dir / "from-client.txt").read_bytes() == payload
        mount = "~/thinclient_drives/GUACFS"
        deadline = time.monotonic() + 20
        while True:
            seen = in_session(xrdp, f"cat {mount}/from-client.txt")
            if seen.stdout == payload:
                break
            assert time.monotonic() < deadline, seen
            s.pump(0.3)
        # a directory listing shows a file the session never looked up by name
        (drive_dir / "local.txt").write_text("local")
        deadline = time.monotonic() + 20
        while True:
            listed = in_session(xrdp, f"ls {mount}")
            if listed.stdout.split() == [b"Download", b"from-client.txt", b"local.txt"]:
                break
            assert time.monotonic() < deadline, listed
            s.pump(0.3)
        (drive_dir / "local.txt").unlink()
        token = secrets.token_hex(8)
        wrote = in_session(xrdp, f"printf {token} > {mount}/from-server.txt && mkdir {mount}/dir")
        assert wrote.returncode == 0, wrote
        assert (drive_dir / "from-server.txt").read_text() == token
        mimetype, listing = read_body(s, obj, "/")
        assert json.loads(listing) == {
            "/Download": "application/vnd.glyptodon.guacamole.stream-index+json",
            "/dir": "application/vnd.glyptodon.guacamole.stream-index+json",
            "/from-client.txt": "application/octet-stream",
            "/from-server.txt": "application/octet-stream",
        }
        assert read_body(s, obj, "/from-server.txt")[1] == token.encode()
        # a plain file stream (drag and drop) lands in the drive's root, as with guacd
        upload(s, ("file", 6, "text/plain", "dropped.txt"), 6, b"dropped")
        assert (drive_dir / "dropped.txt").read_bytes() == b"dropped"
        # a file the session writes into Download goes to the owner's browser
        start = len(s.instructions)
        wrote = in_session(xrdp, f"printf {token}-dl > {mount}/Download/got.txt")
        assert wrote.returncode == 0, wrote
        s.wait_for(lambda: any(i[0] == "file" for i in s.instructions[start:]), 15, "file")
        file_ins = next(i for i in s.instructions[start:] if i[0] == "file")
        assert file_ins[3] == "got.txt"
        assert read_stream(s, file_ins[1]) == f"{token}-dl".encode()
        # ... and leaves the drive once sent, as with guacd (Download is an outbox)
        assert not (drive_dir / "Download" / "got.txt").exists()
        # a file moved into Download is sent too, and stays where it was (guacd answers
        # the rename with success without moving it)
        start = len(s.instructions)
        moved = in_session(
            xrdp, f"printf {token}-mv > {mount}/mv.txt && mv {mount}/mv.txt {mount}/Download/"
        )
        assert moved.returncode == 0, moved
        s.wait_for(lambda: any(i[0] == "file" for i in s.instructions[start:]), 15, "file")
        file_ins = next(i for i in s.instructions[start:] if i[0] == "file")
        assert file_ins[3] == "mv.txt"
        assert read_stream(s, file_ins[1]) == f"{token}-mv".encode()
        assert (drive_dir / "mv.txt").read_text() == f"{token}-mv"
        assert not (drive_dir / "Download" / "mv.txt").exists()
        # renaming, truncating and deleting work (MS-RDPEFS set-information requests)
        edited = in_session(
            xrdp,
            f"mv {mount}/mv.txt {mount}/renamed.txt && printf x > {mount}/renamed.txt"
            f" && rm {mount}/from-client.txt",
        )
        assert edited.returncode == 0, edited
        assert (drive_dir / "renamed.txt").read_text() == "x"
        assert not (drive_dir / "mv.txt").exists()
        deadline = time.monotonic() + 10  # removed when the server closes the file
        while (drive_dir / "from-client.txt").exists():
            assert time.monotonic() < deadline, "rm did not remove the file"
            s.pump(0.2)
        assert not s.errors


def read_stream(s: GuacSession, stream: str) -> bytes:
    """An inbound stream's data, acknowledging each blob as a client does."""
    data, seen = bytearray(), len(s.instructions)
    s.client.send("ack", stream, "OK", 0)
    while True:

        def arrived() -> bool:
            return any(i[0] in ("blob", "end") and i[1] == stream for i in s.instructions[seen:])

        s.wait_for(arrived, 10, "blob")
        ins = next(i for i in s.instructions[seen:] if i[0] in ("blob", "end") and i[1] == stream)
        seen = s.instructions.index(ins, seen) + 1
        if ins[0] == "end":
            return bytes(data)
        data += base64.b64decode(ins[2])
        s.client.send("ack", stream, "OK", 0)


def test_drive_disable_download_and_upload(guacr: Guacr, xrdp: XrdpServer, drive_dir: Path) -> None:
    drive_dir.mkdir()
    (drive_dir / "secret.txt").write_text("nope")
    extra = {
        "enable-drive": "true",
        "drive-path": str(drive_dir),
        "disable-download": "true",
        "disable-upload": "true",
    }
    with GuacSession(guacr) as s:
        connected(s, xrdp, desktop=False, **extra)
        obj = next(i for i in s.instructions if i[0] == "filesystem")[1]
        start = len(s.instructions)
        s.client.send("put", obj, 4, "text/plain", "/x")
        assert ack(s, "4", start)[3] == "256"
        start = len(s.instructions)
        s.client.send("file", 6, "text/plain", "y")
        assert ack(s, "6", start)[3] == "256"
        start = len(s.instructions)
        s.client.send("get", obj, "/secret.txt")
        s.pump(0.5)
        assert not any(i[0] == "body" for i in s.instructions[start:])
        assert sorted(p.name for p in drive_dir.iterdir()) == ["secret.txt"]
        # listing stays possible, as with guacd
        assert json.loads(read_body(s, obj, "/")[1]) == {"/secret.txt": "application/octet-stream"}


def test_reconnect_resize_waits_while_drive_files_are_open(
    guacr: Guacr, xrdp: XrdpServer, drive_dir: Path
) -> None:
    """As guacd, resize-method=reconnect does not reconnect while the server holds a
    file open on the redirected drive; it does once the file is closed."""
    drive_dir.mkdir()
    (drive_dir / "held.txt").write_text("held")
    extra = {"enable-drive": "true", "drive-path": str(drive_dir), "resize-method": "reconnect"}
    with GuacSession(guacr) as s:
        connected(s, xrdp, **extra)
        sessions = guacr.log().count("RDP session established.")
        deferred = guacr.log().count("Resize by reconnect deferred")
        argv = ["nsenter", "-t", str(xrdp.pid), "-m", "runuser", "-u", "guest", "--", "sh", "-c"]
        # holds the file open until its stdin closes (no timing involved)
        script = "exec 3< ~/thinclient_drives/GUACFS/held.txt && echo open && read x"
        holder = subprocess.Popen(
            [*argv, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            deadline = time.monotonic() + 20
            line = b""
            while line != b"open\n":  # the FUSE mount may take a moment after connect
                line = holder.stdout.readline()
                if not line and holder.poll() is not None:
                    assert time.monotonic() < deadline, holder.stderr
                    s.pump(0.3)
                    holder = subprocess.Popen(
                        [*argv, script],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                    assert holder.stdout is not None and holder.stdin is not None
            s.client.send("size", 800, 600)
            s.wait_for(
                lambda: guacr.log().count("Resize by reconnect deferred") > deferred, 10, "deferral"
            )
            s.pump(1.0)
            assert guacr.log().count("RDP session established.") == sessions
            assert xrdp.screen_size() == (1024, 768)
        finally:
            if holder.stdin is not None:
                holder.stdin.close()
            holder.wait(20)
        try:
            s.wait_for(lambda: s.canvas.size == (800, 600), 20, "resize after the close")
            deadline = time.monotonic() + 15
            while xrdp.screen_size() != (800, 600):
                assert time.monotonic() < deadline, xrdp.screen_size()
                s.pump(0.2)
            assert guacr.log().count("RDP session established.") == sessions + 1
            assert not s.errors
        finally:
            s.client.send("size", 1024, 768)
            s.pump(2.0)
    xrdp.restore_size()
    assert xrdp.screen_size() == (1024, 768)


# ------------------------------------------------------------------------ static channels

SVC_PEER = r"""
# A program in the session using a static channel through chansrv's xrdpapi socket
# (what libxrdpapi's WTSVirtualChannelOpenEx/Write/Read do), stdlib only.
import os, socket, struct, sys, time
name, message = sys.argv[1].encode(), sys.argv[2].encode()
display = int(os.environ["DISPLAY"].lstrip(":").split(".")[0])
for attempt in range(40):  # chansrv learns the channels once the login completes
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(f"/run/xrdp/sockdir/xrdpapi_{display}")
    s.sendall(struct.pack("<III", 16 + len(name), 0, len(name)) + name + struct.pack("<I", 0))
    reply = s.recv(4)
    if reply == bytes(4):
        break
    s.close()
    time.sleep(0.25)
else:
    sys.exit(f"open failed: {reply!r}")
s.sendall(message)
print("sent", flush=True)
print(s.recv(4096).decode(), flush=True)
"""


def test_static_channels_are_pipe_streams(guacr: Guacr, xrdp: XrdpServer) -> None:
    """static-channels (guacd): each named static channel is a pipe stream of that name
    to the client carrying what a program in the session writes to it (xrdp's
    xrdpapi), and a client pipe of that name carries data back; names are cut to 7
    characters; a pipe for a channel that was not configured is refused as guacd does."""
    token = secrets.token_hex(4)
    with GuacSession(guacr) as s:
        connected(s, xrdp, **{"static-channels": "gtest,averylongname"})
        s.wait_for(lambda: sum(i[0] == "pipe" for i in s.instructions) >= 2, 10, "pipes")
        pipes = {i[3]: i[1] for i in s.instructions if i[0] == "pipe"}
        assert set(pipes) == {"gtest", "averylo"}
        assert all(i[2] == "application/octet-stream" for i in s.instructions if i[0] == "pipe")
        argv = ["nsenter", "-t", str(xrdp.pid), "-m", "runuser", "-u", "guest", "--"]
        peer = subprocess.Popen(
            [*argv, "env", f"DISPLAY={xrdp.display}", "python3", "-c", SVC_PEER, "gtest",
             f"from-session-{token}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:

            def got_blob() -> bool:
                return any(
                    i[0] == "blob"
                    and i[1] == pipes["gtest"]
                    and base64.b64decode(i[2]) == f"from-session-{token}".encode()
                    for i in s.instructions
                )

            try:
                s.wait_for(got_blob, 15, "the session's data on the pipe")
            except AssertionError:
                peer.kill()
                raise AssertionError(peer.communicate()) from None
            start = len(s.instructions)
            s.client.send("pipe", 7, "application/octet-stream", "gtest")
            s.client.send("blob", 7, base64.b64encode(f"from-client-{token}".encode()).decode())
            assert tuple(ack(s, "7", start)[2:4]) == ("OK (DATA RECEIVED)", "0")
            out, err = peer.communicate(timeout=20)
            assert out.decode().split() == ["sent", f"from-client-{token}"], err
            start = len(s.instructions)
            s.client.send("pipe", 8, "application/octet-stream", "nosuch")
            assert tuple(ack(s, "8", start)[2:4]) == ("FAIL (NO SUCH PIPE)", "768")
            assert not s.errors
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait(5)
