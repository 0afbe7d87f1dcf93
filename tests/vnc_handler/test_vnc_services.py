"""The shared services as the ``vnc`` handler uses them, end to end against Xtigervnc:
pointer broadcast and recorded input (each mouse event once), clipboard policy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import TigerVNCServer

from guacr.protocol.parser import Parser
from tests.guacr_process import Guacr, run_guacr
from tests.vnc_handler.guac_session import GuacSession

HANDLERS = "vnc=guacr.handlers.vnc.handler:VNCHandler"
MOVES = [(11, 12), (21, 22), (31, 32), (41, 42), (51, 52)]


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-vnc-svc"), workers=1, handlers=HANDLERS) as g:
        yield g


def values(server: TigerVNCServer, **extra: str) -> dict[str, str]:
    v = {"hostname": server.host, "port": str(server.port), "password": server.password}
    v.update(extra)
    return v


def wait_removed(g: Guacr, cid: str) -> None:
    deadline = time.monotonic() + 10
    while f"Connection {cid} removed." not in g.log():
        assert time.monotonic() < deadline, "connection not removed"
        time.sleep(0.05)


def record_moves(guacr: Guacr, server: TigerVNCServer, rec: Path, **extra: str) -> list[tuple]:
    """Owner and a joiner connected, the owner moves the mouse: the recorded ``mouse``s."""
    params = {"recording-path": str(rec), "recording-name": "rec", **extra}
    with GuacSession(guacr) as owner:
        owner.connect(values(server, **params))
        owner.wait_frames(1)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {})
            joiner.wait_frames(1)
            for x, y in MOVES:
                owner.mouse(x, y)
            # the joiner is shown every move (the broadcast happens)...
            joiner.wait_for(lambda: joiner.canvas.mouse == MOVES[-1], 5, "mouse")
        owner.pump(0.3)
    wait_removed(guacr, owner.id)
    return [i for i in Parser().receive_data((rec / "rec").read_bytes()) if i[0] == "mouse"]


def test_recording_holds_each_mouse_event_once(
    guacr: Guacr, tigervnc: TigerVNCServer, tmp_path: Path
) -> None:
    mice = record_moves(guacr, tigervnc, tmp_path)
    # ... and the recording holds each event exactly once, with its timestamp
    assert [(int(m[1]), int(m[2])) for m in mice] == MOVES
    assert all(int(m[4]) > 0 for m in mice)


def test_recording_exclude_mouse_records_none(
    guacr: Guacr, tigervnc: TigerVNCServer, tmp_path: Path
) -> None:
    assert record_moves(guacr, tigervnc, tmp_path, **{"recording-exclude-mouse": "true"}) == []


def test_joiner_is_told_the_pointer_position(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as owner:
        owner.connect(values(tigervnc))
        owner.wait_frames(1)
        owner.mouse(77, 88)
        owner.pump(0.3)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {})
            joiner.wait_for(lambda: joiner.canvas.mouse == (77, 88), 5, "pointer position")


def test_disable_paste_is_decided_per_user(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    """A joiner with ``disable-paste`` gets guacd's refusal; the owner may still paste."""
    with GuacSession(guacr) as owner:
        owner.connect(values(tigervnc))
        owner.wait_frames(1)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {"disable-paste": "true"})
            joiner.wait_frames(1)
            joiner.send_clipboard("nope", stream=10)
            ack = joiner.wait_opcode("ack")
            assert ack[1:] == ("10", "Clipboard unsupported", "256")
        owner.send_clipboard("fine", stream=10)
        owner.pump(0.5)
        assert not any(i[0] == "ack" and i[1] == "10" for i in owner.instructions)


# ------------------------------------------------------------ defects found as a user


def test_read_only_owner_answers_the_password_prompt(
    guacr: Guacr, tigervnc: TigerVNCServer
) -> None:
    """guacd keeps the owner's argv handler when read-only: the prompt can be answered."""
    with GuacSession(guacr) as s:
        s.connect(values(tigervnc, password="", **{"read-only": "true"}))
        assert s.wait_opcode("required")[1:] == ("password",)
        s.send_argv("password", tigervnc.password)
        assert s.wait_opcode("ack")[1:] == ("12", "Ready for updated parameter.", "0")
        s.wait_for(lambda: s.canvas.size == (tigervnc.width, tigervnc.height), 10, "desktop")
        assert not s.errors


def test_read_only_joiner_argv_is_still_refused(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as owner:
        owner.connect(values(tigervnc))
        owner.wait_frames(1)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {"read-only": "true"})
            joiner.wait_frames(1)
            joiner.send_argv("password", "x")
            assert joiner.wait_opcode("ack")[3] == "256"


def test_tight_without_levels_asks_for_libvncclients_defaults(
    guacr: Guacr, tigervnc: TigerVNCServer
) -> None:
    """``tight`` alone: quality 5 and compression 3 are requested, as libvncclient does,
    so the server sends JPEG (passed through as image/jpeg)."""
    with GuacSession(guacr) as s:
        s.connect(values(tigervnc, encodings="tight"))
        s.wait_frames(1)
        # something photographic enough for Tight to pick JPEG: a gradient window
        pattern = "xsetroot -bitmap /usr/include/X11/bitmaps/gray3 -fg red -bg blue"
        tigervnc.run_x(["sh", "-c", pattern])
        try:
            s.wait_for(lambda: "image/jpeg" in s.canvas.mimetypes, 10, "a JPEG")
        finally:
            tigervnc.run_x(["xsetroot", "-solid", "black"])


def test_encodings_guacr_skips_are_logged(guacr: Guacr, tigervnc: TigerVNCServer) -> None:
    with GuacSession(guacr) as s:
        s.connect(values(tigervnc, encodings="zrle ultra corre zlibhex bogus raw"))
        s.wait_frames(1)
    log = guacr.log()
    assert "VNC encodings not supported by guacr, skipped: ultra, corre, zlibhex." in log
    assert "Unknown VNC encodings ignored: bogus." in log


def test_libvnc_levels_unit() -> None:
    from guacr.handlers.vnc.constants import libvnc_levels, skipped_encodings

    assert libvnc_levels("tight zrle", None, None) == (3, 5)
    assert libvnc_levels("zlib raw", None, None) == (3, None)
    assert libvnc_levels("zrle hextile raw", None, None) == (None, None)
    assert libvnc_levels("tight", 1, 9) == (1, 9)
    assert skipped_encodings("ZRLE ultra trle x") == (["ultra", "trle"], ["x"])
