"""Listener <-> worker control channel: one AF_UNIX SOCK_SEQPACKET pair per worker.

Each packet is one Guacamole-encoded instruction, optionally carrying file
descriptors (SCM_RIGHTS). SEQPACKET keeps packet boundaries, so a descriptor always
arrives with the instruction that describes it. Messages:

listener -> worker
  ``handoff,<target>,<base64 pending bytes>,<tls 0|1>`` + client fd: a new user.
worker -> listener
  ``ready``                  the worker booted and serves
  ``open,<$id>``/``close,<$id>``  it owns / no longer owns a connection
  ``load,<users>``           current number of users
  ``forward,<$id>,<base64 pending>`` + fd: a TLS-terminated join for another worker
"""

from __future__ import annotations

import base64
import socket

from guacr.protocol.instruction import encode
from guacr.protocol.parser import Instruction, Parser

MAX_PACKET = 1 << 18


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected SEQPACKET pair (parent end, child end)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return a, b


def send(sock: socket.socket, opcode: str, *args: object, fds: list[int] | None = None) -> None:
    """Send one message (blocking is fine: packets are small and the peer drains)."""
    data = encode(opcode, *args)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[Instruction | None, list[int]]:
    """Receive one message; (None, []) means the peer closed the channel."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 4)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None, []
    instructions = Parser().receive_data(data)
    if len(instructions) != 1:
        for fd in fds:
            socket.close(fd)
        raise ValueError("malformed channel packet")
    return instructions[0], fds


def pack_bytes(data: bytes) -> str:
    """Bytes -> channel-safe text."""
    return base64.b64encode(data).decode("ascii")


def unpack_bytes(text: str) -> bytes:
    """Channel text -> bytes."""
    return base64.b64decode(text)
