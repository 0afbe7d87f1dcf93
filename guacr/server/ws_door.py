"""The WebSocket door (4823): the listener's intake and routing, and the worker's side.

Listener: :class:`WebSocketDoor` runs :func:`~guacr.server.ws_intake.admit` (upgrade,
limits, token) for each client of a ``ws`` door, then routes the verified tunnel as a
4822 ``select`` would be routed, from the token's grant: a protocol to the
least-loaded worker, ``$id`` to the worker owning that connection (one registry for
every door, so a browser joins a 4822 connection and the other way round). The socket
travels in a :class:`~guacr.server.channel.Handoff` whose ``tunnel`` holds the grant.

Worker: :func:`serve_tunnel` serves the handed-over socket with a normal sans-I/O
:class:`~guacr.server.user.User` behind a :class:`~guacr.server.ws_transport.TunnelAdapter`.

The door opens when its port is set and at least one token key is configured
(:func:`off_reason` says why not).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from guacr import handlers
from guacr.config import Config
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.protocol.version import ProtocolVersion
from guacr.server import channel
from guacr.server.registry import Registry, UserRecord
from guacr.server.routing import Router, new_user_id
from guacr.server.user import User
from guacr.server.ws_intake import AddressLimiter, Admitted, DoorSettings, admit, refuse
from guacr.server.ws_transport import TunnelAdapter
from guacr.tunnel import lite
from guacr.tunnel.authorize import TokenAuthority
from guacr.tunnel.grant import Grant
from guacr.tunnel.tokens import RedemptionStore
from guacr.tunnel.upgrade import UpgradePolicy

if TYPE_CHECKING:
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.websocket")


def off_reason(config: Config) -> str:
    """Why a configured WebSocket door stays off ('' when it opens): no token key, or
    one that cannot work (the reason names the setting, never its value)."""
    if not config.websocket_bind_port:
        return ""
    if not (config.guacamole_lite_key or config.token_key):
        return (
            "WebSocket door off: neither guacamole_lite_key nor token_key is set, "
            "so no tunnel could be authorised"
        )
    try:
        TokenAuthority.from_keys(config.guacamole_lite_key, config.token_key)
    except ValueError as exc:
        return f"WebSocket door off: {exc}"
    if lite_version(config.guacamole_lite_version) is None:
        return (
            "WebSocket door off: guacamole_lite_version must be a Guacamole protocol "
            "version such as 1.1.0 (guacamole-lite's) or 1.5.0"
        )
    if config.websocket_max_message < 1024:
        return "WebSocket door off: websocket_max_message must be at least 1024 bytes"
    return ""


def lite_version(text: str) -> ProtocolVersion | None:
    """``guacamole_lite_version`` ("1.1.0" or "VERSION_1_1_0") -> a version guacr speaks;
    None when it is not one."""
    text = text.strip()
    wire = text if text.startswith("VERSION_") else "VERSION_" + text.replace(".", "_")
    version = ProtocolVersion.parse(wire)
    return None if version is ProtocolVersion.UNKNOWN or not text else version


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def door_settings(config: Config, store: RedemptionStore | None = None) -> DoorSettings:
    """The door's settings (keys already validated by ``Config.check``); guacr tokens
    are spent in ``store`` (the listener's, shared by every door)."""
    return DoorSettings(
        authority=TokenAuthority.from_keys(
            config.guacamole_lite_key,
            config.token_key,
            store=store,
            lite_version=lite_version(config.guacamole_lite_version) or lite.DEFAULT_VERSION,
        ),
        policy=UpgradePolicy(path=config.websocket_path, origins=_split(config.websocket_origins)),
        handshake_timeout=config.websocket_handshake_timeout,
        max_message=config.websocket_max_message,
        trusted_proxies=_split(config.websocket_trusted_proxies),
        max_per_address=config.websocket_max_per_address,
    )


def address_limiter(config: Config, registry: Registry) -> AddressLimiter:
    """The listener's one count of tunnels per client address, for ``ws`` and ``wss``
    alike; a tunnel counts while its user is in the registry."""
    return AddressLimiter(
        config.websocket_max_per_address, alive=lambda uid: registry.user(uid) is not None
    )


def admit_wss(limiter: AddressLimiter, msg: channel.AdmitTunnel) -> channel.Reply:
    """Answer a worker's :class:`~channel.AdmitTunnel` for a ``wss`` tunnel."""
    if not limiter.acquire(msg.address):
        count = limiter.count(msg.address)
        return channel.Reply(
            msg.rid, False, f"{count} tunnels already open from it", {"open": count}
        )
    limiter.bind(msg.address, msg.user)
    return channel.Reply(msg.rid, True)


class WebSocketDoor:
    """The listener's side of every ``ws`` door."""

    def __init__(
        self,
        config: Config,
        router: Router,
        store: RedemptionStore | None = None,
        limiter: AddressLimiter | None = None,
    ) -> None:
        self.settings = door_settings(config, store)
        self.router = router
        self.limiter = limiter or address_limiter(config, router.registry)

    async def intake(self, sock: socket.socket, peer: str) -> None:
        """Serve one new client of the door up to its hand-off (or refusal)."""
        admitted = await admit(sock, peer, self.settings, self.limiter)
        if admitted is None:
            return
        try:
            await self.route(sock, admitted)
        except Exception:
            self.limiter.release(admitted.remote)
            log.exception("Routing a WebSocket tunnel failed")
            sock.close()

    async def route(self, sock: socket.socket, admitted: Admitted) -> None:
        """Hand a verified tunnel to its worker."""
        router = self.router
        target = admitted.grant.selector
        if target.startswith("$"):
            slot = router.owner_of(target)
            if slot is None:
                log.info('Connection "%s" does not exist.', target[:64])
                await self._refuse(sock, admitted, "No such connection.", Status.RESOURCE_NOT_FOUND)
                return
        else:
            if target not in router.protocols:
                router.protocols = frozenset(handlers.available())
            if target not in router.protocols:
                log.info('Support for protocol "%s" is not installed', target[:64])
                await self._refuse(
                    sock, admitted, f'Protocol "{target[:64]}" is not supported.',
                    Status.UNSUPPORTED,
                )  # fmt: skip
                return
            if grant_id_taken(router, admitted.grant):
                log.warning("Connection id %s is already in use", admitted.grant.connection)
                await self._refuse(
                    sock, admitted, "Connection id already in use.", Status.RESOURCE_CONFLICT
                )
                return
            if router.draining:  # joins of live sessions still route (above)
                log.info('Refusing a new "%s" session: draining', target[:64])
                await self._refuse(sock, admitted, channel.DRAINING_MESSAGE, Status.SERVER_BUSY)
                return
            slot = await router.wait_for_worker()
            if slot is None:
                await self._refuse(sock, admitted, "No worker is available.", Status.SERVER_BUSY)
                return
        user = new_user_id()
        tunnel = {"grant": admitted.grant.to_wire(), "max_message": self.settings.max_message}
        msg = channel.Handoff(
            user, target, channel.pack_bytes(admitted.leftover), "ws", admitted.remote, tunnel
        )
        # Counted before sending: the worker may report the user gone at once.
        router.registry.add_user(UserRecord(user, slot.index, "ws", admitted.remote))
        fd = sock.detach()
        try:
            sent = slot.send(msg, [fd])
        finally:
            os.close(fd)
        if not sent:
            router.registry.remove_user(user)
            self.limiter.release(admitted.remote)
            log.error("Hand-off of a WebSocket tunnel to worker %d failed", slot.index)
            return
        self.limiter.bind(admitted.remote, user)

    async def _refuse(
        self, sock: socket.socket, admitted: Admitted, message: str, status: Status
    ) -> None:
        self.limiter.release(admitted.remote)
        await refuse(sock, GuacrError(message, status))


def _port(value: object) -> int:
    """A port a hand-off carries (a ``wss`` join forwarded from the worker holding the
    client's socket); 0 when absent or not one."""
    return value if isinstance(value, int) and 0 < value < 65536 else 0


def grant_id_taken(router: Router, grant: Grant) -> bool:
    """Whether the ``$id`` a token decided for a new connection already names one."""
    return bool(grant.connection) and router.registry.connection(grant.connection) is not None


def serve_tunnel(
    worker: Worker,
    fd: int,
    user_id: str,
    remote: str,
    tunnel: dict[str, Any],
    leftover: bytes,
    door: str = "ws",
) -> None:
    """Worker side: serve a handed-over, upgraded socket as a tunnel user (``door``
    ``wss`` for a join forwarded by the worker that terminates its TLS)."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    if worker.stopping:
        sock.close()
        worker.report(channel.UserLeft(user_id))
        return
    try:
        grant = Grant.from_wire(tunnel["grant"])
        max_message = int(tunnel["max_message"])
    except (ValueError, TypeError, KeyError):
        log.error("Bad WebSocket tunnel hand-off")
        sock.close()
        worker.report(channel.UserLeft(user_id))
        return
    user = User(
        worker,
        grant.selector,
        user_id=user_id,
        remote=remote,
        door=door,
        connection_id=grant.connection,
        remote_port=_port(tunnel.get("port")),
    )
    adapter = TunnelAdapter(user, grant, leftover, max_message)

    async def attach() -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: adapter, sock)
        except OSError as exc:
            log.info("Tunnel socket unusable: %s", exc)
            sock.close()
            worker.user_gone(user_id)

    worker.spawn(attach())
