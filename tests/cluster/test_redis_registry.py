"""guacr.server.redis_registry against a real redis-server, in-process."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from servers.redis import RedisServer

from guacr.config import Config, ConfigError
from guacr.server.cluster_control import LIST_TIMEOUT, ClusterBackend
from guacr.server.redis_registry import (
    RedisRedemptions,
    RedisRegistry,
    RegistryDown,
    advertised,
    check_url,
    redact,
)
from guacr.server.registry import ConnectionRecord, UserRecord


def test_redact_never_shows_the_password() -> None:
    assert redact("redis://:s3cret@redis:6379/0") == "redis://redis:6379/0"
    assert redact("rediss://app:s3cret@10.0.0.5:6380/2") == "rediss://app@10.0.0.5:6380/2"


def test_check_url() -> None:
    assert check_url("redis://h:6379/0") == ""
    assert check_url("rediss://:pw@h/1") == ""
    assert "redis:// or rediss://" in check_url("http://:pw@h/")
    assert "pw" not in check_url("http://:pw@h/")
    assert check_url("redis:///0") == "registry_url: no host in the URL"


def test_config_refuses_other_schemes_without_echoing_the_url() -> None:
    config = Config()
    config.set("registry_url", "memcached://:hunter2@h:11211")
    with pytest.raises(ConfigError) as err:
        config.check()
    assert "redis://" in str(err.value) and "hunter2" not in str(err.value)


def test_advertised_address() -> None:
    assert advertised("10.1.2.3:4822", "0.0.0.0", 4822) == "10.1.2.3:4822"
    assert advertised("10.1.2.3", "0.0.0.0", 4900) == "10.1.2.3:4900"
    assert advertised("", "127.0.0.1", 4822) == "127.0.0.1:4822"
    assert advertised("", "localhost", 4822) == "127.0.0.1:4822"
    host = advertised("", "0.0.0.0", 4822)
    assert host.endswith(":4822") and not host.startswith("0.0.0.0")


async def _until(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_connections_published_with_a_lease_and_removed(redis_server: RedisServer) -> None:
    reg = RedisRegistry(redis_server.url, lease=3.0, address="127.0.0.1:4822")
    task = asyncio.create_task(reg.run())
    try:
        reg.add_user(UserRecord("@u1", 0, remote="10.0.0.9"))
        reg.add_connection(ConnectionRecord("$c1", 0, protocol="ssh", owner="@u1"))
        reg.join("@u1", "$c1", True, "alice")
        key = "guacr:c:$c1"
        await _until(lambda: "alice" in str(redis_server.command("GET", key)))
        value = json.loads(str(redis_server.command("GET", key)))
        assert value["i"] == reg.instance and value["a"] == "127.0.0.1:4822"
        assert value["p"] == "ssh" and value["u"][0][:2] == ["@u1", "alice"]
        ttl = redis_server.command("PTTL", key)
        assert isinstance(ttl, int) and 0 < ttl <= 3000
        assert redis_server.find_keys("guacr:i:*") == [f"guacr:i:{reg.instance}"]

        other = RedisRegistry(redis_server.url, lease=3.0, address="127.0.0.1:5822")
        owner = await other.owner("$c1")
        assert owner is not None and owner.instance == reg.instance
        assert [o.record["id"] for o in await other.others()] == ["$c1"]
        assert await other.owner("$nobody") is None
        await other.close()

        reg.remove_connection("$c1")
        await _until(lambda: key not in redis_server.find_keys())
        # A renewal later the instance key is still there (renewed, not expired).
        await asyncio.sleep(3.5)
        assert redis_server.find_keys("guacr:i:*") == [f"guacr:i:{reg.instance}"]
    finally:
        task.cancel()
        await reg.close()
    assert redis_server.find_keys() == []


async def test_tokens_are_redeemed_once(redis_server: RedisServer) -> None:
    reg = RedisRegistry(redis_server.url, lease=3.0, address="127.0.0.1:4822")
    store = RedisRedemptions(reg)
    expires = time.time() + 30
    assert await store.redeem("tok-1", expires) is True
    elsewhere = RedisRegistry(redis_server.url, 3.0, "127.0.0.1:5822")
    assert await RedisRedemptions(elsewhere).redeem("tok-1", expires) is False
    await elsewhere.close()
    ttl = redis_server.command("PTTL", "guacr:t:tok-1")
    assert isinstance(ttl, int) and 25_000 < ttl <= 31_000
    redis_server.restart_stopped()
    assert await store.redeem("tok-2", expires) is False  # unprovable: refused
    with pytest.raises(RegistryDown):
        await reg.owner("$c1")
    await reg.close()


class _NoSessionsHere:
    """The local control backend of an instance with no sessions of its own."""

    events = None

    async def list_sessions(self) -> list[object]:
        return []


async def test_list_sessions_falls_back_to_the_registry_for_a_silent_instance(
    redis_server: RedisServer,
) -> None:
    """An owner that does not answer (hung, or just died) is listed as it last published
    itself, after LIST_TIMEOUT rather than failing the whole ListSessions."""
    silent = RedisRegistry(redis_server.url, lease=30.0, address="127.0.0.1:4822")
    task = asyncio.create_task(silent.run())  # publishes, never answers requests
    here = RedisRegistry(redis_server.url, lease=30.0, address="127.0.0.1:5822")
    backend = ClusterBackend(_NoSessionsHere(), here)  # type: ignore[arg-type]
    try:
        silent.add_user(UserRecord("@u1", 0, remote="10.0.0.9"))
        silent.add_connection(ConnectionRecord("$c9", 0, protocol="ssh", owner="@u1"))
        silent.join("@u1", "$c9", True, "alice")
        await _until(lambda: "alice" in str(redis_server.command("GET", "guacr:c:$c9")))
        started = time.monotonic()
        listed = await backend.list_sessions()
        assert time.monotonic() - started >= LIST_TIMEOUT * 0.9
        assert [(s.id, s.protocol, [u.name for u in s.users]) for s in listed] == [
            ("$c9", "ssh", ["alice"])
        ]
        assert listed[0].worker_pid == 0  # only the owner itself knows that
        assert listed[0].stale  # and the caller can tell such an entry from a live one
    finally:
        task.cancel()
        await silent.close()
        await backend.close()
        await here.close()
