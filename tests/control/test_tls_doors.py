"""The control API with TLS on both doors: 4822 with -C/-K and the WebSocket door as wss.

One daemon (2 workers, the test echo handler): a worker terminates TLS on either door
and reads ``select`` or the token itself, so the drain and the client addresses are
checked where they are decided, not in the listener.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from server.test_tls import TlsClient, make_cert
from websocket.doorproc import TOKEN_KEY
from websocket.wsclient import WsClient, tunnel_url

from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc
from guacr_process import Guacr, assert_no_traceback, free_port, run_guacr

TOKEN = "tls-doors-control-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)

pytestmark = pytest.mark.timeout(240)  # a hang guard: start-up under load is slow


@dataclass
class Doors:
    guacr: Guacr
    ws_port: int
    stub: control_pb2_grpc.ControlStub


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    tmp = tmp_path_factory.mktemp("tlsdoors")
    cert, key = make_cert(tmp)
    grpc_port, ws_port = free_port(), free_port()
    env = {
        "GUACR_GRPC_TOKEN": TOKEN,
        "GUACR_GRPC_BIND_PORT": str(grpc_port),
        "GUACR_METRICS_BIND_PORT": "0",
        "GUACR_SYSLOG_ADDRESS": "",
        "GUACR_WEBSOCKET_BIND_PORT": str(ws_port),
        "GUACR_WEBSOCKET_TLS": "true",  # the certificate of -C/-K
        "GUACR_TOKEN_KEY": TOKEN_KEY,
    }
    with run_guacr(tmp, workers=2, env=env, extra=["-C", str(cert), "-K", str(key)]) as g:
        g.wait_log("gRPC control listening")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            yield Doors(g, ws_port, control_pb2_grpc.ControlStub(ch))


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _wss(d: Doors, token: str) -> WsClient:
    return WsClient(tunnel_url(d.ws_port, {"token": token}, scheme="wss"), ssl_context=_tls())


def _create(d: Doors) -> pb.CreateSessionResponse:
    return d.stub.CreateSession(pb.CreateSessionRequest(protocol="echo"), metadata=AUTH, timeout=10)


def _session(d: Doors, sid: str) -> pb.Session:
    return d.stub.GetSession(pb.GetSessionRequest(id=sid), metadata=AUTH, timeout=10)


def _echoed(c: TlsClient | WsClient, keysym: int, timeout: float = 5.0) -> bool:
    """Send a key; True once the echo handler names it (answering syncs)."""
    c.send("key", keysym, 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ins = c.read(max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return False
        if ins is None:
            return False
        if ins[0] == "sync":
            c.send("sync", ins[1])
        elif ins == ("name", f"key {keysym} 1"):
            return True
    return False


def test_ids_and_client_ports(doors: Doors) -> None:
    """TLS and wss users are reported at their own address and port; CreateSession's id
    is the id the wss client receives."""
    d = doors
    tls = TlsClient(d.guacr.port)
    created = _create(d)
    try:
        tid = tls.handshake("echo", {}, name="tls-owner")
        u = _session(d, tid).users[0]
        assert (u.door, u.address, u.port) == ("tls", "127.0.0.1", tls.sock.getsockname()[1])
        with _wss(d, created.token) as owner:
            assert owner.wait_id() == created.session_id
            s = _session(d, created.session_id)
            assert [(x.door, x.port) for x in s.users] == [("wss", owner.ws.socket.getsockname()[1])]
            # Joins (a worker may forward one to the owner through the listener) too.
            for _ in range(2):
                shared = d.stub.ShareSession(
                    pb.ShareSessionRequest(id=created.session_id), metadata=AUTH, timeout=10
                )
                with _wss(d, shared.token) as joiner:
                    assert joiner.wait_id() == created.session_id
                    port = joiner.ws.socket.getsockname()[1]
                    ports = {x.port for x in _session(d, created.session_id).users if not x.owner}
                    assert ports == {port}
                deadline = time.monotonic() + 10  # gone before the next one joins
                while len(_session(d, created.session_id).users) > 1:
                    assert time.monotonic() < deadline, "the joiner did not leave"
                    time.sleep(0.05)
            with _wss(d, created.token) as replay:  # the token works once
                got = replay.read_until_close(5)
                assert any(i[0] == "error" and i[2] == "769" for i in got), got
    finally:
        tls.close()


def test_drain_on_tls_and_wss(doors: Doors) -> None:
    """While draining: new sessions on either TLS door get 513 (wss: close 1008 "513"),
    joins of live sessions still work, and live sessions go on."""
    d = doors
    tls_owner = TlsClient(d.guacr.port)
    tid = tls_owner.handshake("echo", {}, name="tls")
    created, early = _create(d), _create(d)
    wss_owner = _wss(d, created.token)
    try:
        assert wss_owner.wait_id() == created.session_id
        assert d.stub.Drain(pb.DrainRequest(), metadata=AUTH, timeout=10).draining
        try:
            refused = TlsClient(d.guacr.port)
            refused.send("select", "echo")
            err = refused.expect("error", 10.0)
            assert err[2] == "513" and "draining" in err[1]
            refused.close()
            with _wss(d, early.token) as late:  # minted before the drain
                got = late.read_until_close(10)
                assert any(i[0] == "error" and i[2] == "513" for i in got), got
                assert late.close_info() == (1008, "513")
            # Joins are still accepted on both doors.
            tls_joiner = TlsClient(d.guacr.port)
            assert tls_joiner.handshake(tid, {}) == tid
            shared = d.stub.ShareSession(
                pb.ShareSessionRequest(id=created.session_id), metadata=AUTH, timeout=10
            )
            with _wss(d, shared.token) as wss_joiner:
                assert wss_joiner.wait_id() == created.session_id
                # Live sessions go on, their joiners included.
                assert _echoed(tls_owner, 65) and _echoed(wss_owner, 66)
                assert _echoed(tls_joiner, 67) and _echoed(wss_joiner, 68)
            tls_joiner.close()
        finally:
            assert not d.stub.Resume(pb.ResumeRequest(), metadata=AUTH, timeout=10).draining
        fresh = TlsClient(d.guacr.port)
        assert fresh.handshake("echo", {}).startswith("$")
        fresh.close()
    finally:
        wss_owner.close()
        tls_owner.close()


def test_tls_door_log_has_no_secrets(doors: Doors) -> None:
    assert TOKEN not in doors.guacr.log()
    assert_no_traceback(doors.guacr.log())
