"""The control plane inside the listener: gRPC, health/metrics HTTP, events, figures.

The listener (guacr.server.supervisor) owns one :class:`ControlPlane`. It feeds it
what workers report (:meth:`ControlPlane.observe` before the registry applies a
message, so a departing user's connection is still known), and the plane serves:

* ``guacr.v1.Control`` through :class:`ListenerBackend`, which reads the listener's
  session registry and asks workers (``ListUsers``, ``Terminate``) over their
  control channels;
* ``/health/live``, ``/health/ready`` and ``/metrics`` from the workers' figures.

Everything here is started in the listener process after it was forked, on its event
loop, and the listener never forks afterwards (see guacr.control.server).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from guacr import __version__
from guacr.control import model
from guacr.control.auth import AuthConfigError, AuthSettings
from guacr.control.events import EventBus
from guacr.control.figures import FiguresStore
from guacr.control.http import HealthMetricsServer
from guacr.control.metrics import make_registry

log = logging.getLogger("guacr.control")

# Event sequence numbers of the n-th listener start at n << GENERATION_BITS (2**32 events
# per listener life; JSON-safe integers up to 2**21 listener restarts).
GENERATION_BITS = 32


class RegistryView(Protocol):
    """What the plane reads of the listener's session registry."""

    def connection(self, conn_id: str) -> Any: ...
    def connections(self) -> Iterable[Any]: ...
    def user(self, user_id: str) -> Any: ...


class ListenerHost(Protocol):
    """What the plane needs of the listener."""

    registry: Any

    @property
    def slots(self) -> Sequence[Any]: ...

    @property
    def draining(self) -> bool: ...

    def set_draining(self, on: bool) -> None: ...

    async def ask_worker(
        self, conn_id: str, op: str, **fields: Any
    ) -> tuple[bool, str, dict[str, Any]]:
        """Ask the worker owning ``conn_id``: (ok, error, result)."""
        ...


@dataclass
class SessionDetails:
    """What workers report about a connection beyond the registry's record."""

    hostname: str = ""
    port: int = 0
    frames: int = 0
    lag_ms: int = 0
    read_only: set[str] = field(default_factory=set)


