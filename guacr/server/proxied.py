"""The 4822 door's PROXY protocol gate: a trusted relay may say who its client is.

Behind HAProxy or an NLB, or when another guacr instance relays a join here
(guacr.server.forward), the peer of a 4822 connection is the relay, not the client.
Such a relay sends a PROXY protocol v2 header first (guacr.server.proxy_header); the
listener believes it only from a trusted peer: an address or network listed in
``proxy_protocol_trusted``, or the host of an instance registered in the shared
registry (its ``advertise_address``). Anyone else sending such a header is refused
with ``768`` and logged, so a client cannot choose the address sessions, logs and
per-address limits see. A trusted peer may also connect without a header (a health
check, a direct client): its own address is kept.

The gate only looks (``MSG_PEEK``) until it knows a header is there, so what a
client sends without one (``select``, or a TLS ClientHello the worker reads) is left
in the socket untouched. It is on only when a registry or trusted proxies are
configured; a single instance without them reads ``select`` exactly as before.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time

from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.server import proxy_header
from guacr.server.intake import refuse
from guacr.server.proxy_header import PREFIX_BYTES, ProxyHeaderError
from guacr.server.redis_registry import RedisRegistry, RegistryDown

log = logging.getLogger("guacr.listener")

HEADER_TIMEOUT = 15.0  # as for ``select``
REFRESH_INTERVAL = 1.0  # least time between registry look-ups for an unknown relay
_PARTIAL_WAIT = 0.01  # a header's first bytes arrived alone: look again this soon
UNTRUSTED = GuacrError("PROXY protocol header from an untrusted peer.", Status.CLIENT_BAD_REQUEST)
MALFORMED = GuacrError("Malformed PROXY protocol header.", Status.CLIENT_BAD_REQUEST)


def networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``proxy_protocol_trusted`` (addresses or networks, comma-separated) parsed
    (Config.check refused bad entries before start-up)."""
    entries = filter(None, (x.strip() for x in spec.split(",")))
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _peek(sock: socket.socket, size: int, timeout: float) -> bytes:
    """The first ``size`` bytes waiting on ``sock`` (fewer if that is all), not consumed."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
            try:
                data = sock.recv(size, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not data or len(data) >= size or not proxy_header.may_be_header(data):
                return data
            await asyncio.sleep(_PARTIAL_WAIT)  # a partial signature: wait for the rest


async def _read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise ProxyHeaderError("connection closed inside the PROXY header")
        data += chunk
    return data


class ProxyGate:
    """Reads a trusted relay's PROXY header off a new 4822 connection."""

    def __init__(self, trusted: str, registry: RedisRegistry | None) -> None:
        self.networks = networks(trusted)
        self.registry = registry
        self.instance_hosts: frozenset[str] = frozenset()
        self._refreshed = 0.0
        self.accepted = 0  # headers believed so far (for tests and figures)

    async def trusts(self, host: str) -> bool:
        """Whether ``host`` may speak for its clients (asks the registry on a miss)."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if any(ip in net for net in self.networks):
            return True
        if self.registry is None:
            return False
        if host in self.instance_hosts:
            return True
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_INTERVAL:  # a new instance may have joined
            self._refreshed = now
            try:
                self.instance_hosts = frozenset(await self.registry.instance_hosts())
            except RegistryDown:
                return False
        return host in self.instance_hosts

    async def admit(self, sock: socket.socket, peer: str) -> tuple[str, int] | None:
        """The client's address and port as a trusted relay named them (``peer`` and 0,
        the socket's own peer, when no header came), or None when the connection was
        refused or ended meanwhile (the socket is then closed)."""
        try:
            head = await _peek(sock, PREFIX_BYTES, HEADER_TIMEOUT)
        except TimeoutError:
            log.info("Client %s sent nothing within %d s", peer or "?", HEADER_TIMEOUT)
            sock.close()
            return None
        except OSError:
            sock.close()
            return None
        if not head or not proxy_header.may_be_header(head):
            return peer, 0
        if not await self.trusts(peer):
            log.warning(
                "Refused a PROXY protocol header from %s: not in proxy_protocol_trusted "
                "nor a registered instance",
                peer or "?",
            )
            await refuse(sock, UNTRUSTED)
            return None
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                prefix = await _read_exactly(sock, PREFIX_BYTES)
                rest = await _read_exactly(sock, proxy_header.header_length(prefix) - PREFIX_BYTES)
            client = proxy_header.parse(prefix + rest)
        except (ProxyHeaderError, OSError, TimeoutError) as exc:
            log.warning("Bad PROXY protocol header from %s: %s", peer or "?", exc)
            await refuse(sock, MALFORMED)
            return None
        self.accepted += 1
        if client.host is None:
            return peer, 0
        log.info("Client %s:%d, relayed by %s (PROXY protocol)", client.host, client.port, peer)
        return client.host, client.port
