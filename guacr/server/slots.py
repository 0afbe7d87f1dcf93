"""Worker slots: the listener's side of each worker process.

A slot is a position (index 0..N-1) whose process is replaced when it dies. It holds
the control channel to that process and the questions asked on it; what the worker
serves (users, connections) lives in the registry, keyed by slot index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

from guacr.server import channel

log = logging.getLogger("guacr.listener")


@dataclass
class Slot:
    """One worker position; its process is replaced when it dies."""

    index: int
    pid: int | None = None  # known once the fork server answers ``spawned``
    chan: socket.socket | None = None
    ready: bool = False  # serving now
    was_ready: bool = False  # reached ``ready`` since its last start
    last_pong: float = 0.0
    boot_failures: int = 0
    given_up: bool = False
    started: float = 0.0
    requests: channel.Requests = field(default_factory=channel.Requests)

    def send(self, msg: channel.Message, fds: list[int] | None = None) -> bool:
        """Send a message to the worker (blocking briefly if its queue is full)."""
        if self.chan is None:
            return False
        try:
            self.chan.setblocking(True)
            channel.send(self.chan, msg, fds)
            return True
        except OSError as exc:
            log.error("Message to worker %d failed: %s", self.index, exc)
            return False
        finally:
            if self.chan is not None:
                with contextlib.suppress(OSError):
                    self.chan.setblocking(False)

    async def ask(self, request: channel.Request, timeout: float = 5.0) -> channel.Reply:
        """Send a request and await the worker's :class:`~channel.Reply`."""
        fut = self.requests.prepare(request)
        if not self.send(request):
            fut.cancel()
            return channel.Reply(rid=request.rid, ok=False, error="worker unavailable")
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return channel.Reply(rid=request.rid, ok=False, error="worker did not answer")

    def detach(self) -> None:
        """Forget the channel (the process is exiting or gone)."""
        if self.chan is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.chan.fileno())
            self.chan.close()
            self.chan = None
        self.ready = False
        self.requests.fail_all("worker gone")

    def mark_ready(self) -> None:
        """The worker serves (booted, or re-introduced itself to a new listener)."""
        self.ready = self.was_ready = True
        self.boot_failures = 0
        self.last_pong = time.monotonic()
