"""Worker process: one asyncio (uvloop) event loop holding many connections.

The listener hands each client socket over the control channel (:class:`Handoff`)
with the bytes it already read (the ``select``) and the user id it counts the client
by. The worker runs handshakes and handlers and reports, as they happen, each user's
end of handshake and departure and each connection's opening and end (so joins can be
routed here and the listener's registry stays exact); once a second it sweeps users
for timeouts and keep-alives and reports byte counters. It answers the listener's
questions (:class:`ListUsers`, :class:`Terminate`).

If the listener dies, the worker keeps its connections: it waits (up to
:data:`REATTACH_TIMEOUT`) for the main process to hand it a channel to the new
listener (:class:`Attach`), then re-registers everything it serves (:class:`Hello`).

Workers are forked by the main process (guacr.server.forkserver); see ``run_forked``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from guacr import handlers
from guacr import log as glog
from guacr.config import Config
from guacr.control import figures as figures_mod
from guacr.control.figures import WorkerFigures
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.server import channel
from guacr.server.forward import serve_relay
from guacr.server.transport import StreamAdapter
from guacr.server.user import User
from guacr.server.ws_door import off_reason, serve_tunnel
from guacr.server.wss import WssDoor, serve_wss

if TYPE_CHECKING:
    from guacr.contract.handler import Handler
    from guacr.server.connection import Connection

log = logging.getLogger("guacr.worker")

SHUTDOWN_DEADLINE = 5.0
FIGURES_INTERVAL = 2  # sweeps (seconds) between figure reports to the listener
# A sweep yields to the loop after this many connections or users: with 100 sessions a
# worker's sweep took 1-3 ms of its loop in one go, and the workers, started together,
# swept at the same moment; ~40% of the calm typing tail (keys over 5 ms) came within
# 10 ms of a sweep (issue 16). So each worker also sweeps at its own phase of the second.
SWEEP_SLICE = 20
_T = TypeVar("_T")
MAX_QUEUED = 100_000  # reports waiting for a listener that is not reading
# How long a worker whose listener died waits for the new one before giving up.
REATTACH_TIMEOUT = 30.0
# The loop thread gives the GIL up in every poll and in every ctypes call (the terminal
# emulator); while a thread holds it (image encoding, RDP/VNC decoding) the loop then
# waits for that thread's switch interval, 5 ms by default, each time: measured, a
# 50 us call took 47 ms at p99 beside one busy thread, 0.8 ms with 0.5 ms (issue 16).
SWITCH_INTERVAL = 0.0005


async def _in_slices(items: Iterable[_T]) -> AsyncIterator[_T]:
    """A snapshot of ``items``, yielding to the loop after every SWEEP_SLICE of them."""
    for i, item in enumerate(list(items), 1):
        yield item
        if i % SWEEP_SLICE == 0:
            await asyncio.sleep(0)


class Worker:
    """State of one worker process."""

    def __init__(
        self, chan: socket.socket, config: Config, main: socket.socket | None = None
    ) -> None:
        self.chan: socket.socket | None = chan
        self.main = main  # channel to the main process (None in the warm-up)
        self.config = config
        self.connections: dict[str, Connection] = {}
        self.users: dict[str, User] = {}
        self.stopping = False
        self.draining = False  # new sessions refused (the listener says; TLS reads select here)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ssl_context = _ssl_context(config)
        self.requests = channel.Requests()  # questions to the listener (Redeem)
        self.wss = WssDoor.from_config(config, self) if _wss_on(config) else None
        for name, target in config.extra_handlers().items():
            handlers.register(name, target)
        self._counters: dict[str, tuple[int, int]] = {}
        # Metrics and control-API figures (guacr.control.figures), sent every 2 s.
        self.figures = figures_mod.CURRENT = WorkerFigures()
        self._io_seen: dict[str, tuple[int, int, int, int]] = {}
        self._details_sent: dict[str, list[Any]] = {}
        self._frames_seen: dict[str, int] = {}
        self._orphaned: asyncio.TimerHandle | None = None
        self._queued: deque[tuple[channel.Message, list[int]]] = deque()
        self.tasks: set[asyncio.Task[None]] = set()

    # Handler lookup ---------------------------------------------------------------
    def handler_class(self, name: str) -> type[Handler] | None:
        """The handler for a protocol name (None if unknown)."""
        return handlers.load(name)

    # Reports to the listener ----------------------------------------------------------
    def report(self, msg: channel.Message, fds: list[int] | None = None) -> bool:
        """Send a message to the listener (dropped while there is none).

        Never blocks the loop: while the listener is not reading, messages wait in
        order (descriptors duplicated) and go out once the channel is writable.
        """
        chan = self.chan
        if chan is None:
            return False
        if not self._queued:
            try:
                channel.send(chan, msg, fds)
                return True
            except BlockingIOError:
                asyncio.get_running_loop().add_writer(chan.fileno(), self._flush)
            except OSError:
                log.warning("Control channel to the listener is gone")
                return False
        if len(self._queued) >= MAX_QUEUED:
            log.error("The listener is not reading; dropped %s", msg.op)
            return False
        self._queued.append((msg, [os.dup(fd) for fd in fds or ()]))
        return True

    def _flush(self) -> None:
        """The channel is writable again: send what waited, in order."""
        chan = self.chan
        while chan is not None and self._queued:
            msg, fds = self._queued[0]
            try:
                channel.send(chan, msg, fds)
            except BlockingIOError:
                return
            except OSError:
                break
            self._queued.popleft()
            for fd in fds:
                os.close(fd)
        self._drop_queue()

    def _drop_queue(self) -> None:
        """Forget waiting messages (sent, or superseded by a new listener's Hello)."""
        if self.chan is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_writer(self.chan.fileno())
        for _msg, fds in self._queued:
            for fd in fds:
                os.close(fd)
        self._queued.clear()

    def connection_opened(self, conn: Connection, owner: User) -> None:
        """A new connection lives here: joins for it must be routed here."""
        self.connections[conn.id] = conn
        self.report(
            channel.ConnectionOpened(
                conn.id, conn.handler_cls.protocol, owner.id, owner.remote, conn.started
            )
        )

    def connection_closed(self, conn: Connection) -> None:
        """A connection ended."""
        if self.connections.pop(conn.id, None) is not None:
            self._counters.pop(conn.id, None)
            self._details_sent.pop(conn.id, None)
            self._count_frames(conn)
            self._frames_seen.pop(conn.id, None)
            err = conn.end_error
            recording = conn.recording.path if conn.recording is not None else ""
            self.report(
                channel.ConnectionClosed(
                    conn.id,
                    int(err.status) if err is not None else 0,
                    err.message if err is not None else "",
                    recording,
                )
            )
        if self.stopping and not self.connections and not self.done.done():
            self.done.set_result(None)

    def user_arrived(self, user: User) -> None:
        """A handed-off user is being served here."""
        self.users[user.id] = user

    def user_joined(self, user: User) -> None:
        """A user finished its handshake into its connection."""
        assert user.conn is not None
        self.figures.count("handshakes", user.conn.handler_cls.protocol)
        self.report(
            channel.UserJoined(user.id, user.conn.id, user.owner, user.info.name, user.port)
        )

    def user_gone(self, user_id: str) -> None:
        """A handed-off user left, whatever stage it reached (reported once)."""
        user = self.users.pop(user_id, None)
        if user is not None:
            self._count_io(user)
            self._io_seen.pop(user_id, None)
            self.report(channel.UserLeft(user_id))

    # Figures (metrics, control API) ------------------------------------------------------
    def protocol_of(self, user: User) -> str:
        """The protocol a user's connection speaks ("unknown" before ``select`` is read)."""
        if user.conn is not None:
            return user.conn.handler_cls.protocol
        target = user.target
        return target if target and not target.startswith("$") else "unknown"

    def _count_io(self, user: User) -> None:
        now = (user.bytes_in, user.bytes_out, user.instructions_in, user.instructions_out)
        seen = self._io_seen.get(user.id, (0, 0, 0, 0))
        if now == seen:
            return
        self._io_seen[user.id] = now
        protocol = self.protocol_of(user)
        for name, n, before in zip(
            ("bytes_in", "bytes_out", "instructions_in", "instructions_out"), now, seen, strict=True
        ):
            if n > before:
                self.figures.count(name, protocol, n - before)

    def _count_frames(self, conn: Connection) -> None:
        seen = self._frames_seen.get(conn.id, 0)
        if conn.frames > seen:
            self.figures.count("frames", conn.handler_cls.protocol, conn.frames - seen)
            self._frames_seen[conn.id] = conn.frames

    async def _report_figures(self) -> None:
        figures = self.figures
        async for user in _in_slices(self.users.values()):
            self._count_io(user)
        changed: dict[str, Any] = {}
        async for conn in _in_slices(self.connections.values()):
            if conn.closed:
                continue
            self._count_frames(conn)
            params = conn.owner.params if conn.owner is not None else None
            port = params.get("port") if params is not None else ""
            details = [
                params.get("hostname") if params is not None else "",
                int(port) if port.isdigit() else 0,
                conn.frames,
                conn.lag,
                sorted(u.id for u in conn.users if u.read_only),
            ]
            if self._details_sent.get(conn.id) != details:
                self._details_sent[conn.id] = details
                changed[conn.id] = details
        # The gauges in one go, from the users and connections as they are now.
        sessions, users = figures.gauges["sessions"], figures.gauges["users"]
        sessions.clear()
        users.clear()
        for user in self.users.values():
            users[self.protocol_of(user)] += 1
        for conn in self.connections.values():
            if not conn.closed:
                sessions[conn.handler_cls.protocol] += 1
        self.report(channel.Figures(os.getpid(), figures.snapshot(), changed))

    # Channel -------------------------------------------------------------------------
    def on_channel(self) -> None:
        """Read one control message (called by the loop when the channel is readable)."""
        if self.chan is None:
            return
        try:
            msg, fds = channel.recv(self.chan)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            log.exception("Control channel failed")
            msg, fds = None, []
        if msg is None:
            self._listener_gone()
            return
        if isinstance(msg, channel.Handoff) and len(fds) == 1:
            pending = channel.unpack_bytes(msg.pending)
            if msg.tunnel:  # an upgraded, verified WebSocket tunnel
                serve_tunnel(self, fds[0], msg.user, msg.remote, msg.tunnel, pending, msg.door)
                return
            self._accept(fds[0], msg.user, msg.target, pending, msg.door, msg.remote, msg.port)
            return
        if isinstance(msg, channel.Relay) and len(fds) == 1:
            self.spawn(serve_relay(self, fds[0], msg))  # guacr.server.forward
            return
        for fd in fds:
            os.close(fd)
        if isinstance(msg, channel.Ping):
            self.report(channel.Pong())  # answered by the loop itself: proof it is not blocked
        elif isinstance(msg, channel.ListUsers):
            self.report(self._list_users(msg))
        elif isinstance(msg, channel.Terminate):
            self.report(self._terminate(msg))
        elif isinstance(msg, channel.Draining):
            self.draining = msg.on
        elif isinstance(msg, channel.Reply):
            self.requests.resolve(msg)
        else:
            log.warning("Unexpected control message %r", msg.op)

    def _list_users(self, msg: channel.ListUsers) -> channel.Reply:
        conn = self.connections.get(msg.connection)
        if conn is None:
            return channel.Reply(msg.rid, False, "No such connection.")
        users = [
            {
                "id": u.id,
                "name": u.info.name,
                "owner": u.owner,
                "read_only": u.read_only,
                "remote": u.remote,
                "port": u.port,
                "lag": u.processing_lag,
            }
            for u in conn.users
        ]
        return channel.Reply(msg.rid, True, "", {"users": users})

    def _terminate(self, msg: channel.Terminate) -> channel.Reply:
        conn = self.connections.get(msg.connection)
        if conn is None:
            return channel.Reply(msg.rid, False, "No such connection.")
        try:
            status = Status(msg.status)
        except ValueError:
            status = Status.SESSION_CLOSED
        conn.end(GuacrError(msg.message, status))
        return channel.Reply(msg.rid, True)

    def _listener_gone(self) -> None:
        """The listener died: keep serving, and wait for the main process to attach us
        to its successor."""
        loop = asyncio.get_running_loop()
        self._drop_queue()
        self.requests.fail_all("no listener")
        if self.chan is not None:
            loop.remove_reader(self.chan.fileno())
            self.chan.close()
            self.chan = None
        if self.main is None or self.stopping:
            log.error("Listener went away; stopping")
            self.shutdown()
            return
        log.warning(
            "Listener went away; keeping %d connections until a new one attaches",
            len(self.connections),
        )
        self._orphaned = loop.call_later(REATTACH_TIMEOUT, self._no_listener)

    def _no_listener(self) -> None:
        log.error("No new listener within %.0f s; stopping", REATTACH_TIMEOUT)
        self.shutdown()

    def on_main(self) -> None:
        """A message from the main process: a channel to a new listener."""
        assert self.main is not None
        try:
            msg, fds = channel.recv(self.main)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            msg, fds = None, []
        if msg is None:
            # The main process is gone: no listener can come back. The current one (if
            # any) stops us; without one, nobody ever will.
            asyncio.get_running_loop().remove_reader(self.main.fileno())
            self.main.close()
            self.main = None
            if self.chan is None:
                self.shutdown()
            return
        if isinstance(msg, channel.Attach) and len(fds) == 1:
            self.attach(socket.socket(fileno=fds[0]))
            return
        for fd in fds:
            os.close(fd)

    def attach(self, chan: socket.socket) -> None:
        """Serve a new listener: re-register every connection and user, then ready."""
        loop = asyncio.get_running_loop()
        self._drop_queue()
        if self.chan is not None:
            loop.remove_reader(self.chan.fileno())
            self.chan.close()
        if self._orphaned is not None:
            self._orphaned.cancel()
            self._orphaned = None
        self.chan = chan
        chan.setblocking(False)
        loop.add_reader(chan.fileno(), self.on_channel)
        self._details_sent.clear()  # the new listener knows no details yet
        connections = [
            {
                "id": c.id,
                "protocol": c.handler_cls.protocol,
                "owner": c.owner.id if c.owner else "",
                "remote": c.owner.remote if c.owner else "",
                "started": c.started,
            }
            for c in self.connections.values()
            if not c.closed
        ]
        users = [
            {
                "user": u.id,
                "connection": u.conn.id if u.conn is not None else "",
                "owner": u.owner,
                "name": u.info.name,
                "remote": u.remote,
                "port": u.port,
                "door": u.door,
            }
            for u in self.users.values()
        ]
        self.report(channel.Hello(os.getpid(), connections, users))
        log.info("Attached to a new listener (%d connections)", len(connections))

    def _accept(
        self,
        fd: int,
        user_id: str,
        target: str,
        pending: bytes,
        door: str,
        remote: str,
        port: int = 0,
    ) -> None:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        if self.stopping:
            sock.close()
            self.report(channel.UserLeft(user_id))
            return
        if door == "tls":
            from guacr.server.tls import TlsIntake

            assert self.ssl_context is not None
            self.spawn(TlsIntake(self, user_id, remote, port).serve(sock, self.ssl_context))
            return
        if door == "wss":
            if self.wss is None:
                log.error("A wss client arrived but the wss door is not configured here")
                sock.close()
                self.report(channel.UserLeft(user_id))
                return
            self.spawn(serve_wss(self, self.wss, sock, user_id))
            return
        self.adopt(sock, target, pending, user_id, remote, door, port)

    def adopt(
        self,
        sock: socket.socket,
        target: str,
        pending: bytes,
        user_id: str = "",
        remote: str = "",
        door: str = "tcp",
        port: int = 0,
    ) -> None:
        """Serve a client whose ``select`` (``target``) was read; ``pending`` follows it
        (``port``: the client's when a trusted relay named it, else 0)."""
        sock.setblocking(False)
        user = User(
            self, target, pending, user_id=user_id, remote=remote, door=door, remote_port=port
        )
        self.spawn(self._attach(sock, user))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task, keeping a reference until it finishes."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _attach(self, sock: socket.socket, user: User) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: StreamAdapter(user), sock)
        except OSError as exc:
            log.info("Client socket unusable: %s", exc)
            sock.close()
            self.user_gone(user.id)

    async def ask(self, request: channel.Request, timeout: float = 5.0) -> channel.Reply:
        """Ask the listener (e.g. :class:`~channel.Redeem`) and await its reply."""
        fut = self.requests.prepare(request)
        if not self.report(request):
            fut.cancel()
            return channel.Reply(rid=request.rid, ok=False, error="no listener")
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return channel.Reply(rid=request.rid, ok=False, error="the listener did not answer")

    def forward_join(
        self, target: str, pending: bytes, fd: int, remote: str, port: int = 0
    ) -> bool:
        """Send a TLS-terminated join to the listener for the owning worker."""
        msg = channel.Forward(target, channel.pack_bytes(pending), remote, port=port)
        return self.report(msg, [fd])

    # Timers ----------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Once a second: user timeouts and keep-alives; byte counters."""
        # This worker's phase (see SWEEP_SLICE): the first tick comes within a second,
        # so the first figures still reach the listener within FIGURES_INTERVAL seconds
        # of the start, as every later report does (a new worker's first handshakes
        # went unreported for up to 3 s, which the metrics test read as quiet).
        interval = random.random()
        ticks = 0
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            self.figures.loop_lag = max(0.0, now - before - interval)
            interval = 1.0
            async for user in _in_slices(self.users.values()):
                user.tick(now)
            await self._report_counters()
            ticks += 1
            if ticks % FIGURES_INTERVAL == 0 and self.chan is not None:
                await self._report_figures()

    async def _report_counters(self) -> None:
        changed: list[list[Any]] = []
        async for conn in _in_slices(self.connections.values()):
            counters = conn.byte_counts()
            if self._counters.get(conn.id) != counters:
                self._counters[conn.id] = counters
                changed.append([conn.id, *counters])
        if changed and self.chan is not None:
            for i in range(0, len(changed), 500):
                self.report(channel.Stats(changed[i : i + 500]))

    # Shutdown -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop: tell every user, end every connection, exit once closed or at deadline."""
        if self.stopping:
            return
        self.stopping = True
        log.info("Worker shutting down (%d connections)", len(self.connections))
        err = GuacrError("Server is shutting down.", Status.SERVER_BUSY)
        for conn in list(self.connections.values()):
            conn.end(err)
        for user in list(self.users.values()):
            user.fail(err)
        if not self.connections and not self.done.done():
            self.done.set_result(None)


def _wss_on(config: Config) -> bool:
    """Whether this daemon opens a ``wss`` door (the worker then needs its TLS)."""
    return bool(config.websocket_tls and config.websocket_bind_port and not off_reason(config))


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(config.cert, config.key or None)
    return ctx


async def serve(chan: socket.socket, config: Config, main: socket.socket | None = None) -> None:
    """Run a worker until told to stop."""
    loop = asyncio.get_running_loop()
    worker = Worker(chan, config, main)
    chan.setblocking(False)
    loop.add_reader(chan.fileno(), worker.on_channel)
    if main is not None:
        main.setblocking(False)
        loop.add_reader(main.fileno(), worker.on_main)
    loop.add_signal_handler(signal.SIGTERM, worker.shutdown)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides
    sweeper = loop.create_task(worker.sweep())
    worker.report(channel.Ready(os.getpid()))
    await worker.done
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(c.wait_closed() for c in list(worker.connections.values()))),
            SHUTDOWN_DEADLINE,
        )
    await asyncio.sleep(0.05)  # let transports flush their final bytes
    sweeper.cancel()


def run_loop(coro: Any, use_uvloop: bool = True) -> None:
    """Run ``coro`` on uvloop when installed, else asyncio."""
    if use_uvloop:
        try:
            import uvloop

            uvloop.run(coro)
            return
        except ImportError:
            pass
    asyncio.run(coro)


def run_forked(chan: socket.socket, config: Config, main: socket.socket | None = None) -> None:
    """Worker entry point in a child of the fork server (guacr.server.forkserver)."""
    glog.setup(config.log_level, config.log_format, config.syslog_address)
    if os.environ.get("GUACR_TEST_WORKER_BOOT_FAIL"):
        sys.exit(3)  # test hook: a worker that cannot boot
    sys.setswitchinterval(SWITCH_INTERVAL)
    run_loop(serve(chan, config, main), config.uvloop)
