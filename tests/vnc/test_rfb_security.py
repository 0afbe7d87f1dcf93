"""VNC Authentication DES vectors and the sans-I/O TLS layer (in-memory peer)."""

from __future__ import annotations

import ssl
import struct
from pathlib import Path

import pytest

from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.constants import VeNCryptSubtype
from guacr.handlers.vnc.events import AuthRequired, Connected, RFBTLSError
from guacr.handlers.vnc.security import TLSLayer, make_tls_context, vnc_auth_response
from servers import _self_signed_cert
from tests.vnc.rfb_fakes import server_init

# TigerVNC's password files are the password DES-encrypted (VNC key convention) with the
# fixed key 23 82 107 6 35 78 88 7. These files came from `tigervncpasswd -f`, an
# independent implementation of the same bit-reversed-key DES.
FIXED_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7]).decode("latin-1")


@pytest.mark.parametrize(
    ("password", "obfuscated"),
    [("guestvnc", "914dadbe08cb565a"), ("secret12", "24b5ae4ce15503c6")],
)
def test_des_matches_tigervncpasswd(password: str, obfuscated: str) -> None:
    block = password.encode()
    assert vnc_auth_response(FIXED_KEY, block + block)[:8].hex() == obfuscated


def test_password_longer_than_8_is_truncated_and_short_is_padded() -> None:
    challenge = bytes(range(16))
    assert vnc_auth_response("guestvnc-and-more", challenge) == vnc_auth_response(
        "guestvnc", challenge
    )
    assert vnc_auth_response("ab", challenge) == vnc_auth_response("ab\0\0\0\0\0\0", challenge)
    assert len(vnc_auth_response("ab", challenge)) == 16
    with pytest.raises(ValueError, match="16 bytes"):
        vnc_auth_response("ab", b"short")


def _server_context(tmp_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*_self_signed_cert(tmp_path))
    return ctx


class MemoryTLSServer:
    """A TLS server end over MemoryBIOs, to drive the client's TLS layer in unit tests."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.plain = bytearray()

    def feed(self, wire: bytes) -> bytes:
        self.inc.write(wire)
        try:
            self.obj.do_handshake()
            while True:
                self.plain += self.obj.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        return self.out.read()

    def send(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.out.read()


def test_x509_vnc_over_in_memory_tls_byte_at_a_time(tmp_path: Path) -> None:
    server = MemoryTLSServer(_server_context(tmp_path))
    client = RFBClient(security_types=[VeNCryptSubtype.X509_VNC])

    def deliver(wire: bytes, slow: bool = False) -> list[object]:
        events: list[object] = []
        chunks = [wire[i : i + 1] for i in range(len(wire))] if slow else [wire]
        for chunk in chunks:
            events += client.receive_data(chunk)
        return events

    deliver(b"RFB 003.008\n\x01\x13\x00\x02\x00\x01" + struct.pack(">I", 261))
    assert client.data_to_send() == b"RFB 003.008\n\x13\x00\x02" + struct.pack(">I", 261)
    # TLS ack arrives glued to nothing; the ClientHello goes out at once.
    events = deliver(b"\x01")
    hello = client.data_to_send()
    assert hello[:1] == b"\x16"  # a TLS handshake record
    wire = server.feed(hello)
    events += deliver(wire, slow=True)
    events += deliver(server.feed(client.data_to_send()))  # session tickets (TLS 1.3)
    challenge = bytes(range(16))
    events += deliver(server.send(challenge), slow=True)
    assert events == [AuthRequired(("password",))]
    client.provide_credentials(password="guestvnc")
    server.feed(client.data_to_send())
    assert bytes(server.plain) == vnc_auth_response("guestvnc", challenge)
    events = deliver(server.send(b"\0\0\0\0" + server_init(5, 5)), slow=True)
    assert any(isinstance(e, Connected) for e in events)
    assert client.uses_tls and client.tls_cipher
    # Client messages now travel encrypted.
    server.plain.clear()
    client.key_event(0x41, True)
    server.feed(client.data_to_send())
    assert bytes(server.plain).endswith(struct.pack(">BBxxI", 4, 1, 0x41))


def test_tls_garbage_is_a_typed_error() -> None:
    layer = TLSLayer(make_tls_context(anonymous=True))
    assert layer.wire_data()[:1] == b"\x16"
    with pytest.raises(RFBTLSError):
        layer.receive_wire(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 3)
