"""Transport adapters: asyncio glue between a client's transport and its user session.

:class:`StreamAdapter` carries a :class:`~guacr.server.user.User` over a stream
transport (TCP, or TLS terminated by the worker): bytes read go to
:meth:`User.receive_data`, the session's output is written as it comes, and the
transport's flow control becomes the session's ``congested`` flag that handlers pace
on. The WebSocket door adds an adapter of its own (one message per instruction).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import cast

from guacr.server.user import User

LINGER = 2.0  # seconds a closed user's socket waits for the client's own close
HIGH_WATER = 1 << 20  # write buffer size at which a user counts as congested
# A user whose unsent output passes this is dropped: handlers pace on ``congested``,
# so only a client that stopped reading gets here, and it must not exhaust the
# worker's memory for everyone else. Overridable for tests (GUACR_MAX_WRITE_BUFFER).
MAX_WRITE_BUFFER = int(os.environ.get("GUACR_MAX_WRITE_BUFFER", 64 << 20))


def open_stream(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """Ready a new user's transport: TCP_NODELAY for typing, the congestion mark set."""
    stream = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream.set_write_buffer_limits(high=HIGH_WATER)
    return stream


def peer_host(sock: socket.socket) -> str:
    """The client's address on a socket, or "" (a Unix socket, or already gone)."""
    try:
        peer = sock.getpeername()
    except OSError:
        return ""
    return str(peer[0]) if isinstance(peer, tuple) else ""


class StreamAdapter(asyncio.Protocol):
    """A user session on a stream transport (the session's :class:`~user.Link`)."""

    __slots__ = ("transport", "user")

    def __init__(self, user: User) -> None:
        self.user = user
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = open_stream(transport)
        self.user.attach(self)
        self.user.start()

    def data_received(self, data: bytes) -> None:
        self.user.receive_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.user.connection_lost()

    def pause_writing(self) -> None:
        self.user.congested = True

    def resume_writing(self) -> None:
        self.user.congested = False

    # Link ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        t = self.transport
        if t is None:
            return
        t.write(data)
        if self.user.congested and t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.user.drop(f"is not reading ({t.get_write_buffer_size()} bytes unsent)")

    def close(self) -> None:
        """Flush, send FIN, close when the client does (or after ``LINGER`` s).

        Closing outright while the client's last ``sync``/``nop`` sit unread makes the
        kernel send RST, which can destroy our final ``error``/``disconnect`` in the
        client's receive buffer. So we half-close and discard whatever still arrives.
        """
        t = self.transport
        if t is None:
            return
        if t.can_write_eof():
            t.write_eof()
            asyncio.get_running_loop().call_later(LINGER, t.close)
        else:
            t.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # queued output cannot be delivered anyway
