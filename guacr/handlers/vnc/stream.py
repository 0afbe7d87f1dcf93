"""The reader protocol shared by the handshake, message parser and decoders.

Parsers are generators: ``data = yield n`` asks the driver for exactly ``n`` bytes and
resumes once they have arrived, so a parser reads like blocking code yet never blocks
and survives arbitrary fragmentation. Besides byte counts a parser can yield a
``Command`` (start TLS, wait for credentials).
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

from guacr.handlers.vnc.events import RFBProtocolError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Switch the transport to TLS now; ``anonymous`` picks aNULL cipher suites."""

    anonymous: bool


@dataclass(frozen=True, slots=True)
class WaitCredentials:
    """Pause until ``provide_credentials`` has been called."""


Command = StartTLS | WaitCredentials
Request = int | Command
Reader = Generator[Request, bytes, T]

_U32 = struct.Struct(">I")


def read_u32() -> Reader[int]:
    value: int = _U32.unpack((yield 4))[0]
    return value


def read_string(limit: int, what: str) -> Reader[bytes]:
    """u32 length then that many bytes, refusing absurd lengths."""
    length = yield from read_u32()
    if length > limit:
        raise RFBProtocolError(f"{what} length {length} exceeds limit {limit}")
    return (yield length) if length else b""


def read_compact_length() -> Reader[int]:
    """Tight's 1-3 byte little-endian base-128 length."""
    b0 = (yield 1)[0]
    length = b0 & 0x7F
    if b0 & 0x80:
        b1 = (yield 1)[0]
        length |= (b1 & 0x7F) << 7
        if b1 & 0x80:
            b2 = (yield 1)[0]
            length |= b2 << 14
    return length
