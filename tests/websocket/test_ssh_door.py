"""Real SSH sessions through the WebSocket door, and joins across doors.

The browser side is websockets' client speaking like guacamole-common-js (one
instruction per message, ``sync`` answered); the screen is read back with the SSH
tests' terminal reader, so a match proves the shell's output reached the client.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlencode

import pytest
from servers import SSHServer
from ssh.ssh_helpers import TermClient, ssh_values
from websocket.doorproc import LITE_KEY, TOKEN_KEY, Door
from websocket.wsclient import WsClient, tunnel_url
from websockets.asyncio.client import connect

from guacr.protocol.instruction import encode_str
from guacr.protocol.parser import Parser
from guacr.tunnel import lite
from guacr.tunnel.tokens import GuacrTokens

pytestmark = pytest.mark.timeout(240)  # a hang guard: start-up under load is slow

TOKENS = GuacrTokens(TOKEN_KEY)
SIZE = {"GUAC_WIDTH": "800", "GUAC_HEIGHT": "480", "GUAC_DPI": "96"}


def ws_term(door: Door, token: str, **query: str) -> TermClient:
    ws = WsClient(tunnel_url(door.ws_port, {"token": token, **SIZE, **query}))
    term = TermClient(ws)  # type: ignore[arg-type]
    term.connection_id = ws.wait_id()
    return term


def tcp_term(door: Door, sshd: SSHServer) -> TermClient:
    client = door.guacr.client()
    term = TermClient(client)
    term.connection_id = client.handshake("ssh", ssh_values(sshd), size=(800, 480, 96))
    return term


def test_ssh_session_over_websocket(door: Door, sshd: SSHServer) -> None:
    term = ws_term(door, TOKENS.mint(protocol="ssh", params=ssh_values(sshd)))
    try:
        term.wait_text("$", 20)
        term.run("echo WS-$((6*7))")
        term.wait_text("WS-42", 15)
        sizes = [i for i in term.log if i[0] == "size" and i[1] == "0"]
        assert sizes and sizes[0][2:4] == ("800", "480")  # display size from the query
    finally:
        term.client.close()


def test_guacamole_lite_token_runs_ssh(door: Door, sshd: SSHServer) -> None:
    """A guacamole-lite deployment's token, unchanged: guacamole-lite's defaults apply
    (1024x768 when the query gives no size)."""
    settings = ssh_values(sshd)
    token = lite.encrypt(
        {"connection": {"type": "ssh", "settings": settings}}, LITE_KEY.encode(), os.urandom(16)
    )
    ws = WsClient(tunnel_url(door.ws_port, {"token": token}))
    term = TermClient(ws)  # type: ignore[arg-type]
    try:
        term.connection_id = ws.wait_id()
        assert term.connection_id.startswith("$")
        term.wait_text("$", 20)
        term.run("echo LITE-$((40+2))")
        term.wait_text("LITE-42", 15)
        sizes = [i for i in term.log if i[0] == "size" and i[1] == "0"]
        assert sizes and sizes[0][2:4] == ("1024", "768")
    finally:
        ws.close()


def test_websocket_joiner_sees_tcp_owner(door: Door, sshd: SSHServer) -> None:
    owner = tcp_term(door, sshd)
    try:
        owner.wait_text("$", 20)
        joiner = ws_term(door, TOKENS.mint(join=owner.connection_id))
        try:
            owner.run("echo JOINED-$((3*5))")
            owner.wait_text("JOINED-15", 15)
            joiner.wait_text("JOINED-15", 15)
            joiner.run("echo FROM-JOINER-$((1+1))")  # a full joiner types into the shell
            owner.wait_text("FROM-JOINER-2", 15)
        finally:
            joiner.client.close()
    finally:
        owner.client.close()


def test_tcp_and_read_only_websocket_joiners_of_websocket_owner(
    door: Door, sshd: SSHServer
) -> None:
    owner = ws_term(door, TOKENS.mint(protocol="ssh", params=ssh_values(sshd)))
    try:
        owner.wait_text("$", 20)
        tcp = door.guacr.client()
        tcp_joiner = TermClient(tcp)
        tcp.handshake(owner.connection_id, {}, size=(800, 480, 96))
        viewer = ws_term(door, TOKENS.mint(join=owner.connection_id, read_only=True))
        lite_viewer_token = lite.encrypt(
            {"connection": {"join": owner.connection_id, "settings": {"read-only": "true"}}},
            LITE_KEY.encode(),
            os.urandom(16),
        )
        lite_viewer = ws_term(door, lite_viewer_token)
        try:
            viewer.run("echo VIEWER-$((7*7))")  # read-only: must not reach the shell
            lite_viewer.run("echo LVIEWER-$((7*8))")
            owner.run("echo OWNER-$((9*9))")
            for t in (owner, tcp_joiner, viewer, lite_viewer):
                t.wait_text("OWNER-81", 15)
            text = owner.text()
            assert "VIEWER-49" not in text and "LVIEWER-56" not in text, text
        finally:
            for t in (tcp_joiner, viewer, lite_viewer):
                t.client.close()
    finally:
        owner.client.close()


# ------------------------------------------------------------------ 200 sessions


async def _session(
    port: int, token: str, marker: str, start: asyncio.Event, ready: list[int]
) -> float:
    """One tunnel: log in, wait for the go, echo the marker into the window title
    (reported as ``name``), return the seconds until it came back."""
    url = f"ws://127.0.0.1:{port}/?" + urlencode({"token": token, **SIZE})
    async with connect(
        url,
        subprotocols=["guacamole"],
        max_size=1 << 24,
        compression=None,  # type: ignore[list-item]
        open_timeout=60,
    ) as ws:
        parser = Parser()
        prompt = False

        async def pump(until: str) -> None:
            nonlocal prompt
            while True:
                msg = await ws.recv()
                data = msg.encode() if isinstance(msg, str) else msg
                for ins in parser.receive_data(data):
                    if ins[0] == "sync":
                        await ws.send(encode_str("sync", ins[1]))
                    elif ins[0] == "error":
                        raise AssertionError(f"{marker}: {ins}")
                    elif ins[0] in ("img", "copy") and not prompt:
                        prompt = True
                    elif ins[0] == "name" and ins[1] == until:
                        return
                if until == "" and prompt:
                    return

        async def keep_alive() -> None:  # as Guacamole.Client does while idle
            while True:
                await asyncio.sleep(4)
                await ws.send(encode_str("nop"))

        alive = asyncio.create_task(keep_alive())
        await asyncio.wait_for(pump(""), 90)
        ready.append(1)
        await start.wait()
        t0 = time.monotonic()
        # The title is set, then the shell sleeps, so no prompt can reset it meanwhile.
        command = f"printf '\\033]0;%s\\007' {marker}; sleep 2\r"
        for ch in command:
            keysym = 0xFF0D if ch == "\r" else ord(ch)
            await ws.send(encode_str("key", keysym, 1))
            await ws.send(encode_str("key", keysym, 0))
        await asyncio.wait_for(pump(marker), 60)
        alive.cancel()
        return time.monotonic() - t0


def test_200_concurrent_websocket_ssh_sessions(door: Door, sshd: SSHServer) -> None:
    n = 200
    values = ssh_values(sshd)

    async def main() -> list[float | BaseException]:
        start = asyncio.Event()
        ready: list[int] = []

        async def one(i: int) -> float:
            await asyncio.sleep(i * 0.02)  # 50 logins a second, as a crowd arrives
            return await _session(
                door.ws_port,
                TOKENS.mint(protocol="ssh", params=values, ttl=300),
                f"MARK-{i:03d}-{os.getpid()}",
                start,
                ready,
            )

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        deadline = time.monotonic() + 90
        # All 200 are logged in and idle at the same time before anyone types.
        while len(ready) + sum(t.done() for t in tasks) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        start.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {n} sessions failed: {failures[:3]}"
    assert len(results) == n
