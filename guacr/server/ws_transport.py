"""A :class:`~guacr.server.user.User` served over a WebSocket tunnel, in a worker.

:class:`TunnelProtocol` owns the real socket transport and the sans-I/O
:class:`~guacr.tunnel.framing.Tunnel`; the user sees :class:`TunnelTransport`, a
transport-shaped facade, so every user rule (timeouts, keep-alive ``nop``, read-only,
slow-reader protection, joins) is the one 4822 users get.

A browser never speaks the guacd handshake: after the user's ``args``, the facade
answers on its behalf with :meth:`Grant.client_instructions
<guacr.tunnel.grant.Grant.client_instructions>`, and turns the user's ``ready`` into
the tunnel's first message, ``""`` with the connection id (what guacamole-lite sends,
so a front end can build share links from ``tunnel.uuid``). Neither ``args`` nor
``ready`` reaches the browser. Everything after ``ready`` goes out one text message per
write: every write is whole instructions (``guacr.protocol.builders``).

An ``error`` the user sends last decides the close: guacamole-client's close code for
its status and the decimal status as reason; otherwise 1000 "0".
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from guacr.errors import GuacrError
from guacr.protocol.instruction import encode_many
from guacr.protocol.parser import Parser
from guacr.protocol.status import Status
from guacr.server.user import HIGH_WATER, LINGER, User
from guacr.tunnel.framing import Closed, Received, Tunnel
from guacr.tunnel.grant import Grant

log = logging.getLogger("guacr.websocket")

_ERROR_PREFIX = b"5.error,"


def _last_error_status(data: bytes) -> Status | None:
    """The status of an ``error`` instruction in ``data`` (a final write), if any."""
    at = data.find(_ERROR_PREFIX)
    if at < 0:
        return None
    try:
        for ins in Parser().receive_data(data[at:]):
            if ins[0] == "error" and len(ins) >= 3:
                return Status(int(ins[2]))
    except (GuacrError, ValueError):
        return None
    return None


class TunnelTransport:
    """What the user writes to: frames its bytes as tunnel messages."""

    def __init__(self, proto: TunnelProtocol) -> None:
        self._proto = proto
        self._closing = False

    def write(self, data: bytes) -> None:
        self._proto.user_wrote(data)

    def get_write_buffer_size(self) -> int:
        t = self._proto.transport
        return t.get_write_buffer_size() if t is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        t = self._proto.transport
        if t is not None:
            t.set_write_buffer_limits(high=high, low=low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        t = self._proto.transport
        return t.get_extra_info(name, default) if t is not None else default

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._proto.user_closed()

    def close(self) -> None:
        self._proto.user_closed(hard=True)

    def abort(self) -> None:
        t = self._proto.transport
        if t is not None:
            t.abort()

    def is_closing(self) -> bool:
        return self._proto.closing


class TunnelProtocol(asyncio.Protocol):
    """The socket side of one tunnel user."""

    def __init__(
        self,
        user_factory: Callable[[], User],
        grant: Grant,
        leftover: bytes = b"",
        max_message: int = 1 << 20,
    ) -> None:
        self.tunnel = Tunnel(max_message)
        self.grant = grant
        self.transport: asyncio.Transport | None = None
        self.user: User = user_factory()
        self.facade = TunnelTransport(self)
        self._leftover = leftover
        self._handshake = True
        self._out_parser: Parser | None = Parser()
        self._status: Status = Status.SUCCESS
        self._message = ""
        self.closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.on_lost: Callable[[], None] | None = None

    # Socket side --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.user.connection_made(cast(asyncio.Transport, self.facade))
        if self._leftover:
            data, self._leftover = self._leftover, b""
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        for event in self.tunnel.receive_data(data):
            self._event(event)
        self._flush()

    def eof_received(self) -> bool:
        for event in self.tunnel.receive_eof():
            self._event(event)
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        self.user.connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        self.user.pause_writing()

    def resume_writing(self) -> None:
        self.user.resume_writing()

    def _event(self, event: Received | Closed) -> None:
        if isinstance(event, Received):
            if not self._handshake:
                self.user.data_received(event.raw)
            return
        # Closed: by the client (answered by the tunnel) or by the tunnel itself
        # (bad input: error + close already queued). Either way the user is done.
        if not event.by_client:
            log.info("User %s: tunnel closed (%d %s)", self.user.id, event.code, event.reason)
        self.closing = True
        self.user.close()

    # User side ------------------------------------------------------------------------
    def user_wrote(self, data: bytes) -> None:
        if self.closing:
            return
        if self._handshake:
            self._handshake_output(data)
        else:
            status = _last_error_status(data) if _ERROR_PREFIX in data else None
            if status is not None:
                self._status = status
            self.tunnel.send(data)
        self._flush()

    def _handshake_output(self, data: bytes) -> None:
        """Before ``ready``: answer ``args`` for the browser, turn ``ready`` into the id."""
        assert self._out_parser is not None
        try:
            instructions = self._out_parser.receive_data(data)
        except GuacrError:
            instructions = []
        for ins in instructions:
            if ins[0] == "args":
                answer = encode_many(self.grant.client_instructions(ins[2:]))
                asyncio.get_running_loop().call_soon(self._answer, answer)
            elif ins[0] == "ready" and len(ins) >= 2:
                self._handshake = False
                self._out_parser = None
                self.tunnel.send_id(ins[1])
            else:
                # error/disconnect before ready (unknown protocol, no such connection)
                if ins[0] == "error" and len(ins) >= 3:
                    try:
                        self._status = Status(int(ins[2]))
                    except ValueError:
                        self._status = Status.SERVER_ERROR
                    self._message = ins[1]
                self.tunnel.send(encode_many([ins]))

    def _answer(self, data: bytes) -> None:
        if not self.closing and not self.user.closed:
            self.user.data_received(data)

    def user_closed(self, hard: bool = False) -> None:
        """The user ended: close the tunnel as guacamole-client would."""
        if self.tunnel.open:
            status = self._status
            # The error instruction (if any) already went out with the user's last
            # write, so close with the status only.
            self.tunnel.close(status)
        self.closing = True
        self._flush()
        t = self.transport
        if t is not None and self._close_timer is None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(0.0 if hard else LINGER, t.close)

    def _flush(self) -> None:
        t = self.transport
        if t is None:
            self.tunnel.data_to_send()
            return
        for chunk in self.tunnel.data_to_send():
            if chunk:
                t.write(chunk)
            elif t.can_write_eof():
                t.write_eof()
        if self.tunnel.closed is not None and self._close_timer is None and self.closing:
            self._close_timer = asyncio.get_running_loop().call_later(LINGER, t.close)
