"""The owner of a session sees a relayed joiner's real address, and nobody can fake one.

Loopback has many addresses: the instances listen and advertise on 127.0.0.1, a
"remote" client connects from 127.0.0.2 (another host, as far as guacr can tell), an
operator's load balancer from 127.0.0.3. B relays the joiner to A with a PROXY
protocol v2 header; A believes it because B is a registered instance. The same header
sent by the client itself is refused; sent by a configured ``proxy_protocol_trusted``
peer (HAProxy's ``send-proxy-v2``) it is believed.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import grpc
from guacr_process import Client, Guacr
from servers.redis import RedisServer

from cluster.conftest import instance, wait_for
from cluster.test_cluster import echoed, published
from cluster.test_cluster_grpc import AUTH, grpc_env, stub_for
from guacr.control.v1 import control_pb2 as pb
from guacr.server.proxy_header import encode as proxy_v2


def client_from(source: str, g: Guacr) -> Client:
    sock = socket.create_connection(("127.0.0.1", g.port), timeout=20, source_address=(source, 0))
    return Client(g.port, 20, sock=sock)


def users_seen(redis: RedisServer, conn_id: str) -> list[str]:
    """The user addresses the owner published for ``conn_id`` (its ListSessions view)."""
    raw = redis.command("GET", f"guacr:c:{conn_id}")
    record = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    return [str(user[2]) for user in record["u"]]


def session_remote(redis: RedisServer, conn_id: str) -> str:
    raw = redis.command("GET", f"guacr:c:{conn_id}")
    return str(json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))["r"])


def test_owner_sees_the_relayed_joiners_address(tmp_path: Path, redis_server: RedisServer) -> None:
    for name in "ab":
        (tmp_path / name).mkdir()
    env_a = {"GUACR_PROXY_PROTOCOL_TRUSTED": "127.0.0.3", **grpc_env()}
    with (
        instance(tmp_path / "a", redis_server, env=env_a) as a,
        instance(tmp_path / "b", redis_server) as b,
    ):
        owner = a.client(timeout=20)
        conn_id = owner.handshake("echo")
        wait_for("the connection in the registry", lambda: published(redis_server, conn_id))

        joiner = client_from("127.0.0.2", b)
        port = joiner.sock.getsockname()[1]
        assert joiner.handshake(conn_id) == conn_id
        assert joiner.owner_pid() in a.worker_pids()
        wait_for(
            "A to publish the joiner's own address",
            lambda: sorted(users_seen(redis_server, conn_id)) == ["127.0.0.1", "127.0.0.2"],
        )
        assert f"Client 127.0.0.2:{port}, relayed by 127.0.0.1 (PROXY protocol)" in a.log()
        # A's own record of the joiner (its GetSession, ListSessions) has its port too.
        joined = session_via_grpc(a, env_a, conn_id, users=2)
        assert [(u.address, u.port) for u in joined.users if not u.owner] == [("127.0.0.2", port)]
        joiner.send("key", 80, 1)
        assert echoed(owner, "key 80 1") == ["key 80 1"]

        # The client itself claims another address: refused, A's users unchanged.
        liar = client_from("127.0.0.2", a)
        liar.send_raw(proxy_v2(("10.9.8.7", 1234), ("127.0.0.1", a.port)))
        liar.send("select", conn_id)
        assert liar.read_until_eof(timeout=20) == [
            ("error", "PROXY protocol header from an untrusted peer.", "768"),
            ("disconnect",),
        ]
        assert "Refused a PROXY protocol header from 127.0.0.2" in a.log()
        assert "10.9.8.7" not in json.dumps(users_seen(redis_server, conn_id))
        joiner.send("key", 81, 1)  # nobody else was affected
        assert echoed(owner, "key 81 1") == ["key 81 1"]

        # An operator's load balancer (proxy_protocol_trusted) is believed, for a new
        # session as for a join; a malformed header from it is refused with 768.
        balanced = client_from("127.0.0.3", a)
        balanced.send_raw(proxy_v2(("198.51.100.9", 50000), ("127.0.0.1", a.port)))
        new_id = balanced.handshake("echo")
        wait_for("the new session published", lambda: published(redis_server, new_id))
        assert session_remote(redis_server, new_id) == "198.51.100.9"
        assert "Client 198.51.100.9:50000, relayed by 127.0.0.3" in a.log()
        created = session_via_grpc(a, env_a, new_id, users=1)
        assert [(u.address, u.port, u.owner) for u in created.users] == [
            ("198.51.100.9", 50000, True)
        ]
        broken = client_from("127.0.0.3", a)
        broken.send_raw(proxy_v2(("198.51.100.9", 1), ("127.0.0.1", 1))[:14] + b"\xff\xff")
        assert broken.read_until_eof(timeout=20)[0][2] == "768"
        assert re.search(r"Bad PROXY protocol header from 127\.0\.0\.3: .*too long", a.log())
        for u in (owner, joiner, liar, balanced, broken):
            u.close()


def session_via_grpc(g: Guacr, env: dict[str, str], conn_id: str, users: int) -> Any:
    """``g``'s GetSession for ``conn_id`` once it lists ``users`` users (gRPC may come up
    a moment after the workers)."""

    def get() -> Any:
        try:
            got = stub.GetSession(pb.GetSessionRequest(id=conn_id), metadata=AUTH, timeout=20)
        except grpc.RpcError:
            return None
        return got if len(got.users) == users else None

    channel, stub = stub_for(g, env)
    with channel:
        return wait_for(f"GetSession of {conn_id} with {users} users", get)
