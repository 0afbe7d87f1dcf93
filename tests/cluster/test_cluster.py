"""Three guacr instances behind "one address", sharing a real redis-server.

Each instance is a whole daemon (main process, listener, one worker) on its own
loopback port; clients pick an instance as a load balancer would. The main join test
is a real SSH session against the test sshd, its screens read back as a browser would
draw them; the others use the test echo handler (what reaches it comes back to every
user as ``name`` instructions), which is quicker to start and to read.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from guacr_process import ECHO, Client, Guacr
from servers import SSHServer
from servers.redis import RedisServer
from ssh.ssh_helpers import HANDLERS as SSH_HANDLER
from ssh.ssh_helpers import TermClient, ssh_values
from websocket.wsclient import WsClient, tunnel_url

from cluster.conftest import LEASE, TOKEN_KEY, instance, wait_for
from guacr.tunnel.tokens import GuacrTokens


def kill9(g: Guacr) -> None:
    """``kill -9`` a whole instance: main process, listener and workers."""
    pids = [g.proc.pid, g.listener_pid(), *g.worker_pids()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    g.proc.wait(10)


def echoed(client: Client, marker: str) -> list[str]:
    """The ``name`` texts a user sees up to ``marker`` (its screen, for the echo handler)."""
    return [n for n in client.names_until(marker, timeout=20) if not n.startswith("joined")]


def join(g: Guacr, conn_id: str, read_only: bool = False) -> Client:
    c = g.client(timeout=20)
    assert c.handshake(conn_id, {"read-only": "true" if read_only else ""}) == conn_id
    assert c.owner_pid() > 0  # the owner's worker greets every user
    return c


def published(redis: RedisServer, conn_id: str) -> bool:
    return f"guacr:c:{conn_id}" in redis.find_keys("guacr:c:*")


def ssh_join(g: Guacr, conn_id: str, read_only: bool = False) -> TermClient:
    client = g.client(timeout=20)
    assert client.handshake(conn_id, {"read-only": "true" if read_only else ""}) == conn_id
    term = TermClient(client)
    term.connection_id = conn_id
    return term


def ended_by_b(term: TermClient) -> None:
    """The relayed user's connection ends (EOF, or a reset: B's sockets died with it)."""
    try:
        term.wait(lambda: term.eof, timeout=20, what="the relayed user's connection to end")
    except ConnectionError:  # reset, or a broken pipe answering a sync
        pass


def test_ssh_session_on_a_joined_through_b_and_c(
    tmp_path: Path, redis_server: RedisServer, sshd: SSHServer
) -> None:
    """A real SSH session opened on A, joined read-only through B and fully through C:
    every user sees the same terminal; ``kill -9`` of B ends only the user it relayed."""
    for name in "abc":
        (tmp_path / name).mkdir()
    ssh = f"{ECHO},{SSH_HANDLER}"
    with (
        instance(tmp_path / "a", redis_server, handlers=ssh) as a,
        instance(tmp_path / "b", redis_server, handlers=ssh) as b,
        instance(tmp_path / "c", redis_server, handlers=ssh) as c,
    ):
        owner = TermClient(a.client(timeout=20))
        conn_id = owner.client.handshake("ssh", ssh_values(sshd), size=(800, 480, 96))
        owner.wait_text("guest@", timeout=30)
        owner.run("clear; echo OPENED-ON-A")
        owner.wait_text("OPENED-ON-A\nguest@", timeout=20)
        wait_for("the connection in the registry", lambda: published(redis_server, conn_id))

        viewer = ssh_join(b, conn_id, read_only=True)
        helper = ssh_join(c, conn_id)
        for term in (viewer, helper):  # each joiner gets the screen as it is at once
            term.wait_text("OPENED-ON-A", timeout=20)
        assert "Joining connection" in b.log() and "Joining connection" in c.log()
        assert "Joining connection" not in a.log()  # A serves its own session

        viewer.type("echo VIEWER-TYPED", enter=True)  # read-only: dropped by A
        helper.run("echo HELPER-$((6*7))")  # the shell computes it: really on the server
        for term in (owner, viewer, helper):
            term.wait_text("HELPER-42\nguest@", timeout=20)
        screens = [term.screen() for term in (owner, viewer, helper)]
        assert screens[0] == screens[1] == screens[2], "\n".join(
            t.dump() for t in (owner, viewer, helper)
        )
        assert "VIEWER-TYPED" not in owner.text()

        kill9(b)
        ended_by_b(viewer)
        owner.run("echo AFTER-B-DIED")
        for term in (owner, helper):
            term.wait_text("AFTER-B-DIED\nguest@", timeout=20)
        late = ssh_join(c, conn_id)  # a new join still works through the survivor
        late.wait_text("AFTER-B-DIED", timeout=20)
        helper.run("echo STILL-SHARED")
        for term in (owner, helper, late):
            term.wait_text("STILL-SHARED\nguest@", timeout=20)
        assert not owner.errors and not helper.errors and not late.errors
        for term in (owner, helper, late, viewer):
            term.client.close()
        for g in (a, c):
            assert redis_server.password not in g.log()
            assert sshd.password not in g.log()


def test_kill9_of_the_owner_ends_only_its_sessions(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    for name in "ab":
        (tmp_path / name).mkdir()
    with instance(tmp_path / "a", redis_server) as a, instance(tmp_path / "b", redis_server) as b:
        on_a = a.client(timeout=20)
        id_a = on_a.handshake("echo")
        on_b = b.client(timeout=20)
        id_b = on_b.handshake("echo")
        wait_for("both connections published", lambda: published(redis_server, id_a))
        wait_for("both connections published", lambda: published(redis_server, id_b))
        relayed = join(b, id_a)
        a_instance = [k for k in redis_server.find_keys("guacr:i:*")]
        assert len(a_instance) == 2

        kill9(a)
        assert relayed.read_until_eof(timeout=20) is not None
        on_b.send("key", 70, 1)  # B's own session carries on
        assert echoed(on_b, "key 70 1") == ["key 70 1"]

        # A's entries outlive it by at most one lease; B's stay (renewed).
        wait_for(
            "A's registry entries to expire",
            lambda: (
                not published(redis_server, id_a) and len(redis_server.find_keys("guacr:i:*")) == 1
            ),
            timeout=LEASE * 10 + 20,
        )
        time.sleep(LEASE)  # a lease later B's entry is still renewed
        assert published(redis_server, id_b)
        stray = b.client(timeout=20)
        stray.send("select", id_a)
        assert stray.read_until_eof(timeout=20) == [
            ("error", "No such connection.", "516"),
            ("disconnect",),
        ]
        on_b.close()


def ws_names_until(client: WsClient, marker: str) -> list[str]:
    names: list[str] = []
    deadline = time.monotonic() + 20
    while not names or names[-1] != marker:
        ins = client.read(max(0.01, deadline - time.monotonic()))
        assert ins is not None, f"tunnel closed before {marker!r}: {names}"
        if ins[0] == "name":
            names.append(ins[1])
    return [n for n in names if not n.startswith("joined")]


def test_token_minted_on_a_is_redeemed_once_across_instances(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A join token for A's session: redeemed through B (relayed to A, read-only),
    refused on C; a new-session token likewise works once, wherever it is used."""
    for name in "abc":
        (tmp_path / name).mkdir()
    with (
        instance(tmp_path / "a", redis_server, websocket=True) as a,
        instance(tmp_path / "b", redis_server, websocket=True) as b,
        instance(tmp_path / "c", redis_server, websocket=True) as c,
    ):
        owner = a.client(timeout=20)
        conn_id = owner.handshake("echo")
        wait_for("the connection in the registry", lambda: published(redis_server, conn_id))
        # What A's ShareSession mints (the instances share token_key).
        token = GuacrTokens(TOKEN_KEY).mint(join=conn_id, read_only=True, ttl=120)
        b_port, c_port = b.ws_port, c.ws_port  # type: ignore[attr-defined]
        with WsClient(tunnel_url(b_port, {"token": token}), timeout=20) as viewer:
            assert viewer.wait_id(timeout=20) == conn_id
            viewer.send("key", 65, 1)  # read-only: dropped by A's worker
            owner.send("key", 66, 1)
            assert ws_names_until(viewer, "key 66 1") == ["key 66 1"]
            assert echoed(owner, "key 66 1") == ["key 66 1"]
            with WsClient(tunnel_url(c_port, {"token": token}), timeout=20) as again:
                assert again.read_until_close(timeout=20) == [
                    ("error", "Token validation failed", "769")
                ]
            assert "already used" in c.log()
        # The spent token's id stays in Redis until the token would have expired anyway.
        assert redis_server.find_keys("guacr:t:*")

        fresh = GuacrTokens(TOKEN_KEY).mint(protocol="echo", ttl=120)
        with WsClient(tunnel_url(c_port, {"token": fresh}), timeout=20) as first:
            assert first.wait_id(timeout=20).startswith("$")
            with WsClient(tunnel_url(b_port, {"token": fresh}), timeout=20) as again:
                assert again.read_until_close(timeout=20)[0][2] == "769"
        owner.close()


