"""The ``wss`` door: a worker terminates TLS, reads the upgrade and verifies the token.

A TLS session cannot move between processes, so the listener hands the raw socket of a
``wss`` client to the least-loaded worker (as for TLS on 4822, guacr.server.tls). That
worker completes TLS, answers the WebSocket upgrade (:mod:`guacr.tunnel.upgrade`) and
verifies the token with the door's own settings (:func:`~guacr.server.ws_door.door_settings`).
Then, from the grant:

* a new connection, or a join of a connection this worker owns: served here by a
  :class:`~guacr.server.ws_transport.TunnelAdapter` on the TLS transport;
* a join of a connection owned by another worker: a socketpair is made, one end goes
  to the listener in a :class:`~guacr.server.channel.Forward` carrying the grant (the
  listener routes it to the owner like any ``ws`` tunnel, which serves the WebSocket
  frames it receives), and this worker pumps the decrypted bytes between the two.

guacr tokens are single-use across the whole daemon: the worker does not keep its own
redemption store but asks the listener, which holds the one store every door spends
tokens in (:class:`~guacr.server.channel.Redeem`, answered with a ``Reply`` matched by
its ``rid``). Without an answer (no listener, or none within 5 s) the token is refused.

Refusals are the ``ws`` door's: HTTP errors for bad upgrades, ``error ... 769`` and
close 1008 "769" for a refused token; a plain-text request on this TLS port gets
HTTP 400 instead of a TLS alert it could not read. The per-address tunnel limit
(``websocket_max_per_address``, the address from ``X-Forwarded-For`` only behind a
trusted proxy) is the listener's, one count for ``ws`` and ``wss``: the worker asks
(:class:`~guacr.server.channel.AdmitTunnel`) before it verifies the token, and a
refused tunnel gets ``error ... 797`` and close 1008 "797" as on ``ws``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from guacr.config import Config
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.server import channel
from guacr.server.tls import splice
from guacr.server.transport import peer_host
from guacr.server.user import User
from guacr.server.ws_door import door_settings
from guacr.server.ws_intake import REFUSAL_LINGER, DoorSettings, client_address
from guacr.server.ws_transport import TunnelAdapter
from guacr.tunnel.framing import Tunnel
from guacr.tunnel.grant import Grant, Query, TokenRefused
from guacr.tunnel.upgrade import Rejected, Upgrade

if TYPE_CHECKING:
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.websocket")

_TLS_HANDSHAKE = 0x16  # first byte of every TLS ClientHello record
_PLAIN_REFUSAL = (
    f"HTTP/1.1 400 {http.HTTPStatus.BAD_REQUEST.phrase}\r\n"
    "Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 51\r\n\r\n"
    "This WebSocket door speaks TLS: connect with wss://\n"
).encode()


class ListenerRedemptions:
    """A :class:`~guacr.tunnel.tokens.RedemptionStore` that asks the listener."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def redeem(self, token_id: str, expires: float) -> bool:
        """True only the first time any worker or door redeems ``token_id``."""
        reply = await self.worker.ask(channel.Redeem(token_id=token_id, expires=expires))
        if not reply.ok and reply.error:
            log.warning("guacr token not redeemed: %s", reply.error)
        return reply.ok


@dataclass(frozen=True)
class WssDoor:
    """A worker's view of the ``wss`` door: its settings and TLS context."""

    settings: DoorSettings
    context: ssl.SSLContext

    @classmethod
    def from_config(cls, config: Config, worker: Worker) -> WssDoor:
        """Certificate from ``websocket_cert``/``websocket_key``, else ``-C``/``-K``."""
        cert = config.websocket_cert or config.cert
        if not cert:
            raise ValueError("websocket_tls needs websocket_cert or -C")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, config.websocket_key or config.key or None)
        return cls(door_settings(config, ListenerRedemptions(worker)), ctx)


