"""Joins of another instance's session: found in the shared registry, relayed to it.

A ``select $id`` for a connection no worker of this instance owns is looked up in the
shared registry (guacr.server.redis_registry). If another instance owns it, the
listener connects to that instance's 4822 door (its ``advertise_address``), sends the
client's ``select`` and whatever the client pipelined after it, and from then on copies
bytes both ways unchanged: the owner runs the rest of the handshake with the client
itself, exactly as if the client had connected to it. So sharing works whichever
instance a load balancer picks.

The listener finds the owner, then hands the client's socket to its least-loaded
worker (:class:`~guacr.server.channel.Relay`), which relays it: like a session, a relay
then outlives a restart of the listener. (With no worker ready, and for WebSocket
tunnels, the listener relays itself.) The relay is two asyncio protocols on one loop
(no thread, no blocking call; ``TCP_NODELAY`` on both sockets), each pausing its reader
while the other side's send buffer is full, so a slow client never makes a process
buffer without bound.

Unknown ids, an owner that cannot be reached and a registry that is down all get
guacd's answer for a join of an unknown connection: ``error "No such connection." 516``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from guacr.config import Config
from guacr.errors import GuacrError
from guacr.protocol.instruction import encode, encode_many
from guacr.protocol.parser import Parser
from guacr.protocol.status import Status
from guacr.server import channel, proxy_header
from guacr.server.intake import refuse
from guacr.server.redis_registry import Owner, RedisRegistry, RegistryDown, split_address
from guacr.server.user import User, peer_port
from guacr.server.ws_intake import refuse as refuse_tunnel
from guacr.server.ws_transport import TunnelAdapter
from guacr.tunnel.grant import Grant

if TYPE_CHECKING:
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.listener")

CONNECT_TIMEOUT = 5.0
HIGH_WATER = 256 * 1024  # bytes queued towards one side before the other is paused
NOT_FOUND = GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND)


class _Half(asyncio.Protocol):
    """One socket of a relay: what it receives is written to its peer."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        # What arrived before the peer's socket was attached (the owner may answer
        # ``select`` before the client's side is set up): written once it is.
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        with contextlib.suppress(OSError, AttributeError):
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = self.peer
        if peer is not None and peer.early:
            self.transport.writelines(peer.early)
            peer.early.clear()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # half-close: the peer may still answer
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.relay.closed()

    # Our transport's buffer is full: stop reading the side that fills it.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Relay:
    """A client socket and an upstream socket, copied into each other until either ends."""

    def __init__(self) -> None:
        self.client = _Half(self)
        self.upstream = _Half(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.done = asyncio.get_running_loop().create_future()

    def closed(self) -> None:
        for half in (self.client, self.upstream):
            if half.transport is not None:
                half.transport.close()
        both_closed = self.client.transport is None and self.upstream.transport is None
        if both_closed and not self.done.done():
            self.done.set_result(None)


@dataclass(frozen=True)
class PeerTls:
    """How this instance checks the others' 4822 doors when they speak TLS."""

    context: ssl.SSLContext
    server_name: str  # checked in their certificates; '' = the chain only


def peer_tls(config: Config) -> PeerTls | None:
    """TLS towards other instances: on when this instance's own 4822 door is TLS
    (instances behind one address share their door settings).

    Their certificates must chain to ``cluster_ca``; without it, to a certificate in
    this instance's own -C file (its own certificate, and any chain after it), so
    instances sharing one certificate, self-signed or CA-signed, trust each other with
    no further setting. ``cluster_server_name``, if set, must also be a name in their
    certificates (pod addresses rarely are, so no name is checked by default).
    """
    if not config.cert:
        return None
    context = ssl.create_default_context(cafile=config.cluster_ca or config.cert)
    if not config.cluster_ca:
        # The own certificate is an end entity: trust it as it is, not only its root.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = bool(config.cluster_server_name)
    return PeerTls(context, config.cluster_server_name)


def client_address(sock: socket.socket, remote: str, port: int = 0) -> tuple[str, int] | None:
    """The client's (host, port) as the owner is told it: ``remote`` (what a trusted
    relay or the socket said) with ``port`` if known, else the socket's port when that
    is the same peer."""
    if not remote:
        return None
    if port:
        return remote, port
    with contextlib.suppress(OSError):
        return remote, peer_port(sock.getpeername(), remote)
    return remote, 0


async def connect_owner(
    factory: Callable[[], asyncio.Protocol],
    address: str,
    client: tuple[str, int] | None,
    tls: PeerTls | None,
) -> asyncio.Transport:
    """Open the owner's 4822 door for a relayed client: a PROXY protocol v2 header
    naming the client first (the owner believes it from registered instances,
    guacr.server.proxied), then TLS if the doors speak it, then ``factory``'s
    protocol on top. Raises OSError (ssl.SSLError for a certificate refused) or
    TimeoutError."""
    loop = asyncio.get_running_loop()
    host, port = split_address(address)
    async with asyncio.timeout(CONNECT_TIMEOUT):
        family, kind, proto, _name, where = (
            await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, where)
            server = sock.getpeername()
            await loop.sock_sendall(sock, proxy_header.encode(client, (server[0], server[1])))
            transport, _ = await loop.create_connection(
                factory,
                sock=sock,
                ssl=tls.context if tls else None,
                server_hostname=(tls.server_name or host) if tls else None,
            )
        except BaseException:
            sock.close()
            raise
    return transport


async def relay(
    client: socket.socket,
    address: str,
    first: bytes,
    remote: str = "",
    tls: PeerTls | None = None,
    port: int = 0,
) -> None:
    """Connect to ``address`` on behalf of ``remote`` (and ``port``, when known), send
    ``first`` there, then relay ``client`` to it.

    Raises OSError/TimeoutError if the upstream cannot be reached (``client`` is then
    still the caller's).
    """
    loop = asyncio.get_running_loop()
    pair = Relay()
    await connect_owner(lambda: pair.upstream, address, client_address(client, remote, port), tls)
    assert pair.upstream.transport is not None
    pair.upstream.transport.write(first)
    try:
        await loop.connect_accepted_socket(lambda: pair.client, client)
    except OSError:
        pair.upstream.transport.close()
        raise
    try:
        await pair.done
    finally:
        for half in (pair.client, pair.upstream):
            if half.transport is not None:
                half.transport.close()


_worker_tls: list[PeerTls | None] = []  # a worker's, made on its first relay


async def serve_relay(worker: Worker, fd: int, msg: channel.Relay) -> None:
    """In a worker: relay a client the listener handed over to the owner's door."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    first = encode("select", msg.target) + channel.unpack_bytes(msg.pending)
    try:
        if not _worker_tls:
            _worker_tls.append(peer_tls(worker.config))
        await relay(sock, msg.address, first, msg.remote, _worker_tls[0], msg.port)
    except (OSError, TimeoutError, ValueError) as exc:
        log.warning(
            'Instance owning connection "%s" cannot be reached at %s: %s',
            msg.target[:64], msg.address, exc,
        )  # fmt: skip
        await refuse(sock, NOT_FOUND)
    finally:
        worker.report(channel.UserLeft(msg.user))


class Forwarder:
    """Joins of connections this instance does not own: relayed to their owner."""

    def __init__(self, registry: RedisRegistry, tls: PeerTls | None = None) -> None:
        self.registry = registry
        self.tls = tls
        # Hands a client to a worker to relay (target, pending, remote, address, port);
        # False if none could take it (guacr.server.routing.Router.relay_via_worker).
        self.place: Callable[[socket.socket, str, bytes, str, str, int], bool] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.relayed = 0  # joins relayed so far (for tests and figures)

    def join(self, fd: int, target: str, pending: bytes, remote: str, port: int = 0) -> None:
        """Take over a client's descriptor whose ``select $id`` no worker here owns
        (``port``: the client's, when known other than from the socket)."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        task = asyncio.get_running_loop().create_task(
            self._join(sock, target, pending, remote, port)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def find(self, target: str) -> Owner | None:
        """The other instance owning ``target``, or None (logged) when there is none."""
        try:
            owner = await self.registry.owner(target)
        except RegistryDown:
            log.info(
                'Connection "%s" is not here; the shared registry is unreachable.', target[:64]
            )
            return None
        if owner is None or owner.instance == self.registry.instance:
            log.info('Connection "%s" does not exist.', target[:64])
            return None
        return owner

    async def _join(
        self, sock: socket.socket, target: str, pending: bytes, remote: str, port: int
    ) -> None:
        owner = await self.find(target)
        if owner is None:
            await refuse(sock, NOT_FOUND)
            return
        log.info(
            'Joining connection "%s" of instance %s at %s for %s',
            target[:64], owner.instance[:12], owner.address, remote or "a client",
        )  # fmt: skip
        self.relayed += 1
        if self.place is not None and self.place(
            sock, target, pending, remote, owner.address, port
        ):
            return  # a worker relays it
        try:
            first = encode("select", target) + pending
            await relay(sock, owner.address, first, remote, self.tls, port)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning(
                'Instance %s owning connection "%s" cannot be reached at %s: %s',
                owner.instance[:12], target[:64], owner.address, exc,
            )  # fmt: skip
            await refuse(sock, NOT_FOUND)

    async def tunnel(
        self,
        sock: socket.socket,
        grant: Grant,
        leftover: bytes,
        max_message: int,
        remote: str,
        release: Callable[[], None],
    ) -> None:
        """An upgraded WebSocket tunnel whose token joins a connection no worker here
        owns: relayed to its owner's 4822 door (the handshake done for the browser, as
        a worker does). ``release`` is called once the tunnel is over."""
        target = grant.selector
        owner = await self.find(target)
        if owner is None:
            release()
            await refuse_tunnel(sock, NOT_FOUND)
            return
        log.info(
            'Joining connection "%s" of instance %s at %s for WebSocket client %s',
            target[:64], owner.instance[:12], owner.address, remote or "?",
        )  # fmt: skip
        try:
            self.relayed += 1
            await relay_tunnel(
                sock, owner.address, target, grant, leftover, max_message, release,
                remote, self.tls,
            )  # fmt: skip
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning(
                'Instance %s owning connection "%s" cannot be reached at %s: %s',
                owner.instance[:12], target[:64], owner.address, exc,
            )  # fmt: skip
            release()
            await refuse_tunnel(sock, NOT_FOUND)

    def tunnel_soon(
        self, sock: socket.socket, grant: Grant, leftover: bytes, max_message: int, remote: str
    ) -> None:
        """:meth:`tunnel` in a task of its own (for callers without a coroutine)."""
        coro = self.tunnel(sock, grant, leftover, max_message, remote, lambda: None)
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """End every relay (the listener is stopping)."""
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _Upstream(asyncio.Protocol):
    """The owner's 4822 door, seen by a relayed WebSocket tunnel."""

    def __init__(self, user: RemoteUser) -> None:
        self.user = user
        self.parser = Parser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        with contextlib.suppress(OSError, AttributeError):
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            instructions = self.parser.receive_data(data)
        except GuacrError as exc:
            log.warning("Bad data from instance at %s: %s", self.user.address, exc.message)
            self.user.close()
            return
        if instructions and self.user.link is not None:
            # The tunnel sends whole instructions per message.
            self.user.link.write(encode_many(instructions))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.user.upstream_gone()


class RemoteUser:
    """A WebSocket tunnel's user whose session runs on another instance.

    It stands where a worker's :class:`~guacr.server.user.User` stands behind the
    door's :class:`~guacr.server.ws_transport.TunnelAdapter` (which answers ``args``
    for the browser, turns ``ready`` into the tunnel id, maps errors to close codes):
    what the adapter gives it goes to the owner's 4822 door, and what the owner
    sends comes back to the adapter, whole instructions at a time.
    """

    def __init__(self, target: str, address: str) -> None:
        self.id = "relay:" + target[:64]
        self.target = target
        self.address = address
        self.upstream = _Upstream(self)
        self.link: Any = None
        self.closed = False
        self._congested = False

    # What TunnelAdapter calls ---------------------------------------------------------
    def attach(self, link: Any) -> None:
        self.link = link

    def start(self) -> None:
        t = self.upstream.transport
        if t is not None:
            t.write(encode("select", self.target))

    def receive_data(self, data: bytes) -> None:
        t = self.upstream.transport
        if t is not None and not self.closed:
            t.write(data)

    @property
    def congested(self) -> bool:
        return self._congested

    @congested.setter
    def congested(self, value: bool) -> None:
        """The browser is not keeping up: stop reading the owner meanwhile."""
        self._congested = value
        t = self.upstream.transport
        if t is not None:
            (t.pause_reading if value else t.resume_reading)()

    def drop(self, why: str) -> None:
        log.info("Relayed tunnel to %s %s; closing it", self.address, why)
        self.close()
        if self.link is not None:
            self.link.abort()

    def close(self) -> None:
        """The browser's side ended (or must): end the owner's side too."""
        self.closed = True
        t = self.upstream.transport
        if t is not None:
            t.close()

    def connection_lost(self) -> None:
        self.close()

    # The owner's side -------------------------------------------------------------------
    def upstream_gone(self) -> None:
        self.closed = True
        if self.link is not None:
            self.link.close()


async def relay_tunnel(
    client: socket.socket,
    address: str,
    target: str,
    grant: Grant,
    leftover: bytes,
    max_message: int,
    on_end: Callable[[], None],
    remote: str = "",
    tls: PeerTls | None = None,
) -> None:
    """Serve an upgraded WebSocket ``client`` joining ``target`` on the instance at
    ``address``. Raises OSError/TimeoutError if that instance cannot be reached."""
    loop = asyncio.get_running_loop()
    user = RemoteUser(target, address)
    await connect_owner(lambda: user.upstream, address, client_address(client, remote), tls)
    done: asyncio.Future[None] = loop.create_future()

    def ended() -> None:
        on_end()
        if not done.done():
            done.set_result(None)

    adapter = TunnelAdapter(cast(User, user), grant, leftover, max_message, on_lost=ended)
    try:
        await loop.connect_accepted_socket(lambda: adapter, client)
    except OSError:
        user.close()
        raise
    try:
        await done
    finally:
        user.close()
