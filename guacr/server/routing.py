"""Routing: which worker serves a client whose ``select`` is known (or not yet).

* ``select <protocol>`` goes to the least-loaded ready worker, its load being the
  number of its users in the registry;
* ``select $<id>`` goes to the worker owning connection ``$<id>`` in the registry, or
  gets ``error "No such connection." 516``;
* while draining, a new session gets ``error "Server is draining." 513``; joins of
  live sessions are still routed.

With no worker ready (start-up, or the only worker restarting) a client is held, up
to :data:`WORKER_WAIT`, instead of being refused: it gets ``args`` a little later
rather than ``513``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from guacr import handlers
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.server import channel, intake
from guacr.server.intake import error_bytes, refuse
from guacr.server.registry import Registry, UserRecord
from guacr.server.slots import Slot
from guacr.server.transport import peer_host

log = logging.getLogger("guacr.listener")

WORKER_WAIT = 10.0  # longest a client is held for a worker to become ready


def new_user_id() -> str:
    """A user id as guacd spells them (``@`` + UUID)."""
    return "@" + str(uuid.uuid4())


class Router:
    """Places users on workers and hands their sockets over."""

    def __init__(
        self,
        slots: list[Slot],
        registry: Registry,
        protocols: frozenset[str],
        drain: Callable[[], None],
    ) -> None:
        self.slots = slots
        self.registry = registry
        # Protocol names known to be installed. Rescanned (entry points: reading every
        # installed package's metadata) only for a name not known yet, so a handler
        # installed while guacr runs is still found.
        self.protocols = protocols
        self._drain = drain  # process reports already sent by workers
        self._ready = asyncio.Event()
        self.draining = False  # new sessions refused; joins of live ones still routed
        # Joins of ids no worker here owns (several instances: guacr.server.forward).
        self.forward: Callable[[int, str, bytes, str, int], None] | None = None
        self.forwarder: Any = None  # the same, for WebSocket tunnels (ws_door)

    # Workers -----------------------------------------------------------------------
    def worker_ready(self) -> None:
        """Some worker became ready: release held clients."""
        self._ready.set()

    def least_loaded(self) -> Slot | None:
        """The ready worker with the fewest users (None if none is ready)."""
        ready = [s for s in self.slots if s.ready and s.chan is not None]
        return min(ready, key=lambda s: self.registry.load(s.index)) if ready else None

    async def wait_for_worker(self, timeout: float = WORKER_WAIT) -> Slot | None:
        """The least-loaded ready worker, waiting up to ``timeout`` for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (slot := self.least_loaded()) is None:
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), left)
        return slot

    def owner_of(self, conn_id: str) -> Slot | None:
        """The ready worker owning ``conn_id``, draining reports once on a miss.

        A worker reports a connection before its client can see the id in ``ready``,
        so after draining, an id missing here really is unknown.
        """
        record = self.registry.connection(conn_id)
        if record is None:
            self._drain()
            record = self.registry.connection(conn_id)
        if record is None or not 0 <= record.worker < len(self.slots):
            return None
        slot = self.slots[record.worker]
        return slot if slot.ready else None

    # Hand-off ------------------------------------------------------------------------
    def handoff(
        self,
        slot: Slot,
        fd: int,
        target: str,
        pending: bytes,
        door: str,
        remote: str,
        tunnel: dict[str, Any] | None = None,
        port: int = 0,
    ) -> str:
        """Pass a client's descriptor to ``slot``'s worker, counting it there; the id of
        the new user ('' when the worker could not be reached). ``port``: the client's,
        when a trusted relay named it (0: the socket's peer is the client)."""
        user = new_user_id()
        msg = channel.Handoff(
            user, target, channel.pack_bytes(pending), door, remote, tunnel or {}, port
        )
        # Counted before sending: the worker may report the user gone at once.
        self.registry.add_user(UserRecord(user, slot.index, door, remote))
        if not slot.send(msg, [fd]):
            self.registry.remove_user(user)
            return ""
        return user

    def relay_via_worker(
        self,
        sock: socket.socket,
        target: str,
        pending: bytes,
        remote: str,
        address: str,
        port: int = 0,
    ) -> bool:
        """Hand a join of another instance's connection to the least-loaded worker to
        relay to ``address`` (guacr.server.forward); False if no worker took it."""
        slot = self.least_loaded()
        if slot is None:
            return False
        user = new_user_id()
        msg = channel.Relay(user, target, channel.pack_bytes(pending), remote, address, port)
        self.registry.add_user(UserRecord(user, slot.index, "tcp", remote))
        if not slot.send(msg, [sock.fileno()]):
            self.registry.remove_user(user)
            return False
        sock.close()
        return True

    async def route(
        self,
        sock: socket.socket,
        target: str,
        pending: bytes,
        door: str,
        remote: str = "",
        port: int = 0,
    ) -> None:
        """Send a client whose ``select`` was read to the right worker (``remote`` and
        ``port``: its address as a trusted relay said, else the socket's peer)."""
        remote = remote or peer_host(sock)
        if target.startswith("$"):
            self.route_join(sock.detach(), target, pending, remote, port)
            return
        if target not in self.protocols:
            self.protocols = frozenset(handlers.available())
        if target not in self.protocols:
            log.info('Support for protocol "%s" is not installed', target[:64])
            await refuse(
                sock, GuacrError(f'Protocol "{target[:64]}" is not supported.', Status.UNSUPPORTED)
            )
            return
        if self.draining:
            log.info('Refusing a new "%s" session: draining', target[:64])
            await refuse(sock, GuacrError("Server is draining.", Status.SERVER_BUSY))
            return
        await self.place(sock, target, pending, door, remote, port)

    async def place(
        self,
        sock: socket.socket,
        target: str,
        pending: bytes,
        door: str,
        remote: str,
        port: int = 0,
    ) -> None:
        """Hand a new user to the least-loaded worker, waiting for one if none is ready."""
        # Reports are read one per loop pass: users that left a moment ago (their
        # ``UserLeft`` already sent) would otherwise still weigh on their worker.
        self._drain()
        slot = await self.wait_for_worker()
        if slot is None:
            await refuse(sock, GuacrError("No worker is available.", Status.SERVER_BUSY))
            return
        fd = sock.detach()
        if not self.handoff(slot, fd, target, pending, door, remote, port=port):
            with socket.socket(fileno=fd) as s:
                reply_error(s, GuacrError("Internal server error.", Status.SERVER_ERROR))
            return
        os.close(fd)

    def route_join(self, fd: int, target: str, pending: bytes, remote: str, port: int = 0) -> None:
        """Hand a join (``select $id``) to the worker owning the connection."""
        slot = self.owner_of(target)
        if slot is None and self.forward is not None:
            self.forward(fd, target, pending, remote, port)  # takes the descriptor over
            return
        if slot is None or not self.handoff(slot, fd, target, pending, "tcp", remote, port=port):
            with socket.socket(fileno=fd) as s:
                reply_error(s, GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND))
            log.info('Connection "%s" does not exist.', target[:64])
            return
        os.close(fd)


def reply_error(sock: socket.socket, error: GuacrError) -> None:
    """Send ``error`` + ``disconnect`` on a socket the listener owns, then close it."""
    if intake.refused_hook is not None:
        intake.refused_hook(int(error.status))
    try:
        sock.setblocking(True)
        sock.settimeout(1.0)
        sock.sendall(error_bytes(error))
    except OSError:
        pass
    finally:
        sock.close()
