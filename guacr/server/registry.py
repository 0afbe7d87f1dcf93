"""The session registry: every user and connection the listener knows, with metadata.

The listener routes joins by it (``$id`` -> worker), places new users by it (a
worker's load is the number of its users in the registry: a count, never a running
sum, so it cannot drift), and later doors and services read it (gRPC lists sessions,
several instances share it). :class:`Registry` is the interface; :class:`LocalRegistry`
keeps it in the listener's memory. A shared one (Redis, ``registry_url``) implements
the same interface.

Users enter when the listener hands them to a worker (their handshake not done yet)
and leave when the worker reports them gone; a worker that dies takes all of its
users and connections out at once (:meth:`Registry.drop_worker`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class UserRecord:
    """One client handed to a worker."""

    id: str
    worker: int
    door: str = "tcp"
    remote: str = ""
    connection: str = ""  # empty while in its handshake
    owner: bool = False
    name: str = ""
    since: float = field(default_factory=time.time)


@dataclass
class ConnectionRecord:
    """One remote-desktop connection (``$id``)."""

    id: str
    worker: int
    protocol: str = ""
    owner: str = ""  # user id
    remote: str = ""  # the owner's client address
    started: float = field(default_factory=time.time)
    users: list[str] = field(default_factory=list)
    bytes_in: int = 0  # from its users' clients
    bytes_out: int = 0  # to its users' clients


class Registry(Protocol):
    """What the listener needs of a session registry."""

    def add_user(self, user: UserRecord) -> None:
        """A user was handed to ``user.worker``."""

    def join(self, user_id: str, connection: str, owner: bool, name: str) -> None:
        """A user finished its handshake into ``connection``."""

    def remove_user(self, user_id: str) -> None:
        """A user is gone (no-op if unknown)."""

    def user(self, user_id: str) -> UserRecord | None:
        """One user, if known."""

    def add_connection(self, conn: ConnectionRecord) -> None:
        """A connection opened on ``conn.worker``."""

    def remove_connection(self, conn_id: str) -> None:
        """A connection ended (no-op if unknown)."""

    def connection(self, conn_id: str) -> ConnectionRecord | None:
        """One connection, if known."""

    def connections(self) -> Iterable[ConnectionRecord]:
        """Every connection."""

    def count_bytes(self, conn_id: str, bytes_in: int, bytes_out: int) -> None:
        """A connection's byte counters (totals so far)."""

    def load(self, worker: int) -> int:
        """Users on ``worker`` (in a handshake or connected)."""

    def drop_worker(self, worker: int) -> None:
        """A worker is gone: forget all its users and connections."""


class LocalRegistry:
    """:class:`Registry` in the listener's memory."""

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self._connections: dict[str, ConnectionRecord] = {}
        self._load: Counter[int] = Counter()

    def add_user(self, user: UserRecord) -> None:
        old = self._users.get(user.id)
        if old is not None:
            self.remove_user(old.id)
        self._users[user.id] = user
        self._load[user.worker] += 1

    def join(self, user_id: str, connection: str, owner: bool, name: str) -> None:
        user = self._users.get(user_id)
        if user is None:
            return
        user.connection, user.owner, user.name = connection, owner, name
        conn = self._connections.get(connection)
        if conn is not None and user_id not in conn.users:
            conn.users.append(user_id)

    def remove_user(self, user_id: str) -> None:
        user = self._users.pop(user_id, None)
        if user is None:
            return
        self._load[user.worker] -= 1
        if self._load[user.worker] <= 0:
            del self._load[user.worker]
        conn = self._connections.get(user.connection)
        if conn is not None and user_id in conn.users:
            conn.users.remove(user_id)

    def user(self, user_id: str) -> UserRecord | None:
        return self._users.get(user_id)

    def add_connection(self, conn: ConnectionRecord) -> None:
        self._connections[conn.id] = conn
        owner = self._users.get(conn.owner)
        if owner is not None and conn.owner not in conn.users:
            conn.users.append(conn.owner)

    def remove_connection(self, conn_id: str) -> None:
        self._connections.pop(conn_id, None)

    def connection(self, conn_id: str) -> ConnectionRecord | None:
        return self._connections.get(conn_id)

    def connections(self) -> Iterable[ConnectionRecord]:
        return list(self._connections.values())

    def count_bytes(self, conn_id: str, bytes_in: int, bytes_out: int) -> None:
        conn = self._connections.get(conn_id)
        if conn is not None:
            conn.bytes_in, conn.bytes_out = bytes_in, bytes_out

    def load(self, worker: int) -> int:
        return self._load.get(worker, 0)

    def drop_worker(self, worker: int) -> None:
        for user_id in [u.id for u in self._users.values() if u.worker == worker]:
            self.remove_user(user_id)
        for conn_id in [c.id for c in self._connections.values() if c.worker == worker]:
            del self._connections[conn_id]
        self._load.pop(worker, None)
