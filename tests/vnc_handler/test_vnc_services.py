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
