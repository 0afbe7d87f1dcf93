"""PROXY protocol v2 headers: who the client really is, told by a trusted relay.

A load balancer (HAProxy ``send-proxy-v2``, an AWS NLB with proxy protocol v2) or
another guacr instance relaying a join (guacr.server.forward) connects to 4822 on a
client's behalf; it first sends this binary header naming the client's address and
port, then the client's bytes (plain Guacamole, or a TLS ClientHello). guacr believes
the header only from peers it trusts (``proxy_protocol_trusted``, and the instances
of its shared registry); see :mod:`guacr.server.supervisor`.

Sans-I/O: :func:`header_length` says how many bytes the header takes once its first
16 are known, :func:`parse` turns a whole header into the client's address, and
:func:`encode` writes one. Written here rather than taken from a package: the format
is a fixed 16-byte prefix and an address block, and only v2's PROXY/LOCAL over TCP is
needed, read from a socket the listener then hands on untouched.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_BYTES = 16  # signature, version/command, family/transport, length
MAX_LENGTH = 2048  # addresses plus TLVs; HAProxy's are far smaller
_V2_LOCAL, _V2_PROXY = 0x20, 0x21
_TCP4, _TCP6 = 0x11, 0x21
_HEAD = struct.Struct("!12sBBH")


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol v2 header guacr can use."""


@dataclass(frozen=True)
class ProxiedAddress:
    """The client a relay speaks for (None host: a LOCAL header, e.g. a health check)."""

    host: str | None
    port: int


def may_be_header(data: bytes) -> bool:
    """True if ``data`` starts (or could still start) with the v2 signature."""
    n = min(len(data), len(SIGNATURE))
    return data[:n] == SIGNATURE[:n]


def header_length(prefix: bytes) -> int:
    """The whole header's length from its first :data:`PREFIX_BYTES` bytes."""
    signature, version, _family, length = _HEAD.unpack(prefix[:PREFIX_BYTES])
    if signature != SIGNATURE:
        raise ProxyHeaderError("no PROXY protocol v2 signature")
    if version not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"unsupported PROXY version/command 0x{version:02x}")
    if length > MAX_LENGTH:
        raise ProxyHeaderError(f"PROXY header of {length} bytes is too long")
    return PREFIX_BYTES + int(length)


def parse(header: bytes) -> ProxiedAddress:
    """The client named by a whole v2 header (TLVs are ignored)."""
    total = header_length(header)
    if len(header) != total:
        raise ProxyHeaderError("truncated PROXY header")
    _sig, version, family, _length = _HEAD.unpack(header[:PREFIX_BYTES])
    body = header[PREFIX_BYTES:]
    if version == _V2_LOCAL:
        return ProxiedAddress(None, 0)
    if family == _TCP4 and len(body) >= 12:
        source, _dest, port, _dport = struct.unpack("!4s4sHH", body[:12])
        return ProxiedAddress(str(ipaddress.IPv4Address(source)), port)
    if family == _TCP6 and len(body) >= 36:
        source, _dest, port, _dport = struct.unpack("!16s16sHH", body[:36])
        address = ipaddress.IPv6Address(source)
        mapped = address.ipv4_mapped
        return ProxiedAddress(str(mapped if mapped is not None else address), port)
    if family == 0x00:  # UNSPEC: the relay does not know; keep the peer's address
        return ProxiedAddress(None, 0)
    raise ProxyHeaderError(f"unsupported PROXY address family 0x{family:02x}")


def encode(client: tuple[str, int] | None, server: tuple[str, int] | None) -> bytes:
    """A v2 header saying ``client`` connects to ``server`` (LOCAL if either is unknown)."""
    try:
        if client is None or server is None:
            raise ValueError
        src = ipaddress.ip_address(client[0])
        dst = ipaddress.ip_address(server[0])
    except ValueError:
        return _HEAD.pack(SIGNATURE, _V2_LOCAL, 0x00, 0)
    if src.version == 4 and dst.version == 4:
        body = struct.pack("!4s4sHH", src.packed, dst.packed, client[1], server[1])
        return _HEAD.pack(SIGNATURE, _V2_PROXY, _TCP4, len(body)) + body
    src6 = ipaddress.IPv6Address(f"::ffff:{src}") if src.version == 4 else src
    dst6 = ipaddress.IPv6Address(f"::ffff:{dst}") if dst.version == 4 else dst
    body = struct.pack("!16s16sHH", src6.packed, dst6.packed, client[1], server[1])
    return _HEAD.pack(SIGNATURE, _V2_PROXY, _TCP6, len(body)) + body
