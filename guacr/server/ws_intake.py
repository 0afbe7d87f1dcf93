"""The listener's half of the WebSocket door: upgrade, limits and token, on a raw socket.

A browser sends nothing after the upgrade until the server's first ``""`` instruction,
so the route cannot come from a ``select``: it comes from the token. :func:`admit`
reads the HTTP upgrade (sans-I/O, :mod:`guacr.tunnel.upgrade`), answers it, verifies the
token before anything connects upstream, and returns an :class:`Admitted` whose grant
says where to route (``selector``: a protocol for the least-loaded worker, ``$id`` for
its owner). The caller hands the socket, the grant and any bytes read past the
request head to that worker, which serves the open tunnel.

Refusals are what a guacamole-common-js user can read: a bad token completes the
upgrade and then gets ``error "Token validation failed" 769`` and close 1008 "769";
too many tunnels from one address ``error ... 797`` and close 1008 "797"; only a
refused ``Origin`` gets HTTP 403 (and other non-WebSocket requests their HTTP errors).
Log lines never contain the token or the query string that carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.tunnel.authorize import TokenAuthority
from guacr.tunnel.framing import Tunnel
from guacr.tunnel.grant import Grant, TokenRefused
from guacr.tunnel.upgrade import Accepted, Rejected, Upgrade, UpgradePolicy

log = logging.getLogger("guacr.websocket")

HANDSHAKE_TIMEOUT = 15.0  # as guacd's handshake reads
MAX_MESSAGE = 1 << 20
REFUSAL_LINGER = 1.0  # wait this long for the browser's answering close
READ_SIZE = 8192


class AddressLimiter:
    """Concurrent tunnels per client address (``limit`` 0 = unlimited).

    An admitted tunnel holds a slot from :meth:`acquire` until it is refused
    (:meth:`release`) or handed off (:meth:`bind` to its user id); a handed-off tunnel
    counts while ``alive(user_id)`` (the listener's registry still has the user), so
    no extra report is needed when it ends.
    """

    def __init__(self, limit: int = 0, alive: Callable[[str], bool] = lambda _uid: True) -> None:
        self.limit = limit
        self.alive = alive
        self._pending: Counter[str] = Counter()
        self._users: dict[str, str] = {}  # user id -> address

    def count(self, address: str) -> int:
        """Live and pending tunnels from ``address``."""
        self._users = {uid: a for uid, a in self._users.items() if self.alive(uid)}
        return self._pending[address] + sum(1 for a in self._users.values() if a == address)

    def acquire(self, address: str) -> bool:
        """Count one more tunnel from ``address``; False (and not counted) when full."""
        if self.limit and self.count(address) >= self.limit:
            return False
        if self.limit:
            self._pending[address] += 1
        return True

    def release(self, address: str) -> None:
        """An acquired tunnel was refused before its hand-off."""
        if self._pending[address] <= 1:
            self._pending.pop(address, None)
        else:
            self._pending[address] -= 1

    def add(self, address: str, user_id: str) -> None:
        """Count ``user_id`` from ``address`` (a tunnel admitted elsewhere, or moved)."""
        if self.limit:
            self._users[user_id] = address

    def bind(self, address: str, user_id: str) -> None:
        """An acquired tunnel was handed off as ``user_id``."""
        if self.limit:
            self.release(address)
            self._users[user_id] = address


@dataclass(frozen=True)
class DoorSettings:
    """Everything the door decides with."""

    authority: TokenAuthority
    policy: UpgradePolicy = field(default_factory=UpgradePolicy)
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    max_message: int = MAX_MESSAGE
    trusted_proxies: tuple[str, ...] = ()
    max_per_address: int = 0  # tunnels per client address, kept by the listener

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is a configured proxy (addresses or networks)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        for entry in self.trusted_proxies:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


@dataclass(frozen=True)
class Admitted:
    """A verified tunnel, ready to be handed to a worker."""

    grant: Grant
    leftover: bytes
    remote: str


def client_address(peer: str, forwarded: Iterable[str], door: DoorSettings) -> str:
    """The client's address: the peer, or from ``X-Forwarded-For`` when the peer is a
    trusted proxy (the right-most entry that is not itself a trusted proxy)."""
    if not door.trusts(peer):
        return peer
    chain = [a.strip() for value in forwarded for a in value.split(",") if a.strip()]
    for address in reversed(chain):
        if not door.trusts(address):
            return address
    return chain[0] if chain else peer


async def _send(sock: socket.socket, tunnel: Tunnel) -> None:
    loop = asyncio.get_running_loop()
    for chunk in tunnel.data_to_send():
        if chunk:
            await loop.sock_sendall(sock, chunk)
        else:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)


async def refuse(sock: socket.socket, error: GuacrError) -> None:
    """On an upgraded socket the listener still owns: ``error`` + close as
    guacamole-client reports it, a short wait for the browser's close, then close."""
    loop = asyncio.get_running_loop()
    tunnel = Tunnel()
    tunnel.close(error.status, error.message)
    try:
        await _send(sock, tunnel)
        async with asyncio.timeout(REFUSAL_LINGER):
            while tunnel.closed is None or tunnel.state.name != "CLOSED":
                data = await loop.sock_recv(sock, READ_SIZE)
                if not data:
                    break
                tunnel.receive_data(data)
                await _send(sock, tunnel)
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


async def _upgrade(sock: socket.socket, door: DoorSettings) -> Accepted | Rejected | None:
    loop = asyncio.get_running_loop()
    upgrade = Upgrade(door.policy)
    while True:
        data = await loop.sock_recv(sock, READ_SIZE)
        if not data:
            return None
        result = upgrade.receive_data(data)
        if result is not None:
            return result


async def admit(
    sock: socket.socket, peer: str, door: DoorSettings, limiter: AddressLimiter
) -> Admitted | None:
    """Serve one new connection up to a verified token; None when it was refused (the
    socket is then closed) or went away. A returned tunnel holds one ``limiter`` slot
    for ``Admitted.remote``: release it when the tunnel ends."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(door.handshake_timeout):
            result = await _upgrade(sock, door)
    except TimeoutError:
        log.info(
            "WebSocket client %s: no upgrade request within %.0f s", peer, door.handshake_timeout
        )
        sock.close()
        return None
    except OSError:
        sock.close()
        return None
    if result is None:
        sock.close()
        return None
    if isinstance(result, Rejected):
        log.info("WebSocket client %s refused with HTTP %d: %s", peer, result.status, result.reason)
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, result.response)
        sock.close()
        return None
    remote = client_address(peer, result.headers.get_all("X-Forwarded-For"), door)
    try:
        await loop.sock_sendall(sock, result.response)
    except OSError:
        sock.close()
        return None
    if not limiter.acquire(remote):
        log.warning(
            "WebSocket client %s refused: %d tunnels already open from it",
            remote,
            limiter.count(remote),
        )
        await refuse(
            sock, GuacrError("Too many connections from this address.", Status.CLIENT_TOO_MANY)
        )
        return None
    try:
        grant = await door.authority.authorize(result.query)
    except TokenRefused as exc:
        limiter.release(remote)
        log.warning("WebSocket client %s refused: %s", remote, exc.reason)
        await refuse(sock, exc)
        return None
    except Exception:
        limiter.release(remote)
        log.exception("WebSocket client %s: token check failed", remote)
        await refuse(sock, GuacrError("Internal server error.", Status.SERVER_ERROR))
        return None
    log.info("WebSocket client %s: %s token for %s", remote, grant.kind, grant.selector[:64])
    return Admitted(grant, result.leftover, remote)
