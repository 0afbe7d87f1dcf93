"""TLS doors (kind ``tls``): the worker terminates TLS, then reads ``select``.

A TLS session cannot move between processes, so the listener gives the raw socket to
a worker first (see guacr.server.doors). After the handshake the common intake
(guacr.server.intake) reads ``select``:

* a protocol name, or a join of a connection this worker owns: the socket stays here
  and the TLS transport is switched over to a normal :class:`User`;
* a join of a connection owned by another worker: a socketpair is made, one end goes
  back to the listener (``Forward``) to be routed like any join, and this worker
  pumps bytes between the TLS session and the other end.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING

from guacr.errors import GuacrError
from guacr.protocol import builders as b
from guacr.protocol.status import Status
from guacr.server import channel
from guacr.server.intake import SELECT_TIMEOUT, Selected, SelectProtocol
from guacr.server.transport import StreamAdapter
from guacr.server.user import User, peer_port

if TYPE_CHECKING:
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.tls")


class _Pump(asyncio.Protocol):
    """Copies bytes from one transport to another (one direction)."""

    def __init__(self, peer: asyncio.Transport) -> None:
        self.peer = peer

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.close()


class TlsIntake:
    """One TLS client inside a worker, until it selected."""

    def __init__(self, worker: Worker, user_id: str, remote: str, port: int = 0) -> None:
        self.worker = worker
        self.user_id = user_id  # the listener counts this client by it
        self.remote = remote
        self.port = port  # the client's, when a trusted relay named it (else 0)
        self._handed = False

    async def serve(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        """TLS handshake, then read ``select``."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.connect_accepted_socket(
                    lambda: SelectProtocol(self.selected, on_closed=self._gone),
                    sock,
                    ssl=context,
                    ssl_handshake_timeout=SELECT_TIMEOUT,
                ),
                SELECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("TLS handshake failed: %s", exc)
            sock.close()
            self._gone()

    def _gone(self) -> None:
        """No :class:`User` took this client over: it no longer counts here."""
        if not self._handed:
            self._handed = True
            self.worker.report(channel.UserLeft(self.user_id))

    def selected(self, transport: asyncio.Transport, sel: Selected) -> None:
        """Route the user once its ``select`` is known."""
        self._handed = True
        if self.worker.draining and not sel.target.startswith("$"):
            self.worker.report(channel.UserLeft(self.user_id))
            error = GuacrError(channel.DRAINING_MESSAGE, Status.SERVER_BUSY)
            transport.write(b.error(error.message, error.status) + b.disconnect())
            transport.close()
            return
        if sel.target.startswith("$") and sel.target not in self.worker.connections:
            self.worker.report(channel.UserLeft(self.user_id))
            self._forward(transport, sel.target, sel.rest)
            return
        user = User(
            self.worker,
            sel.target,
            sel.rest,
            user_id=self.user_id,
            remote=self.remote,
            door="tls",
            remote_port=self.port,
        )
        adapter = StreamAdapter(user)
        transport.set_protocol(adapter)
        adapter.connection_made(transport)

    def _forward(self, transport: asyncio.Transport, target: str, rest: bytes) -> None:
        local, remote = socket.socketpair()
        # The listener gets a socketpair's end, which has no port: name the client's.
        port = self.port or peer_port(transport.get_extra_info("peername"), self.remote)
        ok = self.worker.forward_join(target, rest, remote.fileno(), self.remote, port)
        remote.close()
        if not ok:
            local.close()
            transport.close()
            return
        local.setblocking(False)
        self.worker.spawn(splice(transport, local))


async def splice(tls: asyncio.Transport, local: socket.socket) -> None:
    """Pump bytes both ways between a TLS session and a local socket until either ends."""
    loop = asyncio.get_running_loop()
    try:
        inner, _ = await loop.connect_accepted_socket(lambda: _Pump(tls), local)
    except OSError:
        local.close()
        tls.close()
        return
    tls.set_protocol(_Pump(inner))
