"""The ``wss`` door end to end: TLS on the WebSocket door, terminated by a worker.

Real guacr with ``websocket_tls`` and a self-signed certificate; websockets' client
over ``wss://`` as the browser. A worker terminates TLS, answers the upgrade and
verifies the token; guacr tokens are redeemed in the listener, so a replay through the
other worker is refused; a join of a connection owned by the other worker goes
through the listener to its owner (guacr.server.wss).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import SSHServer
from ssh.ssh_helpers import TermClient, ssh_values
from websocket.doorproc import TOKEN_KEY, Door, start_wss_door
from websocket.wsclient import WsClient, expect_name, tunnel_url
from websockets.exceptions import InvalidStatus

from guacr.tunnel.tokens import GuacrTokens

pytestmark = pytest.mark.timeout(240)  # a hang guard: start-up under load is slow

TOKENS = GuacrTokens(TOKEN_KEY)
SIZE = {"GUAC_WIDTH": "800", "GUAC_HEIGHT": "480", "GUAC_DPI": "96"}


@pytest.fixture(scope="module")
def wss_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    yield from start_wss_door(tmp_path_factory.mktemp("wss-door"))


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wss(door: Door, token: str, **query: str) -> WsClient:
    url = tunnel_url(door.ws_port, {"token": token, **query}, scheme="wss")
    return WsClient(url, ssl_context=client_tls())


def joined_pid(c: WsClient, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        ins = c.read(max(0.0, deadline - time.monotonic()))
        assert ins is not None, c.close_info()
        if ins[0] == "name" and ins[1].startswith("joined pid="):
            return int(ins[1].split()[1].split("=")[1])


def test_ssh_session_over_wss(wss_door: Door, sshd: SSHServer) -> None:
    ws = wss(wss_door, TOKENS.mint(protocol="ssh", params=ssh_values(sshd)), **SIZE)
    term = TermClient(ws)  # type: ignore[arg-type]
    try:
        term.connection_id = ws.wait_id()
        assert term.connection_id.startswith("$")
        term.wait_text("$", 20)
        term.run("echo WSS-$((6*7))")
        term.wait_text("WSS-42", 15)
    finally:
        ws.close()


@pytest.mark.parametrize(
    "token",
    ["garbage", TOKENS.mint(protocol="echo")[:-4] + "AAAA", GuacrTokens("x" * 32).mint(join="$a")],
    ids=["garbage", "tampered", "wrong-key"],
)
def test_refused_token_gets_769_and_1008_over_wss(wss_door: Door, token: str) -> None:
    with wss(wss_door, token) as c:
        assert c.read_until_close(5) == [("error", "Token validation failed", "769")]
        assert c.tunnel_id is None
        assert c.close_info() == (1008, "769")
    assert token not in wss_door.guacr.log()


def test_plain_connection_to_wss_port_is_refused_cleanly(wss_door: Door) -> None:
    # A WebSocket client that forgot TLS: an HTTP 400 it can read, not a hang.
    with pytest.raises(InvalidStatus) as info:
        WsClient(tunnel_url(wss_door.ws_port, {"token": TOKENS.mint(protocol="echo")}))
    assert info.value.response.status_code == 400
    # Raw bytes that are not TLS either: answered and closed promptly.
    with socket.create_connection(("127.0.0.1", wss_door.ws_port), timeout=5) as s:
        s.sendall(b"hello\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400 "), data
        assert time.monotonic() - t0 < 3
    # The door still serves TLS clients afterwards.
    with wss(wss_door, TOKENS.mint(protocol="echo")) as c:
        assert c.wait_id().startswith("$")


def test_wss_join_of_connection_owned_by_another_worker(wss_door: Door) -> None:
    owners = []
    try:
        for _ in range(4):  # least-loaded placement spreads them over both workers
            c = wss(wss_door, TOKENS.mint(protocol="echo"))
            cid = c.wait_id()
            owners.append((c, cid, joined_pid(c)))
        assert len({pid for _, _, pid in owners}) == 2, owners
        for owner, cid, pid in owners:
            # Whichever worker terminates the joiner's TLS, it lands on the owner.
            with wss(wss_door, TOKENS.mint(join=cid)) as j:
                assert j.wait_id() == cid
                assert joined_pid(j) == pid
                owner.send("key", 65, 1)  # the owner's input, broadcast: the joiner sees it
                expect_name(j, "key 65 1")
                j.send("key", 66, 1)  # and the joiner's reaches the owner's connection
                expect_name(owner, "key 66 1")
    finally:
        for c, _, _ in owners:
            c.close()
    log = wss_door.guacr.log()
    assert "Unexpected" not in log
    assert "forwarded to its owner" in log  # some joins did cross workers


def test_replayed_guacr_token_refused_over_wss(wss_door: Door) -> None:
    token = TOKENS.mint(protocol="echo")
    first = wss(wss_door, token)
    try:
        pid = joined_pid(first)
        # Replays while the first tunnel is open: least-loaded placement sends at least
        # one of them through the other worker, which must not accept it either.
        for _ in range(2):
            with wss(wss_door, token) as again:
                assert again.read_until_close(5) == [("error", "Token validation failed", "769")]
                assert again.close_info() == (1008, "769")
        assert pid
    finally:
        first.close()
    assert "guacr token already used" in wss_door.guacr.log()
    assert token not in wss_door.guacr.log()


def test_unknown_join_over_wss_gets_516(wss_door: Door) -> None:
    with wss(wss_door, TOKENS.mint(join="$no-such-connection")) as c:
        got = c.read_until_close(5)
        assert got and got[0][0] == "error" and got[0][2] == "516", got
        assert c.close_info()[1] == "516"


@pytest.fixture(scope="module")
def limited_wss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    yield from start_wss_door(
        tmp_path_factory.mktemp("wss-limited"),
        GUACR_WEBSOCKET_MAX_PER_ADDRESS="2",
        GUACR_WEBSOCKET_TRUSTED_PROXIES="127.0.0.1",
    )


def from_address(door: Door, token: str, xff: str) -> WsClient:
    url = tunnel_url(door.ws_port, {"token": token}, scheme="wss")
    return WsClient(url, ssl_context=client_tls(), headers={"X-Forwarded-For": xff})


def test_per_address_limit_over_wss(limited_wss: Door) -> None:
    """One count per client address across workers (the address from X-Forwarded-For,
    the peer being a trusted proxy); a join forwarded to its owner's worker counts too."""
    a1 = from_address(limited_wss, TOKENS.mint(protocol="echo"), "10.0.0.1")
    cid = a1.wait_id()
    # The joiner's TLS lands on the other (less loaded) worker: forwarded to the owner.
    j = from_address(limited_wss, TOKENS.mint(join=cid), "192.0.2.9, 10.0.0.1")
    assert j.wait_id() == cid
    try:
        with from_address(limited_wss, TOKENS.mint(protocol="echo"), "10.0.0.1") as a3:
            assert a3.read_until_close(10) == [
                ("error", "Too many connections from this address.", "797")
            ]
            assert a3.close_info() == (1008, "797")
        with from_address(limited_wss, TOKENS.mint(protocol="echo"), "10.0.0.2") as b:
            assert b.wait_id().startswith("$")  # another address is fine
        assert "forwarded to its owner" in limited_wss.guacr.log()
        j.close()
        deadline = time.monotonic() + 10
        while True:  # the slot frees once the joiner's user is gone
            with from_address(limited_wss, TOKENS.mint(protocol="echo"), "10.0.0.1") as a4:
                got = a4.read(10) if a4.tunnel_id is None else None
                if a4.tunnel_id is not None or (got is not None and got[0] != "error"):
                    break
            assert time.monotonic() < deadline, "address slot never freed"
            time.sleep(0.2)
    finally:
        j.close()
        a1.close()


def test_wss_needs_a_certificate(tmp_path: Path) -> None:
    """Without websocket_cert and -C, guacr refuses to start and says which setting."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "guacr", "-f", "--config", "/dev/null"],
        env={
            "GUACR_WEBSOCKET_TLS": "true",
            "GUACR_WEBSOCKET_BIND_PORT": "1",
            "GUACR_TOKEN_KEY": TOKEN_KEY,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "websocket_tls needs websocket_cert or -C" in out.stderr + out.stdout