def _split_remote(remote: str) -> tuple[str, int]:
    """'host:port' / '[v6]:port' / 'host' -> (host, port)."""
    if remote.startswith("["):
        host, _, rest = remote[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else 0
    host, sep, port = remote.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return remote, 0


class ListenerBackend:
    """:class:`~guacr.control.backend.ControlBackend` over the real listener."""

    def __init__(
        self,
        host: ListenerHost,
        events: EventBus,
        details: dict[str, SessionDetails],
        mint: Callable[..., str] | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.host = host
        self.events = events
        self.details = details
        # user id -> the client's port, as its worker reports it (the registry keeps
        # the address the listener saw, host only)
        self.ports: dict[str, int] = {} if ports is None else ports
        self.mint = mint  # guacr.tunnel tokens' mint(), when the WebSocket door is on
        self.started_at = time.time()
        # conn id -> ((bytes in, bytes out, users), SessionInfo): ListSessions over 1,000
        # idle sessions rebuilds none. The plane invalidates on joins, leaves, details.
        self._cache: dict[str, tuple[tuple[int, int, int], model.SessionInfo]] = {}

    def invalidate(self, conn_id: str) -> None:
        """Forget the cached view of a connection (it changed, or it ended)."""
        self._cache.pop(conn_id, None)

    # Registry -> model ---------------------------------------------------------------
    def _user(self, user_id: str, read_only: set[str]) -> model.UserInfo:
        rec = self.host.registry.user(user_id)
        if rec is None:
            return model.UserInfo(id=user_id)
        address, port = _split_remote(str(getattr(rec, "remote", "")))
        port = self.ports.get(user_id) or port
        return model.UserInfo(
            id=user_id,
            name=str(getattr(rec, "name", "")),
            address=address,
            port=port,
            owner=bool(getattr(rec, "owner", False)),
            read_only=user_id in read_only,
            joined_at=float(getattr(rec, "since", 0.0)),
            door=str(getattr(rec, "door", "tcp")),
        )

    def session_info(self, rec: Any) -> model.SessionInfo:
        d = self.details.get(rec.id) or SessionDetails()
        slot = self.host.slots[rec.worker] if 0 <= rec.worker < len(self.host.slots) else None
        return model.SessionInfo(
            id=rec.id,
            protocol=rec.protocol,
            remote_host=d.hostname,
            remote_port=d.port,
            owner_id=rec.owner if rec.owner in rec.users else "",
            users=[self._user(u, d.read_only) for u in rec.users],
            started_at=rec.started,
            bytes_to_clients=rec.bytes_out,
            bytes_from_clients=rec.bytes_in,
            frames=d.frames,
            lag_ms=d.lag_ms,
            worker=rec.worker,
            worker_pid=(slot.pid or 0) if slot is not None else 0,
        )

    # ControlBackend -----------------------------------------------------------------
    async def list_sessions(self) -> Sequence[model.SessionInfo]:
        cache = self._cache
        out = []
        for rec in self.host.registry.connections():
            key = (rec.bytes_in, rec.bytes_out, len(rec.users))
            hit = cache.get(rec.id)
            if hit is None or hit[0] != key:
                hit = (key, self.session_info(rec))
                cache[rec.id] = hit
            out.append(hit[1])
        if len(cache) > 2 * len(out) + 100:  # ended connections the hooks missed
            live = {s.id for s in out}
            for conn_id in [c for c in cache if c not in live]:
                del cache[conn_id]
        return out

    async def get_session(self, session_id: str) -> model.SessionInfo | None:
        rec = self.host.registry.connection(session_id)
        if rec is None:
            return None
        info = self.session_info(rec)
        ok, _error, result = await self.host.ask_worker(session_id, "list_users")
        if ok:  # the worker's live view: read-only flags and per-user lag
            by_id = {u.id: u for u in info.users}
            lags = []
            for u in result.get("users", []):
                user = by_id.get(str(u.get("id")))
                if user is not None:
                    user.read_only = bool(u.get("read_only"))
                    port = u.get("port")
                    if isinstance(port, int) and 0 < port < 65536:
                        user.port = port
                lags.append(int(float(u.get("lag", 0))))  # ms
            if lags:
                info.lag_ms = max(lags)
        return info

    async def terminate(self, session_id: str, reason: str, status: int) -> int | None:
        rec = self.host.registry.connection(session_id)
        if rec is None:
            return None
        users = len(rec.users)
        ok, error, _ = await self.host.ask_worker(
            session_id, "terminate", message=reason, status=status
        )
        if not ok:
            if error == "No such connection.":
                return None
            raise model.ControlError(model.Failure.UNAVAILABLE, error)
        return users

    async def create_session(
        self, protocol: str, parameters: Mapping[str, str], ttl: float
    ) -> model.CreatedSession:
        if self.host.draining:
            raise model.ControlError(model.Failure.UNAVAILABLE, "This instance is draining.")
        if self.mint is None:
            raise model.ControlError(
                model.Failure.FAILED_PRECONDITION,
                "CreateSession needs the WebSocket door (websocket_bind_port, token_key)",
            )
        from guacr import handlers

        if protocol not in handlers.available():
            raise model.ControlError(
                model.Failure.INVALID, f'Protocol "{protocol[:64]}" is not supported.'
            )
        from guacr.tunnel.tokens import new_connection_id

        # The id is decided here and sealed in the token: the worker that redeems it
        # gives the new connection exactly this id (and the token works once).
        session_id = new_connection_id()
        token = self.mint(
            protocol=protocol, params=dict(parameters), ttl=ttl, connection=session_id
        )
        return model.CreatedSession(token, session_id, time.time() + ttl)

    async def share_session(
        self, session_id: str, read_only: bool, ttl: float
    ) -> model.SharedSession:
        if self.host.registry.connection(session_id) is None:
            raise model.ControlError(model.Failure.NOT_FOUND, f"no session {session_id[:80]!r}")
        if self.mint is None:
            raise model.ControlError(
                model.Failure.FAILED_PRECONDITION,
                "ShareSession needs the WebSocket door (websocket_bind_port, token_key)",
            )
        token = self.mint(join=session_id, read_only=read_only, ttl=ttl)
        return model.SharedSession(token, time.time() + ttl)

    async def set_draining(self, draining: bool) -> None:
        self.host.set_draining(draining)

    def instance(self) -> model.InstanceInfo:
        conns = list(self.host.registry.connections())
        load = getattr(self.host.registry, "load", None)
        users = sum(load(s.index) for s in self.host.slots) if load is not None else 0
        return model.InstanceInfo(
            draining=self.host.draining,
            sessions=len(conns),
            users=users,
            workers_ready=sum(1 for s in self.host.slots if s.ready),
            workers=len(self.host.slots),
            version=__version__,
            started_at=self.started_at,
        )


def _token_minter(config: Any) -> Callable[..., str] | None:
    """guacr tokens' ``mint`` when the WebSocket door that redeems them is configured."""
    key = getattr(config, "token_key", None)
    if not key or not getattr(config, "websocket_bind_port", 0):
        return None
    from guacr.tunnel.tokens import GuacrTokens

    try:
        return GuacrTokens(key).mint
    except ValueError as exc:  # a key too short: the door refuses it as well
        log.error("CreateSession/ShareSession are off: %s", exc)
        return None


class ControlPlane:
    """Starts and stops the gRPC and HTTP servers; turns worker reports into events."""

    def __init__(
        self,
        config: Any,
        host: ListenerHost,
        mint: Callable[..., str] | None = None,
        *,
        totals: dict[str, Any] | None = None,
        on_totals: Callable[[], None] | None = None,
        generation: int = 0,
    ) -> None:
        """``totals``, ``on_totals`` and ``generation`` come from the main process, which
        outlives listeners: the totals the previous listener left (sent back through
        ``on_totals`` as they change) and how many listeners came before this one."""
        self.config = config
        self.host = host
        # A restarted listener's events number on from where no earlier one reached: a
        # client that watches again never sees a sequence go back.
        self.events = EventBus(first=generation << GENERATION_BITS)
        self.figures = FiguresStore(totals, on_totals)
        self.details: dict[str, SessionDetails] = {}
        if mint is None:
            mint = _token_minter(config)
        self.backend = ListenerBackend(host, self.events, self.details, mint)
        self.grpc: Any = None
        self.http: HealthMetricsServer | None = None

    def _bind_host(self, name: str) -> str:
        return str(getattr(self.config, f"{name}_bind_host", "") or "127.0.0.1")

    async def start(self) -> None:
        """Start what is configured; a failure to bind is logged, not fatal."""
        port = int(getattr(self.config, "metrics_bind_port", 0) or 0)
        if port:
            registry = make_registry(self.figures, self.backend.instance)
            self.http = HealthMetricsServer(
                self.backend.instance, registry, self._bind_host("metrics"), port
            )
            try:
                await self.http.start()
            except OSError as exc:
                log.error("Cannot serve health and metrics on port %d: %s", port, exc)
                self.http = None
        await self._start_grpc()

    async def _start_grpc(self) -> None:
        port = int(getattr(self.config, "grpc_bind_port", 0) or 0)
        if not port:
            return
        auth = AuthSettings(
            token=getattr(self.config, "grpc_token", None) or None,
            cert=getattr(self.config, "grpc_cert", None) or None,
            key=getattr(self.config, "grpc_key", None) or None,
            client_ca=getattr(self.config, "grpc_client_ca", None) or None,
        )
        try:
            auth.check()
        except AuthConfigError as exc:
            log.error("gRPC control is off: %s", exc)
            return
        if not auth.enabled:
            log.info(
                "gRPC control is off: set grpc_token, or grpc_cert + grpc_key + "
                "grpc_client_ca for mutual TLS, to enable it on port %d",
                port,
            )
            return
        # Imported here: a listener without gRPC never loads grpc.
        from guacr.control.server import ControlServer

        server = ControlServer(self.backend, auth, self._bind_host("grpc"), port)
        try:
            await server.start()
        except (OSError, RuntimeError) as exc:
            log.error("Cannot serve gRPC control on port %d: %s", port, exc)
            return
        self.grpc = server

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(1.0)
            self.grpc = None
        if self.http is not None:
            await self.http.stop()
            self.http = None

    # Reports from workers -------------------------------------------------------------
    def connection_opened(self, conn_id: str) -> None:
        """After the registry recorded a new connection (its event waits for the owner's
        join, which the worker reports next, so it carries the owner)."""

    def connection_closing(
        self, conn_id: str, status: int = 0, message: str = "", recording: str = ""
    ) -> None:
        """Before the registry forgets a connection."""
        rec = self.host.registry.connection(conn_id)
        self.details.pop(conn_id, None)
        self.backend.invalidate(conn_id)
        if rec is not None:
            self.events.publish(
                model.SessionEnded(conn_id, status, message, rec.bytes_out, rec.bytes_in)
            )
        if recording:
            try:
                size = os.path.getsize(recording)
            except OSError:
                size = 0
            self.events.publish(model.RecordingFinished(conn_id, recording, size))

    def user_port(self, user_id: str, port: object) -> None:
        """The client port of a user, from its worker (0 or junk: unknown)."""
        if isinstance(port, int) and 0 < port < 65536:
            self.backend.ports[user_id] = port

    def user_joined(self, user_id: str, conn_id: str, owner: bool, port: int = 0) -> None:
        """After the registry recorded a join: the owner's starts the session."""
        self.user_port(user_id, port)
        self.backend.invalidate(conn_id)
        if owner:
            rec = self.host.registry.connection(conn_id)
            if rec is not None:
                self.events.publish(model.SessionStarted(self.backend.session_info(rec)))
        else:
            d = self.details.get(conn_id)
            info = self.backend._user(user_id, d.read_only if d else set())
            self.events.publish(model.UserJoined(conn_id, info))

    def user_leaving(self, user_id: str) -> None:
        """Before the registry forgets a user."""
        rec = self.host.registry.user(user_id)
        self.backend.ports.pop(user_id, None)
        conn_id = str(getattr(rec, "connection", "")) if rec is not None else ""
        if conn_id:
            self.backend.invalidate(conn_id)
            self.events.publish(model.UserLeft(conn_id, user_id))

    def worker_figures(
        self, slot: int, pid: int, figures: dict[str, Any], sessions: dict[str, Any]
    ) -> None:
        """A worker's periodic report: counters and per-connection details."""
        self.figures.report(slot, pid, figures)
        for conn_id, values in sessions.items():
            self.backend.invalidate(conn_id)
            try:
                hostname, port, frames, lag_ms, read_only = values
                self.details[conn_id] = SessionDetails(
                    str(hostname), int(port), int(frames), int(lag_ms), set(map(str, read_only))
                )
            except (TypeError, ValueError):
                log.warning("Malformed session figures from worker %d", slot)

    def worker_gone(self, slot: int) -> int:
        """A worker's channel closed (it is exiting), before the registry drops its
        connections: they end. Returns how many there were."""
        self.figures.worker_gone(slot)
        ports = self.backend.ports
        for user_id in list(ports):
            rec = self.host.registry.user(user_id)
            if rec is None or rec.worker == slot:
                del ports[user_id]
        lost = [rec.id for rec in self.host.registry.connections() if rec.worker == slot]
        for conn_id in lost:
            self.connection_closing(conn_id, 0x0200, "Worker exited.")
        return len(lost)

    def worker_restarting(self, slot: int, pid: int, status: int, sessions_lost: int) -> None:
        """A worker exited unexpectedly and its slot is restarted."""
        self.figures.count_restart()
        self.events.publish(model.WorkerRestarted(slot, pid, status, sessions_lost))
