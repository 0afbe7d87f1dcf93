"""The shared session registry: several guacr instances behind one address (Redis).

With ``registry_url`` set, the listener's :class:`RedisRegistry` is still its own
in-memory :class:`~guacr.server.registry.LocalRegistry` (routing to its workers stays
synchronous and never waits on the network) that also publishes the connections this
instance owns to Redis, so another instance can find their owner:

* ``guacr:i:<instance>`` - this instance (its ``advertise_address``), with a lease;
* ``guacr:c:<$id>`` - one connection: the owning instance, its address and a summary
  for ``ListSessions``, with the same lease;
* ``guacr:t:<token id>`` - a spent guacr token (``SET NX PX``, until it expires).

Every ``registry_lease_s / 3`` the listener re-writes all its keys (one pipeline), so a
key outlives its instance by at most one lease, and a Redis that restarted empty is
filled again within a third of one. A change (connection opened, ended, joined) is
written at once. While Redis is unreachable the instance serves its own sessions as
before, answers ids it does not own with 516 and says so once in the log; it logs
again when Redis is back.

The URL's password never reaches a log line: :func:`redact` is what logs show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from guacr.server.registry import ConnectionRecord, LocalRegistry

log = logging.getLogger("guacr.registry")

PREFIX = "guacr:"
INSTANCE = PREFIX + "i:"
CONNECTION = PREFIX + "c:"
TOKEN = PREFIX + "t:"
SCHEMES = ("redis", "rediss")
LOOKUP_RETRIES = 3  # a join may race its owner's first write by a few milliseconds
LOOKUP_RETRY_DELAY = 0.1
RETRY_DELAY = 1.0  # between attempts while Redis is unreachable


class RegistryDown(Exception):
    """The shared registry cannot be reached now."""


def check_url(url: str) -> str:
    """'' if ``url`` is a usable Redis URL, else the reason (never showing the URL)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "registry_url: not a valid URL"
    if parts.scheme not in SCHEMES:
        return "registry_url: want a redis:// or rediss:// URL"
    if not parts.hostname:
        return "registry_url: no host in the URL"
    return ""


