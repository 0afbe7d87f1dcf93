"""Encoder and builder vectors, versions, status codes."""

from __future__ import annotations

import base64

from guacr.protocol import builders as b
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Parser
from guacr.protocol.status import Status
from guacr.protocol.version import ProtocolVersion

X = "\u72ac\U00010b00z\u00e1"


def test_guacd_writer_vector() -> None:
    # name("aXbXc") then sync(12345, 1)
    data = b.name(f"a{X}b{X}c") + b.sync(12345, 1)
    assert data == f"4.name,11.a{X}b{X}c;4.sync,5.12345,1.1;".encode()
    # nested in "nest" on index 123, 41 code points
    inner = data.decode()
    assert len(inner) == 41
    assert encode("nest", 123, inner) == f"4.nest,3.123,41.{inner};".encode()


def test_builders_roundtrip_through_parser() -> None:
    cases = [
        (b.sync(99999999999, 0), ("sync", "99999999999", "0")),
        (b.mouse(5000, -3, 1, 7), ("mouse", "5000", "-3", "1", "7")),
        (b.key(65307, True, 1), ("key", "65307", "1", "1")),
        (
            b.copy(-1, 0, 19, 990, 703, 14, 1, 0, 0),
            ("copy", "-1", "0", "19", "990", "703", "14", "1", "0", "0"),
        ),
        (b.rect(1, 2, 3, 4, 5), ("rect", "1", "2", "3", "4", "5")),
        (b.cfill(14, 0, 1, 2, 3), ("cfill", "14", "0", "1", "2", "3", "255")),
        (b.img(3, 14, 0, "image/png", 7, 8), ("img", "3", "14", "0", "image/png", "7", "8")),
        (
            b.error("Aborted. See logs.", Status.CLIENT_TIMEOUT),
            ("error", "Aborted. See logs.", "776"),
        ),
        (b.ack(4, "Invalid stream index", 768), ("ack", "4", "Invalid stream index", "768")),
        (b.args("VERSION_1_5_0", ["a", "b"]), ("args", "VERSION_1_5_0", "a", "b")),
        (b.disconnect(), ("disconnect",)),
        (b.nop(), ("nop",)),
        (b.size(0, 1024, 768), ("size", "0", "1024", "768")),
    ]
    for data, expected in cases:
        assert Parser().receive_data(data) == [expected]


def test_blobs_are_split_like_guacd_and_base64() -> None:
    payload = bytes(range(256)) * 50  # 12800 bytes -> 3 blobs of <= 6048
    out = Parser().receive_data(b"".join(b.blobs(7, payload)))
    assert [len(base64.b64decode(i[2])) for i in out] == [6048, 6048, 704]
    assert b"".join(base64.b64decode(i[2]) for i in out) == payload
    assert all(len(i[2]) <= 8064 for i in out)


def test_base64_vectors() -> None:
    assert base64.b64decode("SEVMTE8=") == b"HELLO"
    assert base64.b64decode("QVZPQ0FETw==") == b"AVOCADO"
    assert base64.b64decode("R1VBQ0FNT0xF") == b"GUACAMOLE"
    assert base64.b64decode("") == b""


def test_versions() -> None:
    assert ProtocolVersion.parse("VERSION_1_5_0") is ProtocolVersion.V1_5_0
    assert ProtocolVersion.parse("") is ProtocolVersion.V1_0_0
    assert ProtocolVersion.parse("VERSION_9_9_9") is ProtocolVersion.UNKNOWN
    assert ProtocolVersion.UNKNOWN < ProtocolVersion.V1_1_0
    assert ProtocolVersion.V1_3_0.supports_required and not ProtocolVersion.V1_1_0.supports_required
    assert ProtocolVersion.V1_5_0.supports_msg and not ProtocolVersion.V1_3_0.supports_msg
    assert ProtocolVersion.V1_5_0.wire == "VERSION_1_5_0"


def test_all_21_status_codes() -> None:
    assert len(Status) == 21
    assert Status.CLIENT_TIMEOUT == 776 and Status.RESOURCE_NOT_FOUND == 516
    assert Status.CLIENT_UNAUTHORIZED == 769 and Status.CLIENT_TOO_MANY == 797
