"""The PROXY protocol v2 codec (guacr.server.proxy_header): a unit test of our own code.

The vector below is written out byte by byte from the format (signature, 0x21 = v2
PROXY, 0x11 = TCP over IPv4, length 12, source, destination, ports), not produced by
``encode``, so the encoder and the parser are each checked against the format.
"""

from __future__ import annotations

import pytest

from guacr.cli import resolve
from guacr.config import ConfigError

from guacr.server.proxy_header import (
    PREFIX_BYTES,
    SIGNATURE,
    ProxiedAddress,
    ProxyHeaderError,
    encode,
    header_length,
    may_be_header,
    parse,
)

HAPROXY_V4 = (
    b"\r\n\r\n\x00\r\nQUIT\n"  # signature
    b"\x21\x11\x00\x0c"  # v2 PROXY, TCP/IPv4, 12 bytes follow
    b"\xc0\x00\x02\x07"  # 192.0.2.7
    b"\x0a\x00\x00\x01"  # 10.0.0.1
    b"\xd4\x31"  # 54321
    b"\x12\xd6"  # 4822
)


def test_a_written_out_ipv4_header() -> None:
    assert header_length(HAPROXY_V4[:PREFIX_BYTES]) == len(HAPROXY_V4) == 28
    assert parse(HAPROXY_V4) == ProxiedAddress("192.0.2.7", 54321)
    assert encode(("192.0.2.7", 54321), ("10.0.0.1", 4822)) == HAPROXY_V4


@pytest.mark.parametrize(
    "client,server,host",
    [
        (("2001:db8::7", 40000), ("2001:db8::1", 4822), "2001:db8::7"),
        (("192.0.2.7", 40000), ("2001:db8::1", 4822), "192.0.2.7"),  # mapped, then back
        (("2001:db8::7", 1), ("10.0.0.1", 4822), "2001:db8::7"),
    ],
)
def test_ipv6_and_mixed_families_round_trip(
    client: tuple[str, int], server: tuple[str, int], host: str
) -> None:
    header = encode(client, server)
    assert header[13] == 0x21 and len(header) == PREFIX_BYTES + 36
    assert parse(header) == ProxiedAddress(host, client[1])


def test_unknown_client_is_a_local_header() -> None:
    for header in (encode(None, ("10.0.0.1", 4822)), encode(("a-name", 1), ("10.0.0.1", 1))):
        assert header == SIGNATURE + b"\x20\x00\x00\x00"
        assert parse(header) == ProxiedAddress(None, 0)


def test_tlvs_after_the_addresses_are_skipped() -> None:
    tlv = b"\x04\x00\x03abc"  # PP2_TYPE_NOOP, 3 bytes
    header = bytearray(HAPROXY_V4 + tlv)
    header[14:16] = (12 + len(tlv)).to_bytes(2, "big")
    assert parse(bytes(header)) == ProxiedAddress("192.0.2.7", 54321)


@pytest.mark.parametrize(
    "data,why",
    [
        (b"6.select,3.ssh;" + b"x" * 12, "signature"),
        (SIGNATURE + b"\x11\x11\x00\x0c", "version"),  # v1 byte in a v2 frame
        (SIGNATURE + b"\x21\x11\xff\xff", "too long"),
    ],
)
def test_bad_prefixes_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProxyHeaderError, match=why):
        header_length(data)


def test_truncated_and_unknown_family() -> None:
    with pytest.raises(ProxyHeaderError, match="truncated"):
        parse(HAPROXY_V4[:-1])
    unix = SIGNATURE + b"\x21\x31\x00\x00"  # AF_UNIX stream: not a client address
    with pytest.raises(ProxyHeaderError, match="family"):
        parse(unix)


def test_may_be_header_looks_at_prefixes_only() -> None:
    assert may_be_header(SIGNATURE[:3]) and may_be_header(HAPROXY_V4)
    assert not may_be_header(b"6.select") and not may_be_header(b"\x16\x03\x01")  # TLS


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--proxy-protocol-trusted", "10.0.0.0/8, haproxy", "proxy_protocol_trusted: 'haproxy'"),
        ("--cluster-ca", "/nonexistent/ca.pem", "cluster_ca: cannot read '/nonexistent/ca.pem'"),
    ],
)
def test_bad_cluster_settings_are_one_line_errors(flag: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(["--config", "/dev/null", flag, value])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