def redact(url: str) -> str:
    """``url`` as logs may show it: scheme, user, host, port and database, no password."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{parts.hostname}{port}{parts.path}"


def advertised(address: str, bind_host: str, bind_port: int) -> str:
    """Where other instances reach this one's 4822 door: ``advertise_address``, else
    the bind address, else (bound to every address) this host name's address."""
    if address:
        return address if ":" in address.rsplit("]", 1)[-1] else f"{address}:{bind_port}"
    host = bind_host
    if host in ("", "0.0.0.0", "::", "*"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    return f"[{host}]:{bind_port}" if ":" in host else f"{host}:{bind_port}"


def split_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Owner:
    """The instance that owns a connection, as the shared registry says."""

    instance: str
    address: str
    record: dict[str, Any]


def connect(url: str, socket_timeout: float = 3.0) -> aioredis.Redis:
    """A client that fails fast: a registry that does not answer is a registry down."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=socket_timeout,
        retry_on_timeout=False,
    )
    return client


class RedisRegistry(LocalRegistry):
    """The listener's registry, with its own connections published to Redis."""

    def __init__(
        self,
        url: str,
        lease: float,
        address: str,
        instance: str | None = None,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.lease = lease
        self.address = address
        self.instance = instance or uuid.uuid4().hex
        self.client = client or connect(url)
        self.up = True  # last we knew; logged on every change
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._wake = asyncio.Event()
        self._closing = False

    # Registry: changes are noted here and written by run() --------------------------
    def _changed(self, conn_id: str) -> None:
        if conn_id:
            self._dirty.add(conn_id)
            self._wake.set()

    def add_connection(self, conn: ConnectionRecord) -> None:
        super().add_connection(conn)
        self._gone.discard(conn.id)
        self._changed(conn.id)

    def remove_connection(self, conn_id: str) -> None:
        if self.connection(conn_id) is not None:
            self._dirty.discard(conn_id)
            self._gone.add(conn_id)
            self._wake.set()
        super().remove_connection(conn_id)

    def join(self, user_id: str, connection: str, owner: bool, name: str) -> None:
        super().join(user_id, connection, owner, name)
        self._changed(connection)

    def remove_user(self, user_id: str) -> None:
        user = self.user(user_id)
        super().remove_user(user_id)
        if user is not None and self.connection(user.connection) is not None:
            self._changed(user.connection)

    def drop_worker(self, worker: int) -> None:
        for conn in self.connections():
            if conn.worker == worker:
                self._dirty.discard(conn.id)
                self._gone.add(conn.id)
        self._wake.set()
        super().drop_worker(worker)

    # What is published --------------------------------------------------------------
    def summary(self, conn: ConnectionRecord) -> str:
        """A connection's value in Redis: owner and what ListSessions shows of it."""
        users = []
        for user_id in conn.users:
            user = self.user(user_id)
            if user is not None:
                users.append([user.id, user.name, user.remote, user.owner, user.since, user.door])
        return json.dumps(
            {
                "i": self.instance,
                "a": self.address,
                "p": conn.protocol,
                "o": conn.owner,
                "r": conn.remote,
                "s": conn.started,
                "w": conn.worker,
                "bi": conn.bytes_in,
                "bo": conn.bytes_out,
                "u": users,
            },
            separators=(",", ":"),
        )

    def _instance_value(self) -> str:
        return json.dumps({"a": self.address, "pid": os.getpid(), "t": time.time()})

    async def _write(self, everything: bool) -> None:
        """Publish changes (or, on a renewal, every key) in one round trip."""
        px = max(1, int(self.lease * 1000))
        dirty = set(self.connection_ids()) if everything else self._dirty
        gone = self._gone
        self._dirty, self._gone = set(), set()
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(INSTANCE + self.instance, self._instance_value(), px=px)
                for conn_id in dirty:
                    conn = self.connection(conn_id)
                    if conn is not None:
                        pipe.set(CONNECTION + conn_id, self.summary(conn), px=px)
                for conn_id in gone:
                    pipe.delete(CONNECTION + conn_id)
                await pipe.execute()
        except BaseException:
            self._dirty |= dirty  # written again on the next attempt
            self._gone |= gone - set(self.connection_ids())
            raise

    def connection_ids(self) -> Iterable[str]:
        return [c.id for c in self.connections()]

    def _mark(self, up: bool, exc: BaseException | None = None) -> None:
        if up and not self.up:
            log.info("Shared registry %s is reachable again", redact(self.url))
        elif not up and self.up:
            log.error(
                "Shared registry %s is unreachable (%s): serving this instance's own "
                "sessions only; joins of other instances' sessions get 516 until it is back",
                redact(self.url),
                _reason(exc),
            )
        self.up = up

    async def run(self) -> None:
        """Keep this instance's keys in Redis until :meth:`close`."""
        renew = self.lease / 3
        loop = asyncio.get_running_loop()
        next_renewal = 0.0
        while not self._closing:
            everything = loop.time() >= next_renewal or not self.up
            try:
                await self._write(everything)
            except (RedisError, OSError) as exc:
                self._mark(False, exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            self._mark(True)
            if everything:
                next_renewal = loop.time() + renew
            self._wake.clear()
            if self._dirty or self._gone:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_renewal - loop.time()))

    async def close(self) -> None:
        """Stop renewing and take this instance's keys out (a clean stop)."""
        self._closing = True
        self._wake.set()
        with contextlib.suppress(RedisError, OSError):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.delete(INSTANCE + self.instance)
                for conn_id in self.connection_ids():
                    pipe.delete(CONNECTION + conn_id)
                await pipe.execute()
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()

    # Questions about other instances ------------------------------------------------
    async def owner(self, conn_id: str) -> Owner | None:
        """Who owns ``conn_id`` (None: nobody); :class:`RegistryDown` if unreachable."""
        for attempt in range(LOOKUP_RETRIES):
            try:
                raw = await self.client.get(CONNECTION + conn_id)
            except (RedisError, OSError) as exc:
                self._mark(False, exc)
                raise RegistryDown(_reason(exc)) from None
            if raw is not None:
                try:
                    record = json.loads(raw)
                    return Owner(str(record["i"]), str(record["a"]), record)
                except (ValueError, KeyError, TypeError):
                    log.warning("Malformed registry entry for %s", conn_id[:64])
                    return None
            if attempt + 1 < LOOKUP_RETRIES:
                await asyncio.sleep(LOOKUP_RETRY_DELAY)
        return None

    async def instance_hosts(self) -> set[str]:
        """The hosts of every registered instance's ``advertise_address`` (the peers
        whose PROXY protocol headers are believed, guacr.server.proxied)."""
        hosts = {split_address(self.address)[0]}
        try:
            keys = [k async for k in self.client.scan_iter(INSTANCE + "*", count=500)]
            values = await self.client.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            self._mark(False, exc)
            raise RegistryDown(_reason(exc)) from None
        for raw in values:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                hosts.add(split_address(str(json.loads(str(raw))["a"]))[0])
        return hosts

    async def others(self) -> list[Owner]:
        """Every connection other instances own (for ListSessions)."""
        out: list[Owner] = []
        try:
            keys = [k async for k in self.client.scan_iter(CONNECTION + "*", count=500)]
            for start in range(0, len(keys), 500):
                values = await self.client.mget(keys[start : start + 500])
                for key, raw in zip(keys[start : start + 500], values, strict=True):
                    if raw is None:
                        continue
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        record = json.loads(raw)
                        if record["i"] != self.instance:
                            record["id"] = key[len(CONNECTION) :]
                            out.append(Owner(str(record["i"]), str(record["a"]), record))
        except (RedisError, OSError) as exc:
            self._mark(False, exc)
            raise RegistryDown(_reason(exc)) from None
        return out


class RedisRedemptions:
    """guacr tokens spent once across every instance: ``SET guacr:t:<id> NX PX``.

    Implements :class:`~guacr.tunnel.tokens.RedemptionStore`. While Redis is
    unreachable a token is refused (it could not be proven unspent elsewhere).
    """

    def __init__(self, registry: RedisRegistry) -> None:
        self.registry = registry

    async def redeem(self, token_id: str, expires: float) -> bool:
        """True only the first time any instance redeems ``token_id``."""
        px = max(1, int((expires - time.time()) * 1000) + 1000)
        try:
            done = await self.registry.client.set(TOKEN + token_id, "1", nx=True, px=px)
        except (RedisError, OSError) as exc:
            self.registry._mark(False, exc)
            log.warning("guacr token refused: the shared registry is unreachable")
            return False
        return bool(done)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
