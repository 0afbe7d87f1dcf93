"""Worker process: one asyncio (uvloop) event loop holding many connections.

The listener hands each client socket over the control channel together with the
bytes it already read (the ``select``). The worker runs handshakes and handlers,
reports the connection ids it owns (so joins can be routed here) and its load, and
sweeps all users once a second for timeouts and keep-alives.

Workers are forked by the main process (guacr.server.forkserver); see ``run_forked``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from guacr import handlers
from guacr import log as glog
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.server import channel
from guacr.server.user import User

if TYPE_CHECKING:
    from guacr.contract.handler import Handler
    from guacr.server.connection import Connection

log = logging.getLogger("guacr.worker")

SHUTDOWN_DEADLINE = 5.0


class Worker:
    """State of one worker process."""

    def __init__(self, chan: socket.socket, config: dict[str, Any]) -> None:
        self.chan = chan
        self.config = config
        self.connections: dict[str, Connection] = {}
        self.users: set[User] = set()
        self.stopping = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ssl_context = _ssl_context(config)
        for name, target in config.get("extra_handlers", {}).items():
            handlers.register(name, target)
        self._last_load = -1
        self.tasks: set[asyncio.Task[None]] = set()

    # Handler lookup ---------------------------------------------------------------
    def handler_class(self, name: str) -> type[Handler] | None:
        """The handler for a protocol name (None if unknown)."""
        return handlers.load(name)

    # Reports to the listener ----------------------------------------------------------
    def _report(self, opcode: str, *args: object, fds: list[int] | None = None) -> None:
        try:
            channel.send(self.chan, opcode, *args, fds=fds)
        except OSError:
            log.warning("Control channel to the listener is gone")

    def connection_opened(self, conn: Connection) -> None:
        """A new connection lives here: joins for it must be routed here."""
        self.connections[conn.id] = conn
        self._report("open", conn.id)

    def connection_closed(self, conn: Connection) -> None:
        """A connection ended."""
        if self.connections.pop(conn.id, None) is not None:
            self._report("close", conn.id)
        if self.stopping and not self.connections and not self.done.done():
            self.done.set_result(None)

    # Channel -------------------------------------------------------------------------
    def on_channel(self) -> None:
        """Read one control message (called by the loop when the channel is readable)."""
        try:
            msg, fds = channel.recv(self.chan)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            log.exception("Control channel failed")
            msg, fds = None, []
        if msg is None:
            log.error("Listener went away; stopping")
            asyncio.get_running_loop().remove_reader(self.chan.fileno())
            self.shutdown()
            return
        if msg[0] == "handoff" and len(fds) == 1 and len(msg) == 4:
            self._accept(fds[0], msg[1], channel.unpack_bytes(msg[2]), msg[3] == "1")
        elif msg[0] == "ping" and not fds:
            self._report("pong")  # answered by the loop itself: proof it is not blocked
        else:
            for fd in fds:
                os.close(fd)
            log.warning("Unexpected control message %r", msg[0])

    def _accept(self, fd: int, target: str, pending: bytes, tls: bool) -> None:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        if self.stopping:
            sock.close()
            return
        if tls:
            from guacr.server.tls import TlsIntake

            assert self.ssl_context is not None
            self.spawn(TlsIntake(self).serve(sock, self.ssl_context))
            return
        self.adopt(sock, target, pending)

    def adopt(self, sock: socket.socket, target: str, pending: bytes) -> None:
        """Serve a client whose ``select`` (``target``) was read; ``pending`` follows it."""
        sock.setblocking(False)
        self.spawn(self._attach(sock, User(self, target, pending)))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task, keeping a reference until it finishes."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _attach(self, sock: socket.socket, user: User) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: user, sock)
        except OSError as exc:
            log.info("Client socket unusable: %s", exc)
            sock.close()

    def forward_join(self, target: str, pending: bytes, fd: int) -> None:
        """Send a TLS-terminated join to the listener for the owning worker."""
        self._report("forward", target, channel.pack_bytes(pending), fds=[fd])

    # Timers ----------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Once a second: user timeouts and keep-alives; load reports."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for user in list(self.users):
                user.tick(now)
            load = len(self.users)
            if load != self._last_load:
                self._last_load = load
                self._report("load", load)

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
        for user in list(self.users):
            user.fail(err)
        if not self.connections and not self.done.done():
            self.done.set_result(None)


def _ssl_context(config: dict[str, Any]) -> ssl.SSLContext | None:
    cert, key = config.get("cert"), config.get("key")
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key or None)
    return ctx


async def serve(chan: socket.socket, config: dict[str, Any]) -> None:
    """Run a worker until told to stop."""
    loop = asyncio.get_running_loop()
    worker = Worker(chan, config)
    chan.setblocking(False)
    loop.add_reader(chan.fileno(), worker.on_channel)
    loop.add_signal_handler(signal.SIGTERM, worker.shutdown)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides
    sweeper = loop.create_task(worker.sweep())
    worker._report("ready")
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


def run_forked(chan: socket.socket, config: dict[str, Any]) -> None:
    """Worker entry point in a child of the fork server (guacr.server.forkserver)."""
    glog.setup(config.get("log_level", "info"))
    if os.environ.get("GUACR_TEST_WORKER_BOOT_FAIL"):
        sys.exit(3)  # test hook: a worker that cannot boot
    run_loop(serve(chan, config), config.get("uvloop", True))
