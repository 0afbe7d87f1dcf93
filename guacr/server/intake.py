"""Reading a new client's ``select``: the one intake every door uses.

:class:`SelectReader` is sans-I/O: bytes in, the target out. It never holds more than
one instruction (32 KiB, guacd's limit) of a client that has not selected yet: the
reader says how much it still has :meth:`room <SelectReader.room>` for, readers read
no more than that, and a client that fills it without completing ``select`` gets
``error ... 781``. Two thin drivers: :func:`read_select` for a raw socket (the
listener), :class:`SelectProtocol` for an asyncio transport (a worker behind TLS).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from guacr.errors import GuacrError, InstructionTooLong
from guacr.protocol import builders as b
from guacr.protocol.handshake import parse_select
from guacr.protocol.instruction import encode
from guacr.protocol.parser import MAX_INSTRUCTION_BYTES, Instruction, Parser

SELECT_TIMEOUT = 15.0  # as guacd
READ_SIZE = 8192


@dataclass
class Selected:
    """A client's ``select`` target and whatever it sent after it."""

    target: str
    rest: bytes


def ins_bytes(ins: Instruction) -> bytes:
    """Re-encode an already parsed instruction (pipelined after ``select``)."""
    return encode(ins[0], *ins[1:])


class SelectReader:
    """Sans-I/O: feed a new client's bytes until it has selected."""

    __slots__ = ("_parser", "buffered")

    def __init__(self) -> None:
        self._parser = Parser()
        self.buffered = 0

    def room(self) -> int:
        """Bytes that may still be read before ``select`` must be complete."""
        return max(0, MAX_INSTRUCTION_BYTES - self.buffered)

    def feed(self, data: bytes) -> Selected | None:
        """Consume ``data``; the target once ``select`` is complete, else None.

        Raises :class:`GuacrError` (with guacd's status) for a bad or oversized
        ``select``.
        """
        self.buffered += len(data)
        instructions = self._parser.receive_data(data)
        if not instructions:
            if self.buffered >= MAX_INSTRUCTION_BYTES:
                raise InstructionTooLong("Instruction too long")
            return None
        target = parse_select(instructions[0])
        rest = b"".join(ins_bytes(i) for i in instructions[1:]) + self._parser.pending_bytes()
        return Selected(target, rest)


def error_bytes(error: GuacrError) -> bytes:
    """``error`` + ``disconnect`` for a client refused before any worker saw it."""
    return b.error(error.message, error.status) + b.disconnect()


async def read_select(sock: socket.socket, timeout: float = SELECT_TIMEOUT) -> Selected | None:
    """Read ``select`` from a non-blocking socket; None if the client went away.

    Raises TimeoutError after ``timeout`` s and GuacrError for a bad ``select``.
    """
    loop = asyncio.get_running_loop()
    reader = SelectReader()
    async with asyncio.timeout(timeout):
        while True:
            data = await loop.sock_recv(sock, min(READ_SIZE, reader.room()))
            if not data:
                return None
            selected = reader.feed(data)
            if selected is not None:
                return selected


_DISCARD = bytearray(READ_SIZE)  # what a refused client still sends lands here
LINGER = 2.0  # seconds a refused client gets to read its error before the close
LINGER_BYTES = 1 << 20  # most a refused client may still send meanwhile
# Told the status of every client refused by the listener (metrics: handshake failures).
refused_hook: Callable[[int], None] | None = None


async def refuse(sock: socket.socket, error: GuacrError) -> None:
    """Send ``error`` + ``disconnect``, then close without losing them.

    Closing a socket with unread input makes the kernel send RST, which can destroy
    the error in the client's receive buffer; so the write side is shut, and what the
    client still sends is read into a shared scratch buffer (no memory per client)
    until it closes, :data:`LINGER` s pass or :data:`LINGER_BYTES` arrived.
    """
    if refused_hook is not None:
        refused_hook(int(error.status))
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, error_bytes(error)), LINGER)
        sock.shutdown(socket.SHUT_WR)
        discarded = 0
        async with asyncio.timeout(LINGER):
            while discarded < LINGER_BYTES:
                n = await loop.sock_recv_into(sock, _DISCARD)
                if not n:
                    break
                discarded += n
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


class SelectProtocol(asyncio.Protocol):
    """Reads ``select`` from a transport, then calls ``on_selected(transport, sel)``.

    A transport reads what arrives, so a read may pass the reader's room by one
    chunk; the parser's own 32 KiB limit then refuses it. ``on_closed`` is called if
    the client goes away (or times out) before selecting.
    """

    def __init__(
        self,
        on_selected: Callable[[asyncio.Transport, Selected], None],
        timeout: float = SELECT_TIMEOUT,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.on_selected = on_selected
        self.on_closed = on_closed
        self.selected = False
        self.reader = SelectReader()
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.timer = asyncio.get_running_loop().call_later(self.timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            selected = self.reader.feed(data)
        except GuacrError as exc:
            self.transport.write(error_bytes(exc))
            self.transport.close()
            return
        if selected is None:
            return
        if self.timer:
            self.timer.cancel()
        self.selected = True
        self.on_selected(self.transport, selected)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer:
            self.timer.cancel()
        if not self.selected and self.on_closed is not None:
            self.on_closed()
