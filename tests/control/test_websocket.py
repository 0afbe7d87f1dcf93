"""CreateSession / ShareSession tokens opened on the real WebSocket door (4823).

The door trusts 127.0.0.1 as a proxy: a tunnel sending X-Forwarded-For is reported at
the address it names (port unknown), one without at its own address and port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from websocket.doorproc import TOKEN_KEY, Door, start_door
from websocket.wsclient import WsClient, tunnel_url

from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc
from guacr.tunnel.tokens import GuacrTokens
from guacr_process import free_port

TOKEN = "websocket-control-test-token-0123"
AUTH = (("authorization", f"Bearer {TOKEN}"),)

pytestmark = pytest.mark.timeout(240)  # a hang guard: start-up under load is slow


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Door, control_pb2_grpc.ControlStub]]:
    grpc_port = free_port()
    env = {"GUACR_GRPC_TOKEN": TOKEN, "GUACR_GRPC_BIND_PORT": str(grpc_port),
           "GUACR_METRICS_BIND_PORT": "0", "GUACR_SYSLOG_ADDRESS": "",
           "GUACR_WEBSOCKET_TRUSTED_PROXIES": "127.0.0.1"}
    for d in start_door(tmp_path_factory.mktemp("wsctl"), **env):
        d.guacr.wait_log("gRPC control listening")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            yield d, control_pb2_grpc.ControlStub(ch)


def _names(c: WsClient, seconds: float) -> list[str]:
    """``name`` texts received within ``seconds`` (answering syncs)."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ins = c.read(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            break
        if ins is None:
            break
        if ins[0] == "sync":
            c.send("sync", ins[1])
        elif ins[0] == "name":
            out.append(ins[1])
    return out


def test_create_then_share_read_only(door: tuple[Door, control_pb2_grpc.ControlStub]) -> None:
    d, stub = door
    created = stub.CreateSession(
        pb.CreateSessionRequest(protocol="echo", parameters={"password": "hunter2-secret"}),
        metadata=AUTH, timeout=10,
    )
    assert created.token and created.expires_at.seconds > time.time()
    with WsClient(tunnel_url(d.ws_port, {"token": created.token})) as owner:
        cid = owner.wait_id()
        s = stub.GetSession(pb.GetSessionRequest(id=cid), metadata=AUTH, timeout=10)
        assert s.protocol == "echo" and s.users[0].door == "ws"
        shared = stub.ShareSession(pb.ShareSessionRequest(id=cid, read_only=True), metadata=AUTH, timeout=10)
        with WsClient(tunnel_url(d.ws_port, {"token": shared.token})) as joiner:
            assert joiner.wait_id() == cid
            joiner.send("key", 66, 1)  # read-only: ignored
            owner.send("key", 65, 1)
            seen = _names(owner, 2.0)
            assert "key 65 1" in seen and "key 66 1" not in seen
            s = stub.GetSession(pb.GetSessionRequest(id=cid), metadata=AUTH, timeout=10)
            ro = {u.read_only for u in s.users if not u.owner}
            assert ro == {True}
        # A token works once.
        with WsClient(tunnel_url(d.ws_port, {"token": created.token})) as again:
            got = again.read_until_close(5)
            assert any(i[0] == "error" and i[2] == "769" for i in got)
    assert "hunter2-secret" not in d.guacr.log()


