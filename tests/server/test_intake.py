"""The select intake: at most one 32 KiB instruction buffered before ``select``."""

from __future__ import annotations

import asyncio
import socket

import pytest

from guacr.errors import GuacrError, InstructionTooLong
from guacr.protocol.instruction import encode
from guacr.protocol.parser import MAX_INSTRUCTION_BYTES
from guacr.server.intake import SelectReader, read_select


def big_select(size: int) -> bytes:
    """A ``select`` of ``size`` bytes made of legal 8000-character elements."""
    elements, left = [], size - 10
    while left > 0:
        n = min(8000, left - 6)
        elements.append(f"{n}." + "x" * n)
        left -= n + 6
    return ("6.select," + ",".join(elements) + ";").encode()


def test_reader_takes_no_more_than_one_instruction() -> None:
    data = big_select(40 * 1024)
    reader = SelectReader()
    fed = 0
    with pytest.raises(InstructionTooLong):
        while True:
            room = reader.room()
            assert room > 0, "the reader must refuse before it is full"
            chunk = data[fed : fed + min(8192, room)]
            fed += len(chunk)
            assert reader.buffered <= MAX_INSTRUCTION_BYTES
            reader.feed(chunk)
    assert fed <= MAX_INSTRUCTION_BYTES


def test_reader_returns_target_and_what_follows() -> None:
    reader = SelectReader()
    data = encode("select", "ssh") + encode("size", 1024, 768) + b"4.aud"
    assert reader.feed(data[:5]) is None
    sel = reader.feed(data[5:])
    assert sel is not None and sel.target == "ssh"
    assert sel.rest == encode("size", 1024, 768) + b"4.aud"


def test_reader_refuses_garbage_and_other_opcodes() -> None:
    with pytest.raises(GuacrError):
        SelectReader().feed(b"garbage!")
    with pytest.raises(GuacrError):
        SelectReader().feed(encode("connect", "x"))


async def test_read_select_leaves_the_rest_of_a_40k_select_unread() -> None:
    """Over a real socket: read_select stops reading at 32 KiB, whatever is sent."""
    server, client = socket.socketpair()
    server.setblocking(False)
    data = big_select(40 * 1024)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    loop = asyncio.get_running_loop()
    sending = loop.run_in_executor(None, client.sendall, data)
    with pytest.raises(InstructionTooLong):
        await read_select(server, timeout=5)
    await sending
    client.shutdown(socket.SHUT_WR)
    unread = 0
    while chunk := await loop.sock_recv(server, 65536):
        unread += len(chunk)
    assert len(data) - unread <= MAX_INSTRUCTION_BYTES
    server.close()
    client.close()