def test_redis_down_keeps_own_sessions_and_answers_516(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    for name in "ab":
        (tmp_path / name).mkdir()
    with instance(tmp_path / "a", redis_server) as a, instance(tmp_path / "b", redis_server) as b:
        owner = a.client(timeout=20)
        conn_id = owner.handshake("echo")
        wait_for("the connection in the registry", lambda: published(redis_server, conn_id))

        redis_server.restart_stopped()
        owner.send("key", 71, 1)
        assert echoed(owner, "key 71 1") == ["key 71 1"]
        local = join(a, conn_id)  # a join of its own session needs no registry
        owner.send("key", 72, 1)
        assert echoed(local, "key 72 1") == ["key 72 1"]
        fresh = a.client(timeout=20)
        assert fresh.handshake("echo").startswith("$")  # new sessions still open
        remote = b.client(timeout=20)
        remote.send("select", conn_id)
        assert remote.read_until_eof(timeout=20) == [
            ("error", "No such connection.", "516"),
            ("disconnect",),
        ]
        wait_for("the outage logged", lambda: "is unreachable" in b.log())
        assert redis_server.password not in a.log() + b.log()

        # Redis comes back empty: A publishes its sessions again, joins relay again.
        redis_server.resume()
        wait_for("A to publish again", lambda: published(redis_server, conn_id))
        wait_for("the recovery logged", lambda: "reachable again" in a.log())
        relayed = join(b, conn_id)
        owner.send("key", 73, 1)
        assert echoed(relayed, "key 73 1") == ["key 73 1"]
        for u in (owner, local, fresh, relayed):
            u.close()
