"""The WebSocket door (4823): its settings, the listener's accept loop, the worker's side.

Listener: :class:`ListenerDoor` accepts, runs :func:`~guacr.server.ws_intake.admit`
(upgrade, limits, token) for each client and passes the verified tunnel to the
listener's router, which hands the socket to a worker exactly as a 4822 ``select``
would be routed (a protocol to the least-loaded worker, ``$id`` to its owner).

Worker: :func:`serve_tunnel` wraps a normal :class:`~guacr.server.user.User` in a
:class:`~guacr.server.ws_transport.TunnelProtocol` on the handed-over socket.

The door is on when its port is set and at least one token key is configured;
otherwise it stays off and :func:`door_settings` says why in the log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from guacr.server.ws_intake import AddressLimiter, Admitted, DoorSettings, admit
from guacr.server.ws_transport import TunnelProtocol
from guacr.tunnel.authorize import TokenAuthority
from guacr.tunnel.grant import Grant
from guacr.tunnel.upgrade import UpgradePolicy

if TYPE_CHECKING:
    from guacr.server.user import User

log = logging.getLogger("guacr.websocket")


def _split(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if str(v))
    return tuple(v.strip() for v in str(value or "").split(",") if v.strip())


def door_settings(config: Mapping[str, Any]) -> DoorSettings | None:
    """The door's settings from the configuration, or None (logged) when it is off."""
    if not int(config.get("websocket_bind_port") or 0):
        return None
    lite_key = config.get("guacamole_lite_key") or None
    token_key = config.get("token_key") or None
    if not lite_key and not token_key:
        log.warning(
            "WebSocket door off: neither guacamole_lite_key nor token_key is set, "
            "so no tunnel could be authorised"
        )
        return None
    try:
        authority = TokenAuthority.from_keys(lite_key, token_key)
    except ValueError as exc:
        log.error("WebSocket door off: %s", exc)
        return None
    return DoorSettings(
        authority=authority,
        policy=UpgradePolicy(
            path=str(config.get("websocket_path") or ""),
            origins=_split(config.get("websocket_origins")),
        ),
        handshake_timeout=float(config.get("websocket_handshake_timeout") or 15.0),
        max_message=int(config.get("websocket_max_message") or (1 << 20)),
        trusted_proxies=_split(config.get("websocket_trusted_proxies")),
    )


Router = Callable[[socket.socket, Admitted], Awaitable[None]]


class ListenerDoor:
    """Accepts WebSocket clients on one listening socket and routes verified tunnels."""

    def __init__(self, settings: DoorSettings, route: Router, per_address: int = 0) -> None:
        self.settings = settings
        self.route = route
        self.limiter = AddressLimiter(per_address)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    async def serve(self, lsock: socket.socket) -> None:
        """Accept until cancelled."""
        loop = asyncio.get_running_loop()
        lsock.setblocking(False)
        while not self.stopping:
            try:
                sock, addr = await loop.sock_accept(lsock)
            except OSError as exc:
                if self.stopping:
                    return
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = str(addr[0]) if isinstance(addr, tuple) else str(addr)
            task = loop.create_task(self._client(sock, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _client(self, sock: socket.socket, peer: str) -> None:
        admitted = await admit(sock, peer, self.settings, self.limiter)
        if admitted is None:
            return
        try:
            await self.route(sock, admitted)
        except Exception:
            self.limiter.release(admitted.remote)
            log.exception("Routing a WebSocket tunnel failed")
            sock.close()

    def tunnel_ended(self, remote: str) -> None:
        """A worker reports a tunnel from ``remote`` gone: free its address slot."""
        self.limiter.release(remote)


def serve_tunnel(
    sock: socket.socket,
    make_user: Callable[[], User],
    grant: Grant,
    leftover: bytes,
    max_message: int,
    spawn: Callable[[Coroutine[Any, Any, None]], None],
) -> TunnelProtocol:
    """Worker side: serve a handed-over, upgraded socket as a tunnel user."""
    proto = TunnelProtocol(make_user, grant, leftover, max_message)

    async def attach() -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: proto, sock)
        except OSError as exc:
            log.info("Tunnel socket unusable: %s", exc)
            sock.close()

    spawn(attach())
    return proto