def test_drain_refuses_new_websocket_sessions(door: tuple[Door, control_pb2_grpc.ControlStub]) -> None:
    d, stub = door
    created = stub.CreateSession(pb.CreateSessionRequest(protocol="echo"), metadata=AUTH, timeout=10)
    early = stub.CreateSession(pb.CreateSessionRequest(protocol="echo"), metadata=AUTH, timeout=10)
    with WsClient(tunnel_url(d.ws_port, {"token": created.token})) as owner:
        cid = owner.wait_id()
        stub.Drain(pb.DrainRequest(), metadata=AUTH, timeout=10)
        try:
            with pytest.raises(grpc.RpcError) as err:
                stub.CreateSession(pb.CreateSessionRequest(protocol="echo"), metadata=AUTH, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            # A token minted before the drain: the door refuses the new session (513).
            with WsClient(tunnel_url(d.ws_port, {"token": early.token})) as late:
                got = late.read_until_close(5)
                assert any(i[0] == "error" and i[2] == "513" for i in got), got
                assert late.close_info() == (1008, "513")
            tcp = d.guacr.client()  # and so does 4822
            tcp.send("select", "echo")
            assert tcp.expect("error", 5.0)[2] == "513"
            tcp.close()
            # Joins still work on the WebSocket door.
            shared = stub.ShareSession(pb.ShareSessionRequest(id=cid), metadata=AUTH, timeout=10)
            with WsClient(tunnel_url(d.ws_port, {"token": shared.token})) as joiner:
                assert joiner.wait_id() == cid
        finally:
            stub.Resume(pb.ResumeRequest(), metadata=AUTH, timeout=10)


def _code(err: grpc.RpcError) -> grpc.StatusCode:
    return err.code()  # type: ignore[attr-defined,no-any-return]


def test_create_session_id_is_the_connection_id(door: tuple[Door, control_pb2_grpc.ControlStub]) -> None:
    """CreateSession's id is the one the tunnel's client receives and GetSession finds;
    no second connection ever gets it."""
    d, stub = door
    created = stub.CreateSession(pb.CreateSessionRequest(protocol="echo"), metadata=AUTH, timeout=10)
    sid = created.session_id
    assert sid.startswith("$") and len(sid) == 37
    with pytest.raises(grpc.RpcError) as err:  # not live before its token is used
        stub.GetSession(pb.GetSessionRequest(id=sid), metadata=AUTH, timeout=10)
    assert _code(err.value) == grpc.StatusCode.NOT_FOUND
    with WsClient(tunnel_url(d.ws_port, {"token": created.token})) as owner:
        assert owner.wait_id() == sid
        s = stub.GetSession(pb.GetSessionRequest(id=sid), metadata=AUTH, timeout=10)
        assert s.id == sid and s.protocol == "echo"
        (u,) = s.users
        assert u.owner and u.door == "ws" and u.address == "127.0.0.1"
        assert u.port == owner.ws.socket.getsockname()[1]
        # The token works once: its id cannot open a second connection.
        with WsClient(tunnel_url(d.ws_port, {"token": created.token})) as again:
            got = again.read_until_close(5)
            assert any(i[0] == "error" and i[2] == "769" for i in got), got
        # Even a second token sealing the same id (only a holder of token_key could mint
        # one) is refused while the first connection has it: 517, resource conflict.
        forged = GuacrTokens(TOKEN_KEY).mint(protocol="echo", connection=sid)
        with WsClient(tunnel_url(d.ws_port, {"token": forged})) as dup:
            got = dup.read_until_close(5)
            assert any(i[0] == "error" and i[2] == "517" for i in got), got
            assert dup.tunnel_id is None
        owner.send("key", 65, 1)
        assert "key 65 1" in _names(owner, 2.0)
        listed = stub.ListSessions(pb.ListSessionsRequest(), metadata=AUTH, timeout=10)
        assert [x.id for x in listed.sessions].count(sid) == 1

    def ended() -> bool:
        try:
            stub.GetSession(pb.GetSessionRequest(id=sid), metadata=AUTH, timeout=10)
        except grpc.RpcError as e:
            return _code(e) == grpc.StatusCode.NOT_FOUND
        return False

    deadline = time.monotonic() + 10
    while not ended() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended()


def test_forwarded_client_address(door: tuple[Door, control_pb2_grpc.ControlStub]) -> None:
    """Behind a trusted proxy the user is where X-Forwarded-For says; its port is not known."""
    d, stub = door
    created = stub.CreateSession(pb.CreateSessionRequest(protocol="echo"), metadata=AUTH, timeout=10)
    url = tunnel_url(d.ws_port, {"token": created.token})
    with WsClient(url, headers={"X-Forwarded-For": "203.0.113.9"}) as c:
        assert c.wait_id() == created.session_id
        s = stub.GetSession(pb.GetSessionRequest(id=created.session_id), metadata=AUTH, timeout=10)
        assert [(u.address, u.port, u.door) for u in s.users] == [("203.0.113.9", 0, "ws")]
