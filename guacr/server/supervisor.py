"""The listener process: owns the listening sockets, supervises workers, routes users.

It is forked by the main process (guacr.server.forkserver), which also forks the
workers on its request, so all of them share the code the main process preloaded.

For each accepted client it reads only the ``select`` instruction (15 s limit, with
the sans-I/O parser), then hands the socket plus the bytes already read to a worker
over that worker's SEQPACKET channel (``socket.send_fds``):

* ``select <protocol>`` goes to the least-loaded worker;
* ``select $<id>`` goes to the worker that owns connection ``$<id>`` (workers report
  ``open``/``close``), or gets ``error "No such connection." 516`` from here.

TLS (``-C``/``-K``): the ``select`` can only be read after the TLS handshake, and a TLS
session cannot move between processes with its descriptor. So with TLS the listener
hands the raw socket to the least-loaded worker at once; that worker terminates TLS
and reads ``select``. A join for a connection owned elsewhere is sent back here
(``forward``) as one end of a socketpair, routed like any join, and the TLS worker
proxies bytes between the TLS session and its end of the pair.

Workers that die are restarted in the same slot; their connections end, nobody else
notices. A slot whose worker dies before reporting ``ready`` three times in a row is
given up (no restart loop). SIGTERM/SIGINT: stop accepting, ask workers to tell their
users and close, wait up to a deadline, then kill what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from guacr import handlers
from guacr.errors import GuacrError
from guacr.protocol import builders as b
from guacr.protocol.handshake import parse_select
from guacr.protocol.parser import Parser
from guacr.protocol.status import Status
from guacr.server import channel

log = logging.getLogger("guacr.listener")

SELECT_TIMEOUT = 15.0
BOOT_FAILURES_BEFORE_GIVING_UP = 3
RESTART_DELAY = 0.2
STOP_DEADLINE = 10.0
PING_INTERVAL = 5.0
# A worker whose event loop has not answered a ping for this long is hung (a handler
# blocking the loop): it is killed and restarted like a crashed one.
HANG_TIMEOUT = float(os.environ.get("GUACR_WORKER_HANG_TIMEOUT", "30"))


@dataclass
class Slot:
    """One worker position; its process is replaced when it dies."""

    index: int
    pid: int | None = None  # known once the fork server answers ``spawned``
    chan: socket.socket | None = None
    ready: bool = False  # serving now
    was_ready: bool = False  # reached ``ready`` since its last start
    last_pong: float = 0.0
    load: int = 0
    boot_failures: int = 0
    given_up: bool = False
    started: float = 0.0
    owned: set[str] = field(default_factory=set)


class Supervisor:
    """Listener + worker supervisor."""

    def __init__(
        self,
        config: dict[str, Any],
        sockets: list[socket.socket],
        forkserver: socket.socket,
        protocols: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.forkserver = forkserver
        self.slots = [Slot(i) for i in range(max(1, int(config.get("workers", 1))))]
        self.owners: dict[str, Slot] = {}
        self.stopping = False
        self.tls = bool(config.get("cert"))
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._intakes: set[asyncio.Task[None]] = set()
        self._done: asyncio.Future[int] | None = None
        self.alive: set[int] = set()  # worker pids not yet reported exited
        # Protocol names known to be installed. Rescanned (entry points: reading every
        # installed package's metadata) only for a name not known yet, so a handler
        # installed while guacr runs is still found.
        self.protocols = protocols
        for name, target in config.get("extra_handlers", {}).items():
            handlers.register(name, target)

    # Workers --------------------------------------------------------------------------
    def spawn(self, slot: Slot) -> None:
        """Start (or restart) the worker of ``slot``: the fork server forks it."""
        parent_end, child_end = channel.pair()
        channel.send(self.forkserver, "spawn", slot.index, fds=[child_end.fileno()])
        child_end.close()
        slot.pid = None
        slot.chan = parent_end
        slot.ready = slot.was_ready = False
        slot.load = 0
        slot.started = time.monotonic()
        parent_end.setblocking(False)
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._on_channel, slot)

    def _on_forkserver(self) -> None:
        """``spawned,<slot>,<pid>`` and ``exited,<pid>,<status>`` from the main process."""
        try:
            msg, fds = channel.recv(self.forkserver)
        except BlockingIOError:
            return
        for fd in fds:
            os.close(fd)
        if msg is None:
            log.error("The main process went away; stopping")
            asyncio.get_running_loop().remove_reader(self.forkserver.fileno())
            if self._done is not None and not self._done.done():
                self._done.set_result(1)
            return
        if msg[0] == "spawned" and len(msg) == 3:
            slot = self.slots[int(msg[1])]
            slot.pid = int(msg[2])
            self.alive.add(slot.pid)
            log.debug("Worker %d started (pid %d)", slot.index, slot.pid)
        elif msg[0] == "exited" and len(msg) == 3:
            pid, status = int(msg[1]), int(msg[2])
            self.alive.discard(pid)
            for slot in self.slots:
                if slot.pid == pid:
                    self._worker_exited(slot, status)

    def _on_channel(self, slot: Slot) -> None:
        assert slot.chan is not None
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
        op = msg[0]
        if op == "ready":
            slot.ready = True
            slot.boot_failures = 0
            slot.was_ready = True
            slot.last_pong = time.monotonic()
            log.info("Worker %d ready (pid %s)", slot.index, slot.pid or "?")
        elif op == "open" and len(msg) == 2:
            slot.owned.add(msg[1])
            self.owners[msg[1]] = slot
        elif op == "close" and len(msg) == 2:
            slot.owned.discard(msg[1])
            if self.owners.get(msg[1]) is slot:
                del self.owners[msg[1]]
        elif op == "load" and len(msg) == 2:
            slot.load = int(msg[1])
        elif op == "pong":
            slot.last_pong = time.monotonic()
        elif op == "ws_gone" and len(msg) == 2:
            door = getattr(self, "ws_door", None)
            if door is not None:
                door.tunnel_ended(msg[1])
        elif op == "forward" and len(msg) == 3 and len(fds) == 1:
            self._route_join(fds[0], msg[1], channel.unpack_bytes(msg[2]))
            fds = []
        else:
            log.warning("Unexpected message %r from worker %d", op, slot.index)
        for fd in fds:
            os.close(fd)

    def _channel_closed(self, slot: Slot) -> None:
        """Stop routing to a worker whose channel closed (it is exiting)."""
        if slot.chan is not None:
            asyncio.get_running_loop().remove_reader(slot.chan.fileno())
            slot.chan.close()
            slot.chan = None
        slot.ready = False
        for cid in slot.owned:
            if self.owners.get(cid) is slot:
                del self.owners[cid]
        slot.owned.clear()

    def _worker_exited(self, slot: Slot, code: int) -> None:
        loop = asyncio.get_running_loop()
        self._channel_closed(slot)
        pid, slot.pid = slot.pid, None
        if self.stopping:
            return
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
            if all(s.given_up for s in self.slots) and self._done and not self._done.done():
                log.error("No worker can start; exiting")
                self._done.set_result(1)
            return
        loop.call_later(RESTART_DELAY * (1 + slot.boot_failures), self._restart, slot)

    def _restart(self, slot: Slot) -> None:
        if not self.stopping and not slot.given_up:
            self.spawn(slot)

    def _least_loaded(self) -> Slot | None:
        ready = [s for s in self.slots if s.ready and s.chan is not None]
        return min(ready, key=lambda s: s.load) if ready else None

    # Routing --------------------------------------------------------------------------
    def _handoff(self, slot: Slot, fd: int, target: str, pending: bytes, tls: bool) -> bool:
        assert slot.chan is not None
        try:
            slot.chan.setblocking(True)
            channel.send(
                slot.chan, "handoff", target, channel.pack_bytes(pending), int(tls), fds=[fd]
            )
        except OSError as exc:
            log.error("Hand-off to worker %d failed: %s", slot.index, exc)
            return False
        finally:
            if slot.chan is not None:
                slot.chan.setblocking(False)
        slot.load += 1
        return True

    def _drain_channels(self) -> None:
        """Process every report already sent by workers.

        A worker reports ``open`` before its client can see the id in ``ready``, so
        after draining, an id missing here really is unknown.
        """
        for slot in self.slots:
            while slot.chan is not None:
                try:
                    ready = select.select([slot.chan], [], [], 0)[0]
                except (OSError, ValueError):
                    break
                if not ready:
                    break
                self._on_channel(slot)

    def _route_join(self, fd: int, target: str, pending: bytes) -> None:
        slot = self.owners.get(target)
        if slot is None:
            self._drain_channels()
            slot = self.owners.get(target)
        if slot is None or not slot.ready:
            with socket.socket(fileno=fd) as s:
                _reply_error(s, GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND))
            log.info('Connection "%s" does not exist.', target)
            return
        self._handoff(slot, fd, target, pending, False)
        os.close(fd)

    def route(self, sock: socket.socket, target: str, pending: bytes) -> None:
        """Send a client whose ``select`` was read to the right worker."""
        if target.startswith("$"):
            self._route_join(sock.detach(), target, pending)
            return
        if target not in self.protocols:
            self.protocols = frozenset(handlers.available())
        if target not in self.protocols:
            log.info('Support for protocol "%s" is not installed', target[:64])
            _reply_error(
                sock, GuacrError(f'Protocol "{target[:64]}" is not supported.', Status.UNSUPPORTED)
            )
            return
        slot = self._least_loaded()
        if slot is None:
            _reply_error(sock, GuacrError("No worker is available.", Status.SERVER_BUSY))
            return
        fd = sock.detach()
        if not self._handoff(slot, fd, target, pending, False):
            with socket.socket(fileno=fd) as s:
                _reply_error(s, GuacrError("Internal server error.", Status.SERVER_ERROR))
            return
        os.close(fd)

    async def _intake(self, sock: socket.socket) -> None:
        """Read ``select`` from a fresh client and route it."""
        loop = asyncio.get_running_loop()
        parser = Parser()
        try:
            async with asyncio.timeout(SELECT_TIMEOUT):
                while True:
                    data = await loop.sock_recv(sock, 8192)
                    if not data:
                        sock.close()
                        return
                    instructions = parser.receive_data(data)
                    if instructions:
                        break
            target = parse_select(instructions[0])
        except TimeoutError:
            log.info("Client did not select a protocol within %d s", SELECT_TIMEOUT)
            sock.close()
            return
        except GuacrError as exc:
            log.info("Bad select: %s", exc.message)
            _reply_error(sock, exc)
            return
        except OSError:
            sock.close()
            return
        rest = b"".join(ins_bytes(i) for i in instructions[1:]) + parser.pending_bytes()
        self.route(sock, target, rest)

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
                    channel.send(slot.chan, "ping")

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
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
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                slot = self._least_loaded()
                if slot is None:
                    sock.close()
                    continue
                fd = sock.detach()
                self._handoff(slot, fd, "", b"", True)
                os.close(fd)
            else:
                task = loop.create_task(self._intake(sock))
                self._intakes.add(task)
                task.add_done_callback(self._intakes.discard)

    # WebSocket door (issue 11) ---------------------------------------------------------
    async def _websocket_door(self, lsock: socket.socket) -> None:
        from guacr.server.ws_door import ListenerDoor, door_settings

        settings = door_settings(self.config)
        if settings is None:
            return
        self.ws_door = ListenerDoor(
            settings, self._route_tunnel, int(self.config.get("websocket_max_per_address") or 0)
        )
        await self.ws_door.serve(lsock)

    async def _route_tunnel(self, sock: socket.socket, admitted: Any) -> None:
        import json

        from guacr.server.ws_intake import refuse

        grant = admitted.grant
        target = grant.selector
        error: GuacrError | None = None
        slot: Slot | None
        if target.startswith("$"):
            slot = self.owners.get(target)
            if slot is None:
                self._drain_channels()
                slot = self.owners.get(target)
            if slot is None or not slot.ready:
                error = GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND)
        else:
            if target not in self.protocols:
                self.protocols = frozenset(handlers.available())
            slot = self._least_loaded()
            if target not in self.protocols:
                error = GuacrError(
                    f'Protocol "{target[:64]}" is not supported.', Status.UNSUPPORTED
                )
            elif slot is None:
                error = GuacrError("No worker is available.", Status.SERVER_BUSY)
        if error is not None or slot is None:
            self.ws_door.tunnel_ended(admitted.remote)
            await refuse(sock, error or GuacrError("Internal server error.", Status.SERVER_ERROR))
            return
        extra = json.dumps(
            {
                "grant": grant.to_wire(),
                "remote": admitted.remote,
                "max_message": self.ws_door.settings.max_message,
            }
        )
        fd = sock.detach()
        assert slot.chan is not None
        try:
            slot.chan.setblocking(True)
            channel.send(
                slot.chan,
                "handoff",
                target,
                channel.pack_bytes(admitted.leftover),
                2,
                extra,
                fds=[fd],
            )
            slot.load += 1
        except OSError as exc:
            log.error("Hand-off to worker %d failed: %s", slot.index, exc)
            self.ws_door.tunnel_ended(admitted.remote)
        finally:
            if slot.chan is not None:
                slot.chan.setblocking(False)
            os.close(fd)

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
        for slot in self.slots:
            self.spawn(slot)
        self._accept_tasks.append(loop.create_task(self._watch_workers()))
        for lsock in self.sockets:
            lsock.setblocking(False)
            if lsock.fileno() == self.config.get("websocket_fd"):
                self._accept_tasks.append(loop.create_task(self._websocket_door(lsock)))
                continue
            self._accept_tasks.append(loop.create_task(self._accept_loop(lsock)))
        status = await self._done
        await self._stop_workers()
        return status

    def _on_signal(self, sig: int) -> None:
        log.info("Received %s; shutting down", signal.Signals(sig).name)
        if self._done is not None and not self._done.done():
            self._done.set_result(0)

    async def _stop_workers(self) -> None:
        self.stopping = True
        for task in self._accept_tasks:
            task.cancel()
        for lsock in self.sockets:
            lsock.close()
        for pid in list(self.alive):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE
        while self.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # exit reports arrive through _on_forkserver
        for pid in list(self.alive):
            log.warning("Worker pid %d did not stop in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def ins_bytes(ins: tuple[str, ...]) -> bytes:
    """Re-encode an already parsed instruction (pipelined after ``select``)."""
    from guacr.protocol.instruction import encode

    return encode(ins[0], *ins[1:])


def _reply_error(sock: socket.socket, error: GuacrError) -> None:
    """Send ``error`` + ``disconnect`` on a socket still owned by the listener, then close."""
    try:
        sock.setblocking(True)
        sock.settimeout(1.0)
        sock.sendall(b.error(error.message, error.status) + b.disconnect())
    except OSError:
        pass
    finally:
        sock.close()
