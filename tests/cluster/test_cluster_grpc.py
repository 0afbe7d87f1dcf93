"""gRPC control across instances: B's Control service reaches A's sessions."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from guacr_process import Guacr, free_port
from servers.redis import RedisServer
from websocket.wsclient import WsClient, tunnel_url

from cluster.conftest import instance, wait_for
from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc

GRPC_TOKEN = "cluster-grpc-token-0123456789"
AUTH = (("authorization", f"Bearer {GRPC_TOKEN}"),)


def grpc_env() -> dict[str, str]:
    return {"GUACR_GRPC_BIND_PORT": str(free_port()), "GUACR_GRPC_TOKEN": GRPC_TOKEN}


def stub_for(g: Guacr, env: dict[str, str]) -> tuple[grpc.Channel, control_pb2_grpc.ControlStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{env['GUACR_GRPC_BIND_PORT']}")
    return channel, control_pb2_grpc.ControlStub(channel)


def test_grpc_on_b_reaches_sessions_on_a(tmp_path: Path, redis_server: RedisServer) -> None:
    for name in "ab":
        (tmp_path / name).mkdir()
    env_a, env_b = grpc_env(), grpc_env()
    with (
        instance(tmp_path / "a", redis_server, websocket=True, env=env_a) as a,
        instance(tmp_path / "b", redis_server, websocket=True, env=env_b) as b,
    ):
        owner = a.client(timeout=20)
        on_a = owner.handshake("echo")
        mine = b.client(timeout=20)
        on_b = mine.handshake("echo")
        wait_for(
            "both published",
            lambda: (
                {f"guacr:c:{on_a}", f"guacr:c:{on_b}"} <= set(redis_server.find_keys("guacr:c:*"))
            ),
        )
        channel, stub = stub_for(b, env_b)
        with channel:
            # The gRPC server may come up a moment after the workers.
            listed = wait_for(
                "ListSessions with both instances' sessions",
                lambda: _list(stub) >= {on_a, on_b},
            )
            assert listed
            # A's entry comes from A itself, now: the registry entry has no worker pid.
            entry = _entry(stub, on_a)
            assert entry.worker_pid in a.worker_pids()
            assert not entry.stale and not _entry(stub, on_b).stale
            got = stub.GetSession(pb.GetSessionRequest(id=on_a), metadata=AUTH, timeout=20)
            assert got.id == on_a and got.protocol == "echo" and len(got.users) == 1

            shared = stub.ShareSession(
                pb.ShareSessionRequest(id=on_a, read_only=True), metadata=AUTH, timeout=20
            )
            with WsClient(tunnel_url(b.ws_port, {"token": shared.token}), timeout=20) as v:  # type: ignore[attr-defined]
                assert v.wait_id(timeout=20) == on_a

            with pytest.raises(grpc.RpcError) as err:
                stub.GetSession(pb.GetSessionRequest(id="$nope"), metadata=AUTH, timeout=20)
            assert err.value.code() is grpc.StatusCode.NOT_FOUND

            done = stub.TerminateSession(
                pb.TerminateSessionRequest(id=on_a, reason="Bye from B.", status=0x020B),
                metadata=AUTH,
                timeout=20,
            )
            assert done.users >= 1
            tail = owner.read_until_eof(timeout=20)
            assert ("error", "Bye from B.", str(0x020B)) in tail
            wait_for("A's session gone from the list", lambda: on_a not in _list(stub))
            assert on_b in _list(stub)
        mine.close()


def _list(stub: control_pb2_grpc.ControlStub) -> set[str]:
    try:
        reply = stub.ListSessions(pb.ListSessionsRequest(), metadata=AUTH, timeout=10)
    except grpc.RpcError:
        return set()
    return {s.id for s in reply.sessions}


def _entry(stub: control_pb2_grpc.ControlStub, conn_id: str) -> pb.Session:
    reply = stub.ListSessions(pb.ListSessionsRequest(), metadata=AUTH, timeout=10)
    return next(s for s in reply.sessions if s.id == conn_id)
