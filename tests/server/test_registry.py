"""The in-process session registry: load is a count of users, metadata per connection."""

from __future__ import annotations

import random

from guacr.server.registry import ConnectionRecord, LocalRegistry, UserRecord


def test_load_is_a_count_that_cannot_drift() -> None:
    reg = LocalRegistry()
    rng = random.Random(7)
    live: dict[str, int] = {}
    for i in range(5000):
        if live and rng.random() < 0.5:
            uid = rng.choice(list(live))
            reg.remove_user(uid)
            reg.remove_user(uid)  # reported twice: still counted once
            del live[uid]
        else:
            uid, worker = f"@{i}", rng.randrange(3)
            reg.add_user(UserRecord(uid, worker))
            live[uid] = worker
    for worker in range(3):
        assert reg.load(worker) == sum(1 for w in live.values() if w == worker)


def test_connections_carry_metadata_users_and_bytes() -> None:
    reg = LocalRegistry()
    reg.add_user(UserRecord("@owner", 1, "tcp", "10.0.0.5"))
    reg.add_connection(ConnectionRecord("$c", 1, "ssh", "@owner", "10.0.0.5", started=100.0))
    reg.join("@owner", "$c", True, "alice")
    reg.add_user(UserRecord("@viewer", 1, "tls", "10.0.0.6"))
    reg.join("@viewer", "$c", False, "bob")
    reg.count_bytes("$c", 10, 2000)
    conn = reg.connection("$c")
    assert conn is not None
    assert (conn.protocol, conn.owner, conn.remote, conn.started, conn.worker) == (
        "ssh",
        "@owner",
        "10.0.0.5",
        100.0,
        1,
    )
    assert conn.users == ["@owner", "@viewer"] and (conn.bytes_in, conn.bytes_out) == (10, 2000)
    viewer = reg.user("@viewer")
    assert viewer is not None and (viewer.name, viewer.owner, viewer.door) == ("bob", False, "tls")
    reg.remove_user("@viewer")
    assert conn.users == ["@owner"] and reg.load(1) == 1


def test_a_dead_worker_takes_its_users_and_connections() -> None:
    reg = LocalRegistry()
    reg.add_user(UserRecord("@a", 0))
    reg.add_user(UserRecord("@b", 1))
    reg.add_connection(ConnectionRecord("$a", 0))
    reg.add_connection(ConnectionRecord("$b", 1))
    reg.drop_worker(0)
    assert reg.load(0) == 0 and reg.connection("$a") is None and reg.user("@a") is None
    assert reg.load(1) == 1 and reg.connection("$b") is not None
    assert [c.id for c in reg.connections()] == ["$b"]
