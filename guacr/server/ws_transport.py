"""A user session served over a WebSocket tunnel, in a worker: the door's transport adapter.

:class:`TunnelAdapter` is to the WebSocket door what ``StreamAdapter``
(guacr.server.transport) is to TCP: the asyncio protocol on the client's socket and
the :class:`~guacr.server.user.Link` of its sans-I/O :class:`~guacr.server.user.User`.
Between them sits the sans-I/O :class:`~guacr.tunnel.framing.Tunnel`: frames in,
instructions to the session; the session's writes out, one text message each (every
write is whole instructions, ``guacr.protocol.builders``). The session's rules
(timeouts, keep-alive ``nop``, read-only, joins, flow control and the slow-reader cap)
are the ones every 4822 user gets.

A browser never speaks the guacd handshake: after the session's ``args``, the adapter
answers on its behalf with :meth:`Grant.client_instructions
<guacr.tunnel.grant.Grant.client_instructions>`, and turns the session's ``ready`` into
the tunnel's first message, ``""`` with the connection id (what guacamole-lite sends,
so a front end can build share links from ``tunnel.uuid``). Neither ``args`` nor
``ready`` reaches the browser.

Frames that arrive before ``ready`` are dropped: guacamole-common-js sends nothing until
the id instruction arrives, and nothing a client could say then has a meaning.

The close follows the last ``error`` the session sent: guacamole-client's close code
for its status and the decimal status as reason; otherwise 1000 "0".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from guacr.errors import GuacrError
from guacr.protocol.instruction import encode_many
from guacr.protocol.parser import Parser
from guacr.protocol.status import Status
from guacr.server.transport import LINGER, MAX_WRITE_BUFFER, open_stream
from guacr.server.user import User
from guacr.tunnel.framing import Closed, Received, Tunnel
from guacr.tunnel.grant import Grant

log = logging.getLogger("guacr.websocket")

_ERROR_PREFIX = b"5.error,"


def _error_status(data: bytes) -> Status | None:
    """The status of an ``error`` instruction in ``data``, if there is one."""
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


class TunnelAdapter(asyncio.Protocol):
    """One tunnel user: the socket's protocol and the session's link."""

    def __init__(
        self,
        user: User,
        grant: Grant,
        leftover: bytes = b"",
        max_message: int = 1 << 20,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.user = user
        self.grant = grant
        self.tunnel = Tunnel(max_message)
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost
        self._leftover = leftover
        self._handshake: Parser | None = Parser()  # the session's output until ready
        self._status = Status.SUCCESS
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = open_stream(transport)
        self.user.attach(self)
        self.user.start()
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
        self._closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        self.user.connection_lost()
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        self.user.congested = True

    def resume_writing(self) -> None:
        self.user.congested = False

    def _event(self, event: Received | Closed) -> None:
        if isinstance(event, Received):
            if self._handshake is None:
                self.user.receive_data(event.raw)
            return
        # Closed by the client (the tunnel answered) or by the tunnel itself after bad
        # input (its error and close are queued): either way this user is done.
        if not event.by_client:
            log.info("User %s: tunnel closed (%d %s)", self.user.id, event.code, event.reason)
        self._closing = True
        self.user.close()

    # Link ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._closing:
            return
        if self._handshake is not None:
            self._handshake_output(data)
        else:
            if _ERROR_PREFIX in data:
                self._status = _error_status(data) or self._status
            self.tunnel.send(data)
        self._flush()
        t = self.transport
        if t is not None and self.user.congested and t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.user.drop(f"is not reading ({t.get_write_buffer_size()} bytes unsent)")

    def _handshake_output(self, data: bytes) -> None:
        """Before ``ready``: answer ``args`` for the browser, turn ``ready`` into the id,
        pass anything else (an ``error`` refusing the target) through."""
        assert self._handshake is not None
        try:
            instructions = self._handshake.receive_data(data)
        except GuacrError:
            instructions = []
        for ins in instructions:
            if ins[0] == "args":
                answer = encode_many(self.grant.client_instructions(ins[2:]))
                asyncio.get_running_loop().call_soon(self._answer, answer)
            elif ins[0] == "ready" and len(ins) >= 2:
                self._handshake = None
                self.tunnel.send_id(ins[1])
            else:
                if ins[0] == "error" and len(ins) >= 3:
                    try:
                        self._status = Status(int(ins[2]))
                    except ValueError:
                        self._status = Status.SERVER_ERROR
                self.tunnel.send(encode_many([ins]))

    def _answer(self, data: bytes) -> None:
        if not self._closing and not self.user.closed:
            self.user.receive_data(data)

    def close(self) -> None:
        """The session ended: close the tunnel as guacamole-client would (the ``error``
        itself, if any, already went out), then the socket after a grace period."""
        if self.tunnel.open:
            self.tunnel.close(self._status)
        self._closing = True
        self._flush()
        t = self.transport
        if t is not None and self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(LINGER, t.close)

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        t = self.transport
        chunks = self.tunnel.data_to_send()
        if t is None:
            return
        for chunk in chunks:
            if chunk:
                t.write(chunk)
            elif t.can_write_eof():
                t.write_eof()
            else:
                # TLS (wss) cannot half-close: the closing handshake is over, so close
                # (after the queued bytes, with close_notify) instead of letting the
                # browser wait out the linger for the server's end of the stream.
                t.close()
