"""The listener process: accepts clients at the doors, supervises workers, routes users.

It is forked by the main process (guacr.server.forkserver), which also forks the
workers on its request, so all of them share the code the main process preloaded.
The main process holds the listening sockets; when a listener dies it forks a new
one, which finds the same sockets (clients that connected meanwhile wait in their
backlog) and the workers that outlived the old listener (:class:`Adopted`), each of
which re-introduces itself with its connections and users (:class:`channel.Hello`).

Its parts, each in its own module:

* doors (guacr.server.doors): the listening sockets and where each kind reads
  ``select``;
* intake (guacr.server.intake): reads a client's ``select``, at most one 32 KiB
  instruction per client, 15 s at most;
* routing (guacr.server.routing): least-loaded placement, joins to their owner,
  holding a client while no worker is ready;
* registry (guacr.server.registry): every user and connection with its metadata;
* slots (guacr.server.slots): the channel to each worker, and questions to it.

This module ties them together: it reads every control message and updates the
registry, restarts dead workers (a slot whose worker dies before ``ready`` three
times in a row is given up), kills hung ones, and on SIGTERM/SIGINT stops accepting,
has workers tell their users, waits up to ``shutdown_grace`` and kills what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from guacr import handlers
from guacr.config import Config
from guacr.control.plane import ControlPlane
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.server import channel, intake
from guacr.server.cluster_control import ClusterBackend
from guacr.server.doors import SELECT_READ_BY, Door
from guacr.server.forward import Forwarder, peer_tls
from guacr.server.intake import SELECT_TIMEOUT, read_select, refuse
from guacr.server.proxied import ProxyGate
from guacr.server.redis_registry import RedisRedemptions, RedisRegistry, advertised, redact
from guacr.server.registry import ConnectionRecord, LocalRegistry, Registry, UserRecord
from guacr.server.routing import Router
from guacr.server.slots import Slot
from guacr.server.transport import peer_host
from guacr.server.ws_door import WebSocketDoor, address_limiter, admit_wss
from guacr.server.ws_intake import refuse as refuse_tunnel
from guacr.tunnel.grant import Grant
from guacr.tunnel.tokens import MemoryRedemptionStore, RedemptionStore

log = logging.getLogger("guacr.listener")

BOOT_FAILURES_BEFORE_GIVING_UP = 3
RESTART_DELAY = 0.2
PING_INTERVAL = 5.0
# A worker whose event loop has not answered a ping for this long is hung (a handler
# blocking the loop): it is killed and restarted like a crashed one.
HANG_TIMEOUT = float(os.environ.get("GUACR_WORKER_HANG_TIMEOUT", "30"))
# Exit status meaning "do not fork me again" (every worker slot gave up).
EXIT_GIVE_UP = 3


@dataclass
class Adopted:
    """A worker that outlived the previous listener, and a fresh channel to it."""

    slot: int
    pid: int
    chan: socket.socket


class Supervisor:
    """The listener: doors, intake, routing, registry and worker slots together."""

    def __init__(
        self,
        config: Config,
        doors: list[Door],
        forkserver: socket.socket,
        protocols: frozenset[str] = frozenset(),
        adopted: list[Adopted] | None = None,
        registry: Registry | None = None,
        draining: bool = False,
        totals: dict[str, Any] | None = None,
        generation: int = 0,
    ) -> None:
        self.config = config
        self.doors = doors
        self.forkserver = forkserver
        self.slots = [Slot(i) for i in range(max(1, config.effective_workers()))]
        # Several instances (registry_url): the registry is shared through Redis, joins
        # of other instances' sessions are relayed to them, tokens are spent there.
        self.shared: RedisRegistry | None = None
        if registry is None and config.registry_url:
            registry = self.shared = RedisRegistry(
                config.registry_url,
                config.registry_lease_s,
                advertised(config.advertise_address, config.bind_host, config.bind_port),
            )
        self.registry: Registry = registry or LocalRegistry()
        self.router = Router(self.slots, self.registry, protocols, self._drain_channels)
        self.forwarder = (
            Forwarder(self.shared, peer_tls(config)) if self.shared is not None else None
        )
        # A relay (another instance, HAProxy, an NLB) may say who its client is on 4822.
        self.proxy_gate = (
            ProxyGate(config.proxy_protocol_trusted, self.shared)
            if self.shared is not None or config.proxy_protocol_trusted
            else None
        )
        if self.forwarder is not None:
            self.forwarder.place = self.router.relay_via_worker
            self.router.forward = self.forwarder.join
            self.router.forwarder = self.forwarder
        self.router.draining = draining
        self.adopted = adopted or []
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._intakes: set[asyncio.Task[None]] = set()
        self._done: asyncio.Future[int] | None = None
        self.alive: set[int] = set()  # worker pids not yet reported exited
        self._trim_pending = False
        # Every door spends guacr tokens here: ``ws`` directly, ``wss`` workers by asking
        # (channel.Redeem), so a token works once whichever door or worker sees it.
        self.redemptions: RedemptionStore = (
            RedisRedemptions(self.shared) if self.shared is not None else MemoryRedemptionStore()
        )
        # Tunnels per client address, counted here for ``ws`` and ``wss`` alike.
        self.tunnel_limiter = address_limiter(config, self.registry)
        self.websocket = (
            WebSocketDoor(config, self.router, self.redemptions, self.tunnel_limiter)
            if any(d.spec.kind == "ws" for d in doors)
            else None
        )
        for name, target in config.extra_handlers().items():
            handlers.register(name, target)
        self._lost: dict[int, int] = {}  # slot -> connections its dying worker held
        # The main process keeps what must outlive this listener (as it keeps the drain
        # state): metric totals no worker holds, and how many listeners came before.
        self._totals_pending = False
        self.control = ControlPlane(
            config, self, totals=totals, on_totals=self._totals_changed, generation=generation
        )
        # gRPC reaches other instances' sessions too (guacr.server.cluster_control).
        self.cluster_control: ClusterBackend | None = None
        if self.shared is not None:
            self.cluster_control = ClusterBackend(self.control.backend, self.shared)
            self.control.backend = self.cluster_control  # type: ignore[assignment]

    # Control plane (guacr.control) --------------------------------------------------
    async def ask_worker(
        self, conn_id: str, op: str, **fields: Any
    ) -> tuple[bool, str, dict[str, Any]]:
        """Ask the worker owning ``conn_id`` (``list_users`` or ``terminate``)."""
        request: channel.Request
        if op == "terminate":
            request = channel.Terminate(
                connection=conn_id, message=str(fields["message"]), status=int(fields["status"])
            )
        else:
            request = channel.ListUsers(connection=conn_id)
        reply = await self.ask(conn_id, request)
        return reply.ok, reply.error, reply.result

    def _totals_changed(self) -> None:
        """Send the main process the new totals, once per loop iteration at most."""
        if not self._totals_pending:
            self._totals_pending = True
            asyncio.get_running_loop().call_soon(self._send_totals)

    def _send_totals(self) -> None:
        self._totals_pending = False
        try:
            channel.send(self.forkserver, channel.Totals(self.control.figures.export()))
        except BlockingIOError:  # the main process is busy: soon again
            self._totals_pending = True
            asyncio.get_running_loop().call_later(0.1, self._send_totals)
        except OSError:
            pass  # the main process is gone (we are stopping)

    # Workers --------------------------------------------------------------------------
    def spawn(self, slot: Slot) -> None:
        """Start (or restart) the worker of ``slot``: the fork server forks it."""
        parent_end, child_end = channel.pair()
        channel.send(self.forkserver, channel.Spawn(slot.index), [child_end.fileno()])
        child_end.close()
        slot.pid = None
        self._attach(slot, parent_end)
        slot.ready = slot.was_ready = False
        slot.started = time.monotonic()

    def _attach(self, slot: Slot, chan: socket.socket) -> None:
        slot.chan = chan
        chan.setblocking(False)
        asyncio.get_running_loop().add_reader(chan.fileno(), self._on_channel, slot)

    def _adopt(self, adopted: Adopted) -> None:
        """Take over a live worker; it becomes ready when its :class:`Hello` arrives."""
        slot = self.slots[adopted.slot]
        slot.pid = adopted.pid
        self.alive.add(adopted.pid)
        self._attach(slot, adopted.chan)
        slot.ready = False
        slot.was_ready = True  # it did boot once: a death now is not a boot failure
        slot.started = time.monotonic()

    def _on_forkserver(self) -> None:
        """:class:`~channel.Spawned` and :class:`~channel.Exited` from the main process."""
        try:
            msg, fds = channel.recv(self.forkserver)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            log.exception("Channel to the main process failed")
            msg, fds = None, []
        for fd in fds:
            os.close(fd)
        if msg is None:
            log.error("The main process went away; stopping")
            asyncio.get_running_loop().remove_reader(self.forkserver.fileno())
            self._finish(1)
            return
        if isinstance(msg, channel.Spawned) and 0 <= msg.slot < len(self.slots):
            slot = self.slots[msg.slot]
            slot.pid = msg.pid
            self.alive.add(msg.pid)
            log.debug("Worker %d started (pid %d)", slot.index, msg.pid)
        elif isinstance(msg, channel.Exited):
            self.alive.discard(msg.pid)
            for slot in self.slots:
                if slot.pid == msg.pid:
                    self._worker_exited(slot, msg.status)

    def _on_channel(self, slot: Slot) -> None:
        """One message from a worker."""
        if slot.chan is None:
            return
        try:
            msg, fds = channel.recv(slot.chan)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            log.exception("Channel of worker %d failed", slot.index)
            msg, fds = None, []
        if msg is None:
            self._channel_closed(slot)  # the process is dying; its exit report follows
            return
        try:
            self._handle(slot, msg, fds)
        except Exception:
            log.exception("Message %r from worker %d failed", msg.op, slot.index)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _handle(self, slot: Slot, msg: channel.Message, fds: list[int]) -> None:
        reg = self.registry
        if isinstance(msg, channel.UserLeft):
            self.control.user_leaving(msg.user)
            reg.remove_user(msg.user)
        elif isinstance(msg, channel.UserJoined):
            reg.join(msg.user, msg.connection, msg.owner, msg.name)
            self.control.user_joined(msg.user, msg.connection, msg.owner, msg.port)
        elif isinstance(msg, channel.ConnectionOpened):
            reg.add_connection(_connection_record(slot.index, vars(msg)))
            self.control.connection_opened(msg.id)
        elif isinstance(msg, channel.ConnectionClosed):
            self.control.connection_closing(msg.id, msg.status, msg.message, msg.recording)
            reg.remove_connection(msg.id)
        elif isinstance(msg, channel.Figures):
            self.control.worker_figures(slot.index, msg.pid, msg.figures, msg.sessions)
        elif isinstance(msg, channel.Stats):
            for conn_id, bytes_in, bytes_out in msg.counters:
                reg.count_bytes(str(conn_id), int(bytes_in), int(bytes_out))
        elif isinstance(msg, channel.Pong):
            slot.last_pong = time.monotonic()
        elif isinstance(msg, channel.Reply):
            slot.requests.resolve(msg)
        elif isinstance(msg, channel.Ready):
            slot.mark_ready()
            if self.draining:
                slot.send(channel.Draining(True))
            log.info("Worker %d ready (pid %s)", slot.index, slot.pid or msg.pid)
            self.router.worker_ready()
        elif isinstance(msg, channel.Hello):
            self._hello(slot, msg)
        elif isinstance(msg, channel.Forward) and len(fds) == 1:
            pending = channel.unpack_bytes(msg.pending)
            if msg.tunnel:
                self._route_tunnel_join(fds.pop(), msg, pending)
            else:
                self.router.route_join(fds.pop(), msg.target, pending, msg.remote, msg.port)
        elif isinstance(msg, channel.Redeem):
            self._redeem(slot, msg)
        elif isinstance(msg, channel.AdmitTunnel):
            slot.send(admit_wss(self.tunnel_limiter, msg))
        else:
            log.warning("Unexpected message %r from worker %d", msg.op, slot.index)
        for fd in fds:
            os.close(fd)

    def _redeem(self, slot: Slot, msg: channel.Redeem) -> None:
        """A ``wss`` worker spends a guacr token in the listener's (maybe shared) store."""
        store = self.redemptions
        if isinstance(store, MemoryRedemptionStore):
            slot.send(channel.Reply(msg.rid, store.redeem_now(msg.token_id, msg.expires)))
            return

        async def answer() -> None:
            ok = await store.redeem(msg.token_id, msg.expires)
            slot.send(channel.Reply(msg.rid, ok))

        task = asyncio.get_running_loop().create_task(answer())
        self._intakes.add(task)
        task.add_done_callback(self._intake_done)

    def _route_tunnel_join(self, fd: int, msg: channel.Forward, pending: bytes) -> None:
        """A ``wss`` join whose worker does not own the connection: to the owner, as a
        ``ws`` tunnel is routed (the worker that holds its TLS pumps the frames)."""
        target = msg.target
        slot = self.router.owner_of(target)
        user = (
            self.router.handoff(slot, fd, target, pending, "wss", msg.remote, msg.tunnel)
            if slot is not None
            else ""
        )
        if user:
            self.tunnel_limiter.add(msg.remote, user)  # still from that address
            os.close(fd)
            return
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        if slot is None and self.forwarder is not None:  # another instance's session?
            with contextlib.suppress(ValueError, TypeError, KeyError):
                grant = Grant.from_wire(msg.tunnel["grant"])
                max_message = int(msg.tunnel["max_message"])
                self.forwarder.tunnel_soon(sock, grant, pending, max_message, msg.remote)
                return
        log.info('Connection "%s" does not exist.', target[:64])
        error = GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND)
        task = asyncio.get_running_loop().create_task(refuse_tunnel(sock, error))
        self._intakes.add(task)
        task.add_done_callback(self._intake_done)

    def _hello(self, slot: Slot, msg: channel.Hello) -> None:
        """A worker that outlived the previous listener re-registers what it serves."""
        self.registry.drop_worker(slot.index)
        for user in msg.users:
            self.registry.add_user(
                UserRecord(
                    str(user.get("user", "")),
                    slot.index,
                    str(user.get("door", "tcp")),
                    str(user.get("remote", "")),
                )
            )
        for conn in msg.connections:
            self.registry.add_connection(_connection_record(slot.index, conn))
        for user in msg.users:
            self.control.user_port(str(user.get("user", "")), user.get("port"))
            if user.get("connection"):
                self.registry.join(
                    str(user["user"]),
                    str(user["connection"]),
                    bool(user.get("owner")),
                    str(user.get("name", "")),
                )
        slot.mark_ready()
        slot.send(channel.Draining(self.draining))
        log.info(
            "Worker %d (pid %s) rejoined with %d connections, %d users",
            slot.index,
            slot.pid,
            len(msg.connections),
            len(msg.users),
        )
        self.router.worker_ready()

    def _channel_closed(self, slot: Slot) -> None:
        """Stop routing to a worker whose channel closed (it is exiting)."""
        slot.detach()
        lost = self.control.worker_gone(slot.index)
        self._lost[slot.index] = self._lost.get(slot.index, 0) + lost
        self.registry.drop_worker(slot.index)

    def _worker_exited(self, slot: Slot, code: int) -> None:
        loop = asyncio.get_running_loop()
        self._channel_closed(slot)
        pid, slot.pid = slot.pid, None
        lost = self._lost.pop(slot.index, 0)
        if self.stopping:
            return
        self.control.worker_restarting(slot.index, pid or 0, code, lost)
        if not slot.was_ready:
            slot.boot_failures += 1
        log.error(
            "Worker %d (pid %s) exited with status %s%s",
            slot.index,
            pid,
            code,
            "" if slot.was_ready else " before it was ready",
        )
        if slot.boot_failures >= BOOT_FAILURES_BEFORE_GIVING_UP:
            slot.given_up = True
            log.error(
                "Worker %d failed to boot %d times; not restarting it",
                slot.index,
                slot.boot_failures,
            )
            if all(s.given_up for s in self.slots):
                log.error("No worker can start; exiting")
                self._finish(EXIT_GIVE_UP)
            return
        loop.call_later(RESTART_DELAY * (1 + slot.boot_failures), self._restart, slot)

    def _restart(self, slot: Slot) -> None:
        if not self.stopping and not slot.given_up:
            self.spawn(slot)

    def _drain_channels(self) -> None:
        """Process every report already sent by workers."""
        for slot in self.slots:
            while slot.chan is not None:
                try:
                    ready = select.select([slot.chan], [], [], 0)[0]
                except (OSError, ValueError):
                    break
                if not ready:
                    break
                self._on_channel(slot)

    async def _watch_workers(self) -> None:
        """Ping ready workers; kill one whose loop stopped answering (hung)."""
        while not self.stopping:
            await asyncio.sleep(min(PING_INTERVAL, HANG_TIMEOUT / 3))
            now = time.monotonic()
            for slot in self.slots:
                if not slot.ready or slot.chan is None or slot.pid is None:
                    continue
                if now - slot.last_pong > HANG_TIMEOUT:
                    log.error(
                        "Worker %d (pid %d) has not answered for %.0f s; killing it",
                        slot.index,
                        slot.pid,
                        now - slot.last_pong,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signal.SIGKILL)
                    continue
                with contextlib.suppress(OSError):
                    channel.send(slot.chan, channel.Ping())

    # Drain ------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        """True while new sessions are refused (joins of live ones still route)."""
        return self.router.draining

    def set_draining(self, on: bool) -> None:
        """Enter or leave drain mode; the main process keeps it for a later listener."""
        self.router.draining = on
        log.info("Draining %s", "on: new sessions are refused" if on else "off")
        with contextlib.suppress(OSError):
            self.forkserver.setblocking(True)
            channel.send(self.forkserver, channel.Draining(on))
            self.forkserver.setblocking(False)
        for slot in self.slots:  # behind TLS a worker reads select itself
            slot.send(channel.Draining(on))

    # Questions to workers ----------------------------------------------------------
    async def ask(self, conn_id: str, request: channel.Request) -> channel.Reply:
        """Ask the worker owning ``conn_id`` (e.g. :class:`~channel.ListUsers`)."""
        slot = self.router.owner_of(conn_id)
        if slot is None:
            return channel.Reply(rid=request.rid, ok=False, error="No such connection.")
        return await slot.ask(request)

    # Intake ---------------------------------------------------------------------------
    async def _intake(self, sock: socket.socket, door: Door) -> None:
        """Read ``select`` from a fresh client and route it."""
        try:
            if door.spec.kind == "ws" and self.websocket is not None:
                await self.websocket.intake(sock, peer_host(sock))  # routed by its token
                return
            remote, port = peer_host(sock), 0
            if self.proxy_gate is not None and door.spec.kind in ("tcp", "tls"):
                client = await self.proxy_gate.admit(sock, remote)
                if client is None:
                    return  # refused or gone
                remote, port = client
            if SELECT_READ_BY[door.spec.kind] == "worker":
                # TLS: the worker terminates it and reads select itself.
                await self.router.place(sock, "", b"", door.spec.kind, remote, port)
                return
            try:
                selected = await read_select(sock, SELECT_TIMEOUT)
            except TimeoutError:
                log.info("Client did not select a protocol within %d s", SELECT_TIMEOUT)
                sock.close()
                return
            except GuacrError as exc:
                log.info("Bad select: %s", exc.message)
                await refuse(sock, exc)
                return
            except OSError:
                sock.close()
                return
            if selected is None:
                sock.close()
                return
            await self.router.route(
                sock, selected.target, selected.rest, door.spec.kind, remote, port
            )
        finally:
            if sock.fileno() >= 0 and self.stopping:
                sock.close()

    def _intake_done(self, task: asyncio.Task[None]) -> None:
        self._intakes.discard(task)
        if not self._intakes and not self._trim_pending:
            # A burst of clients is over: give the memory their reads took back to the
            # system (glibc keeps freed heap pages otherwise).
            self._trim_pending = True
            asyncio.get_running_loop().call_later(0.5, self._trim)

    def _trim(self) -> None:
        self._trim_pending = False
        if not self._intakes:
            trim_heap()

    async def _accept_loop(self, door: Door) -> None:
        loop = asyncio.get_running_loop()
        lsock = door.sock
        while not self.stopping:
            try:
                sock, _addr = await loop.sock_accept(lsock)
            except OSError as exc:
                if self.stopping:
                    return
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._intake(sock, door))
            self._intakes.add(task)
            task.add_done_callback(self._intake_done)

    # Run ------------------------------------------------------------------------------
    async def run(self) -> int:
        """Serve until a signal; returns the exit status."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("Listener running (pid %d)", os.getpid())
        self.forkserver.setblocking(False)
        loop.add_reader(self.forkserver.fileno(), self._on_forkserver)
        adopted = {a.slot for a in self.adopted}
        for a in self.adopted:
            self._adopt(a)
        for slot in self.slots:
            if slot.index not in adopted:
                self.spawn(slot)
        self._tasks.append(loop.create_task(self._watch_workers()))
        if self.shared is not None:
            log.info(
                "Shared registry %s; other instances reach this one at %s",
                redact(self.config.registry_url),
                self.shared.address,
            )
            self._tasks.append(loop.create_task(self.shared.run()))
        if self.cluster_control is not None:
            self._tasks.append(loop.create_task(self.cluster_control.serve()))
        for door in self.doors:
            door.sock.setblocking(False)
            self._tasks.append(loop.create_task(self._accept_loop(door)))
        # After this process's fork, and it never forks: a live grpc.aio server must not
        # be in a process that forks (guacr.control.server).
        intake.refused_hook = self.control.figures.count_refused
        await self.control.start()
        status = await self._done
        await self._stop_workers()
        return status

    def _finish(self, status: int) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(status)

    def _on_signal(self, sig: int) -> None:
        log.info("Received %s; shutting down", signal.Signals(sig).name)
        self._finish(0)

    async def _stop_workers(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for door in self.doors:
            door.sock.close()
        if self.draining:
            # Drained before the stop (guacr drain; Kubernetes preStop): live sessions
            # get up to shutdown_grace to end by themselves before they are ended.
            grace_end = time.monotonic() + self.config.shutdown_grace
            while any(True for _ in self.registry.connections()) and time.monotonic() < grace_end:
                await asyncio.sleep(0.1)
        await self.control.stop()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.cluster_control is not None:
            await self.cluster_control.close()
        if self.shared is not None:
            await self.shared.close()
        for pid in list(self.alive):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace
        while self.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # exit reports arrive through _on_forkserver
            for pid in list(self.alive):  # the main process may be gone: look ourselves
                if not _exists(pid):
                    self.alive.discard(pid)
        for pid in list(self.alive):
            log.warning("Worker pid %d did not stop in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _connection_record(worker: int, fields: dict[str, object]) -> ConnectionRecord:
    started = fields.get("started")
    return ConnectionRecord(
        id=str(fields.get("id", "")),
        worker=worker,
        protocol=str(fields.get("protocol", "")),
        owner=str(fields.get("owner", "")),
        remote=str(fields.get("remote", "")),
        started=float(started) if isinstance(started, int | float) else time.time(),
    )


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours (reaped by the main process when it lives)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def trim_heap() -> None:
    """Give the C heap's free pages back to the kernel (glibc only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