async def _first_byte(sock: socket.socket, timeout: float) -> bytes:
    """Peek at the client's first byte without consuming it (b'' if it went away)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await asyncio.wait_for(readable, timeout)
    finally:
        loop.remove_reader(sock.fileno())
    return sock.recv(1, socket.MSG_PEEK)


async def serve_wss(worker: Worker, door: WssDoor, sock: socket.socket, user_id: str) -> None:
    """Serve one raw ``wss`` client handed over by the listener."""
    loop = asyncio.get_running_loop()
    peer = peer_host(sock)
    intake = WssIntake(worker, door.settings, user_id, peer)
    timeout = door.settings.handshake_timeout
    try:
        first = await _first_byte(sock, timeout)
        if first and first[0] != _TLS_HANDSHAKE:
            log.info("WebSocket client %s: plain request on the TLS (wss) door", peer)
            with contextlib.suppress(OSError):
                sock.send(_PLAIN_REFUSAL)
                sock.shutdown(socket.SHUT_WR)
            sock.close()
            intake.gone()
            return
        await asyncio.wait_for(
            loop.connect_accepted_socket(
                lambda: intake, sock, ssl=door.context, ssl_handshake_timeout=timeout
            ),
            timeout,
        )
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        log.info("WebSocket client %s: TLS handshake failed: %s", peer, exc or "timeout")
        sock.close()
        intake.gone()


class WssIntake(asyncio.Protocol):
    """One ``wss`` client inside a worker, from TLS to its hand-over or refusal."""

    def __init__(self, worker: Worker, settings: DoorSettings, user_id: str, peer: str) -> None:
        self.worker = worker
        self.settings = settings
        self.user_id = user_id  # the listener counts this client by it
        self.peer = self.remote = peer
        self.upgrade = Upgrade(settings.policy)
        self.stage = "upgrade"  # -> verify -> handed | refusing | done
        self.buffer = bytearray()  # tunnel bytes that arrive while the token is checked
        self.transport: asyncio.Transport | None = None
        self.refusal: Tunnel | None = None
        self.timer: asyncio.TimerHandle | None = None
        self._reported = False

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timer = asyncio.get_running_loop().call_later(
            self.settings.handshake_timeout, self._timeout
        )

    def data_received(self, data: bytes) -> None:
        if self.stage == "upgrade":
            self._upgrade(data)
        elif self.stage == "verify":
            self.buffer += data
        elif self.stage == "refusing" and self.refusal is not None:
            self.refusal.receive_data(data)
            self._flush_refusal()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None
        self.gone()

    def gone(self) -> None:
        """No session took this client over: it no longer counts here (once)."""
        if not self._reported and self.stage != "handed":
            self._reported = True
            self.worker.report(channel.UserLeft(self.user_id))

    def _timeout(self) -> None:
        if self.stage in ("upgrade", "verify") and self.transport is not None:
            log.info(
                "WebSocket client %s: no upgrade within %.0f s",
                self.peer,
                self.settings.handshake_timeout,
            )
            self.stage = "done"
            self.transport.close()

    # Stages ----------------------------------------------------------------------
    def _upgrade(self, data: bytes) -> None:
        assert self.transport is not None
        result = self.upgrade.receive_data(data)
        if result is None:
            return
        if isinstance(result, Rejected):
            log.info(
                "WebSocket client %s refused with HTTP %d: %s",
                self.peer,
                result.status,
                result.reason,
            )
            self.stage = "done"
            self.transport.write(result.response)
            self.transport.close()
            return
        self.transport.write(result.response)
        self.remote = client_address(
            self.peer, result.headers.get_all("X-Forwarded-For"), self.settings
        )
        self.stage = "verify"
        self.buffer += result.leftover
        self.transport.pause_reading()
        self.worker.spawn(self._verify(result.query))

    async def _verify(self, query: Query) -> None:
        if self.settings.max_per_address and not await self._admitted():
            return
        try:
            grant = await self.settings.authority.authorize(query)
        except TokenRefused as exc:
            log.warning("WebSocket client %s refused: %s", self.remote, exc.reason)
            self._refuse(exc)
            return
        except Exception:
            log.exception("WebSocket client %s: token check failed", self.remote)
            self._refuse(GuacrError("Internal server error.", Status.SERVER_ERROR))
            return
        transport = self.transport
        if transport is None or self.stage != "verify":
            return  # gone (or timed out) meanwhile
        if self.timer is not None:
            self.timer.cancel()
        log.info(
            "WebSocket client %s: %s token for %s (wss)",
            self.remote,
            grant.kind,
            grant.selector[:64],
        )
        if self.worker.draining and not grant.is_join:  # joins still go on
            self._refuse(GuacrError(channel.DRAINING_MESSAGE, Status.SERVER_BUSY))
            return
        tunnel = {"grant": grant.to_wire(), "max_message": self.settings.max_message}
        leftover = bytes(self.buffer)
        self.buffer.clear()
        if grant.is_join and grant.selector not in self.worker.connections:
            self._forward(transport, grant, leftover, tunnel)
            return
        self.stage = "handed"
        user = User(
            self.worker,
            grant.selector,
            user_id=self.user_id,
            remote=self.remote,
            door="wss",
            connection_id=grant.connection,
        )
        adapter = TunnelAdapter(user, grant, leftover, self.settings.max_message)
        transport.set_protocol(adapter)
        adapter.connection_made(transport)
        transport.resume_reading()

    async def _admitted(self) -> bool:
        """The per-address limit, kept by the listener across workers and doors (this
        client counts from then on as its user, until it leaves)."""
        reply = await self.worker.ask(channel.AdmitTunnel(user=self.user_id, address=self.remote))
        if reply.ok:
            return True
        log.warning("WebSocket client %s refused: %s", self.remote, reply.error)
        if "open" in reply.result:
            error = GuacrError("Too many connections from this address.", Status.CLIENT_TOO_MANY)
        else:  # no listener to count with: refused rather than uncounted
            error = GuacrError("Internal server error.", Status.SERVER_ERROR)
        self._refuse(error)
        return False

    def _forward(
        self, transport: asyncio.Transport, grant: Grant, leftover: bytes, tunnel: dict[str, Any]
    ) -> None:
        """A join of a connection owned elsewhere: through the listener to its owner."""
        local, far = socket.socketpair()
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2 and str(peer[0]) == self.remote:
            tunnel["port"] = int(peer[1])  # the owner only sees its end of a socketpair
        msg = channel.Forward(grant.selector, channel.pack_bytes(leftover), self.remote, tunnel)
        ok = self.worker.report(msg, [far.fileno()])
        far.close()
        if not ok:
            local.close()
            self._refuse(GuacrError("Internal server error.", Status.SERVER_ERROR))
            return
        log.info("WebSocket client %s: join of %s forwarded to its owner", self.remote,
                 grant.selector[:64])  # fmt: skip
        self.gone()  # the listener counts the owner's new user instead
        self.stage = "handed"
        local.setblocking(False)

        async def pump() -> None:
            await splice(transport, local)
            with contextlib.suppress(RuntimeError, AttributeError):
                transport.resume_reading()

        self.worker.spawn(pump())

    def _refuse(self, error: GuacrError) -> None:
        """``error`` + close as guacamole-client reports it; wait briefly for the
        client's close, then close."""
        transport = self.transport
        if transport is None or self.stage != "verify":
            return
        self.stage = "refusing"
        self.refusal = Tunnel()
        self.refusal.close(error.status, error.message)
        if self.buffer:
            self.refusal.receive_data(bytes(self.buffer))
            self.buffer.clear()
        self._flush_refusal()
        if self.transport is not None:
            transport.resume_reading()
            asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.close)

    def _flush_refusal(self) -> None:
        t, tunnel = self.transport, self.refusal
        if t is None or tunnel is None:
            return
        end = False
        for chunk in tunnel.data_to_send():
            if chunk:
                t.write(chunk)
            else:
                end = True  # the end of the stream: TLS cannot half-close, so close
        # The client answered our close: the server ends the TCP connection first
        # (RFC 6455 7.1.1), at once rather than after the linger.
        if end or tunnel.state.name == "CLOSED" or tunnel.close_expected():
            t.close()


