"""Instances whose 4822 doors speak TLS (-C/-K): joins relayed between them over TLS.

A, B and C share one CA-signed certificate, as pods of one Deployment share one
Secret. A and B trust the others by their own certificate (no setting), C by the CA
and the name in the certificate (``cluster_ca``, ``cluster_server_name``). D has a
certificate of its own that the others do not trust: A refuses to talk to it, and D
refuses A, so a join through D gets 516 and D's log says why.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from guacr_process import Client, Guacr
from servers.certs import make_server_tls
from servers.redis import RedisServer

from cluster.conftest import instance, wait_for
from cluster.test_cluster import echoed, published
from cluster.test_cluster_address import session_via_grpc
from cluster.test_cluster_grpc import grpc_env


class TlsClient(Client):
    """A Guacamole client over TLS, as guacamole-client's ``ssl`` option makes it."""

    def __init__(self, port: int, timeout: float = 20.0) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        plain = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        super().__init__(port, timeout, sock=ctx.wrap_socket(plain, server_hostname="localhost"))


def tls_join(g: Guacr, conn_id: str, read_only: bool = False) -> Client:
    c = TlsClient(g.port)
    assert c.handshake(conn_id, {"read-only": "true" if read_only else ""}) == conn_id
    assert c.owner_pid() > 0
    return c


def test_joins_relayed_between_tls_instances(tmp_path: Path, redis_server: RedisServer) -> None:
    tls = make_server_tls(tmp_path / "pki")
    other = make_server_tls(tmp_path / "other-pki")  # an unrelated CA and certificate
    door = ["-C", str(tls.cert), "-K", str(tls.key)]
    by_ca = {"GUACR_CLUSTER_CA": str(tls.ca), "GUACR_CLUSTER_SERVER_NAME": "localhost"}
    env_a = grpc_env()
    for name in "abcd":
        (tmp_path / name).mkdir()
    with (
        instance(tmp_path / "a", redis_server, extra=door, env=env_a) as a,
        instance(tmp_path / "b", redis_server, extra=door) as b,
        instance(tmp_path / "c", redis_server, extra=door, env=by_ca) as c,
        instance(tmp_path / "d", redis_server, extra=["-C", str(other.cert), "-K", str(other.key)]) as d,
    ):  # fmt: skip
        owner = TlsClient(a.port)
        conn_id = owner.handshake("echo")
        owner_pid = owner.owner_pid()
        wait_for("the connection in the registry", lambda: published(redis_server, conn_id))

        viewer = tls_join(b, conn_id, read_only=True)
        helper = tls_join(c, conn_id)
        assert owner_pid in a.worker_pids()
        assert "Joining connection" in b.log() and "Joining connection" in c.log()
        viewer.send("key", 65, 1)  # read-only: dropped by A's worker
        helper.send("key", 66, 1)
        assert echoed(helper, "key 66 1") == ["key 66 1"]  # A has it
        owner.send("key", 67, 1)
        screens = [echoed(u, "key 67 1") for u in (owner, viewer)]
        assert screens == [["key 66 1", "key 67 1"]] * 2
        assert echoed(helper, "key 67 1") == ["key 67 1"]
        # A knows each relayed joiner's own port (the relays' PROXY headers, past TLS).
        joined = session_via_grpc(a, env_a, conn_id, users=3)
        ports = sorted(u.port for u in joined.users if not u.owner)
        assert ports == sorted(c.sock.getsockname()[1] for c in (viewer, helper))

        # D's certificate is not A's: the relay's TLS handshake fails, the joiner gets
        # guacd's answer for an unknown connection, D's log names the reason.
        stray = TlsClient(d.port)
        stray.send("select", conn_id)
        assert stray.read_until_eof(timeout=20) == [
            ("error", "No such connection.", "516"),
            ("disconnect",),
        ]
        wait_for("the refusal logged", lambda: "certificate verify failed" in d.log())
        for u in (owner, viewer, helper, stray):
            u.close()
