"""TLS on 4822: the worker terminates TLS, then reads ``select``.

A TLS session cannot move between processes, so the listener gives the raw socket to
a worker first (see guacr.server.supervisor). After the handshake this intake reads
``select``:

* a protocol name, or a join of a connection this worker owns: the socket stays here
  and the TLS transport is switched over to a normal :class:`User`;
* a join of a connection owned by another worker: a socketpair is made, one end goes
  back to the listener (``forward``) to be routed like any join, and this worker
  pumps bytes between the TLS session and the other end.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, cast

from guacr.errors import GuacrError
from guacr.protocol import builders as b
from guacr.protocol.handshake import parse_select
from guacr.protocol.parser import Parser
from guacr.server.supervisor import SELECT_TIMEOUT, ins_bytes
from guacr.server.user import User

if TYPE_CHECKING:
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.tls")


class _Intake(asyncio.Protocol):
    """Reads ``select`` through TLS, then hands the transport over."""

    def __init__(self, owner: TlsIntake) -> None:
        self.owner = owner
        self.parser = Parser()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.timer = asyncio.get_running_loop().call_later(SELECT_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            instructions = self.parser.receive_data(data)
            if not instructions:
                return
            target = parse_select(instructions[0])
        except GuacrError as exc:
            self.transport.write(b.error(exc.message, exc.status) + b.disconnect())
            self.transport.close()
            return
        if self.timer:
            self.timer.cancel()
        rest = b"".join(ins_bytes(i) for i in instructions[1:]) + self.parser.pending_bytes()
        self.owner.selected(self.transport, target, rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer:
            self.timer.cancel()


class _Pump(asyncio.Protocol):
    """Copies bytes from one transport to another (one direction)."""

    def __init__(self, peer: asyncio.Transport) -> None:
        self.peer = peer

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()


class TlsIntake:
    """One TLS client inside a worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def serve(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        """TLS handshake, then read ``select``."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.connect_accepted_socket(
                    lambda: _Intake(self), sock, ssl=context, ssl_handshake_timeout=SELECT_TIMEOUT
                ),
                SELECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("TLS handshake failed: %s", exc)
            sock.close()

    def selected(self, transport: asyncio.Transport, target: str, rest: bytes) -> None:
        """Route the user once its ``select`` is known."""
        if target.startswith("$") and target not in self.worker.connections:
            self._forward(transport, target, rest)
            return
        user = User(self.worker, target, rest)
        transport.set_protocol(user)
        user.connection_made(transport)

    def _forward(self, transport: asyncio.Transport, target: str, rest: bytes) -> None:
        local, remote = socket.socketpair()
        self.worker.forward_join(target, rest, remote.fileno())
        remote.close()
        local.setblocking(False)
        self.worker.spawn(self._pump(transport, local))

    async def _pump(self, tls: asyncio.Transport, local: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        inner, _ = await loop.connect_accepted_socket(lambda: _Pump(tls), local)
        tls.set_protocol(_Pump(inner))
