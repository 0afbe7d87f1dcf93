"""One remote connection (``$id``): its handler, its users, and what they share.

The owner's handshake creates it; joiners (``select $id``) attach to it; it ends when
the handler's ``run`` ends or the last user leaves. Everything handlers need from the
core is here: broadcasting, frame ends (``sync``), layer/buffer/stream index pools,
timestamps, and the lag the client reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from guacr.contract.clock import monotonic_ms
from guacr.contract.params import Params
from guacr.control import logs
from guacr.errors import GuacrError
from guacr.protocol import builders as b
from guacr.protocol.status import Status
from guacr.server.pool import IndexPool
from guacr.server.recording import Recording
from guacr.server.user import User

if TYPE_CHECKING:
    from guacr import contract
    from guacr.contract.handler import Handler
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.connection")

if TYPE_CHECKING:

    def _satisfies_contract(c: Connection, u: User) -> tuple[contract.Connection, contract.User]:
        """mypy proves here that the core's classes are what guacr.contract declares."""
        return c, u


CLOSE_TIMEOUT = 5.0  # a handler's close() gets this long, as guacd's timed free


class Connection:
    """A running connection and its users."""

    def __init__(self, worker: Worker, handler_cls: type[Handler], conn_id: str = "") -> None:
        self.worker = worker
        self.id = conn_id or "$" + str(uuid.uuid4())  # given: from a CreateSession token
        self.handler_cls = handler_cls
        self.users: list[User] = []
        self.owner: User | None = None
        self.closed = False
        self.last_sync_sent = 0
        self.layers = IndexPool(1, 1)
        self.buffers = IndexPool(-1, -1)
        self._streams = IndexPool(1, 2)  # connection-level streams are odd, as in guacd
        self.tees: list[Callable[[bytes], None]] = []
        self.recording: Recording | None = None
        self.log = logging.LoggerAdapter(log, {})
        self.handler: Handler
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.started = time.time()
        self._bytes_gone = (0, 0)  # counted for users who left
        self.frames = 0
        self.end_error: GuacrError | None = None  # what it ended with, if anything

    # Lifecycle ------------------------------------------------------------------------
    def start(self, owner: User) -> None:
        """Create the handler from the owner's parameters and run it."""
        self.owner = owner
        self.users.append(owner)
        params = Params(self.handler_cls.PARAMS, owner.info.values)
        log.info(
            'Creating new client for protocol "%s" as connection %s',
            self.handler_cls.protocol,
            self.id,
        )
        log.debug("Parameters for %s: %s", self.id, params.loggable())
        if "recording-path" in {p.name for p in self.handler_cls.PARAMS}:
            self.recording = Recording.from_params(params)
            if self.recording is not None:
                self.tees.append(self.recording.output)
        self.handler = self.handler_cls(self, params)
        # The handler's task carries the ids into every log line it writes (JSON logs).
        with logs.bind(connection=self.id, user=owner.id, protocol=self.handler_cls.protocol):
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._safe(self.handler.user_joined, owner)

    def join(self, user: User) -> None:
        """Attach a joining user and show it the current state."""
        self.users.append(user)
        log.info("User %s joined connection %s (%d users now)", user.id, self.id, len(self.users))
        self._safe(self.handler.user_joined, user)
        self._notify_owner(1, user)

    def leave(self, user: User) -> None:
        """Detach a user; the connection ends with its last user."""
        if user not in self.users:
            return
        self.users.remove(user)
        gone_in, gone_out = self._bytes_gone
        self._bytes_gone = (gone_in + user.bytes_in, gone_out + user.bytes_out)
        log.info("User %s left connection %s (%d users left)", user.id, self.id, len(self.users))
        if not self.closed:
            self._safe(self.handler.user_left, user)
            self._notify_owner(2, user)
        if not self.users:
            self.stop()

    def stop(self) -> None:
        """Stop the handler (cancelling ``run``); users get nothing more."""
        task = self._task
        # From inside the task itself (``_run``'s cleanup ending the connection),
        # cancelling would abort the awaited ``handler.close()`` and the bookkeeping
        # after it: the connection would never be removed.
        if task is not None and not task.done() and task is not asyncio.current_task():
            if not self._running:
                # Not started yet: cancelling now would skip ``_run`` and its cleanup
                # entirely (the connection would never be removed). Retry once it runs.
                asyncio.get_running_loop().call_soon(self.stop)
                return
            task.cancel()

    def end(self, error: GuacrError | None = None) -> None:
        """End the connection for every user, with ``error`` if given."""
        if self.closed:
            return
        self.closed = True
        self.end_error = error
        data = b.disconnect()
        if error is not None:
            data = b.error(error.message, error.status) + data
        for user in list(self.users):
            user.send(data)
            user.close()
        self.stop()

    async def _run(self) -> None:
        self._running = True
        error: GuacrError | None = None
        try:
            await self.handler.run()
        except asyncio.CancelledError:
            pass
        except GuacrError as exc:
            log.info("Connection %s ended: %s (status %d)", self.id, exc.message, exc.status)
            error = exc
        except Exception:
            log.exception("Handler of connection %s failed", self.id)
            error = GuacrError("Internal server error.", Status.SERVER_ERROR)
        finally:
            self.end(error)
            try:
                await asyncio.wait_for(self.handler.close(), CLOSE_TIMEOUT)
            except Exception:
                log.exception("Closing connection %s failed", self.id)
            if self.recording is not None:
                self.recording.close()
            self.worker.connection_closed(self)
            log.info("Connection %s removed.", self.id)

    def _notify_owner(self, code: int, user: User) -> None:
        owner = self.owner
        if owner is not None and owner is not user and owner.info.version.supports_msg:
            owner.send(b.msg(code, user.id, user.info.name))

    def _safe(self, fn: Callable[[User], None], user: User) -> None:
        try:
            fn(user)
        except Exception:
            log.exception("Handler hook %s failed", getattr(fn, "__name__", fn))

    # Output ------------------------------------------------------------------------
    def broadcast(self, data: bytes) -> None:
        """Send wire bytes to every user (and to recordings)."""
        for user in self.users:
            user.send(data)
        for tee in self.tees:
            tee(data)

    def timestamp(self) -> int:
        """Current protocol timestamp (ms, monotonic)."""
        return monotonic_ms()

    def end_frame(self, frames: int = 0, extra: bytes = b"") -> None:
        """Broadcast ``extra`` then ``sync``: the end of a frame."""
        ts = monotonic_ms()
        self.last_sync_sent = ts
        self.frames += 1
        self.broadcast(extra + b.sync(ts, frames))

    def byte_counts(self) -> tuple[int, int]:
        """Bytes received from and sent to all of its users so far."""
        gone_in, gone_out = self._bytes_gone
        return (
            gone_in + sum(u.bytes_in for u in self.users),
            gone_out + sum(u.bytes_out for u in self.users),
        )

    @property
    def lag(self) -> int:
        """Processing lag in ms: the worst of all users, as guacd computes it."""
        return max((u.processing_lag for u in self.users), default=0)

    @property
    def congested(self) -> bool:
        """True while any user's socket buffer is over its high-water mark."""
        return any(u.congested for u in self.users)

    def alloc_stream(self) -> int:
        """A connection-level outbound stream index (odd; never acked by clients)."""
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        """Release a connection-level stream index."""
        self._streams.free(index)

    def send_to_owner(self, data: bytes) -> None:
        """Send to the owner only (``required``, ``argv`` state)."""
        if self.owner is not None and self.owner in self.users:
            self.owner.send(data)

    async def wait_closed(self) -> None:
        """Wait until the handler task finished."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
