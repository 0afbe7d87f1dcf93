"""RFB handshake against scripted server bytes: versions, security types, results."""

from __future__ import annotations

import struct
from typing import TypeVar

import pytest

from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.constants import SecurityType, VeNCryptSubtype
from guacr.handlers.vnc.events import (
    AuthFailed,
    AuthRequired,
    Connected,
    Event,
    RFBConnectionClosed,
    RFBProtocolError,
    RFBSecurityError,
    RFBStateError,
)
from guacr.handlers.vnc.handshake import choose_version
from guacr.handlers.vnc.messages import set_pixel_format
from guacr.handlers.vnc.pixels import PixelFormat
from guacr.handlers.vnc.security import vnc_auth_response
from tests.vnc.rfb_fakes import BGRX, server_init

CHALLENGE = bytes(range(100, 116))
E = TypeVar("E", bound=Event)


def feed(client: RFBClient, *chunks: bytes) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += client.receive_data(chunk)
    return events


def only(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def test_38_vnc_auth_full_exchange() -> None:
    client = RFBClient(password="guestvnc")
    assert client.data_to_send() == b""
    client.receive_data(b"RFB 003.008\n")
    assert client.data_to_send() == b"RFB 003.008\n"
    client.receive_data(b"\x02\x01\x02")  # server offers None, VncAuth: None first wins
    assert client.data_to_send() == b"\x01"

    client = RFBClient(password="guestvnc")
    feed(client, b"RFB 003.008\n", b"\x01\x02")
    assert client.data_to_send() == b"RFB 003.008\n\x02"
    client.receive_data(CHALLENGE)
    assert client.data_to_send() == vnc_auth_response("guestvnc", CHALLENGE)
    client.receive_data(struct.pack(">I", 0))
    assert client.data_to_send() == b"\x01"  # ClientInit, shared
    events = client.receive_data(server_init(800, 600, BGRX, b"my desk"))
    (connected,) = only(events, Connected)
    assert connected == Connected(800, 600, "my desk", BGRX, BGRX, 2, (3, 8))
    assert client.data_to_send() == set_pixel_format(BGRX)
    assert client.connected and (client.width, client.height) == (800, 600)


def test_37_none_has_no_security_result() -> None:
    client = RFBClient(shared=False)
    events = feed(client, b"RFB 003.007\n", b"\x01\x01", server_init(10, 20))
    assert client.data_to_send() == b"RFB 003.007\n\x01\x00" + set_pixel_format(BGRX)
    assert only(events, Connected)[0].version == (3, 7)


def test_33_server_chooses_vnc_auth() -> None:
    client = RFBClient(password="pw")
    feed(client, b"RFB 003.003\n", struct.pack(">I", 2), CHALLENGE)
    assert client.data_to_send() == b"RFB 003.003\n" + vnc_auth_response("pw", CHALLENGE)
    events = feed(client, struct.pack(">I", 0), server_init(4, 4))
    assert only(events, Connected)[0].version == (3, 3)


def test_33_none_and_failure_without_reason() -> None:
    client = RFBClient()
    events = feed(client, b"RFB 003.003\n", struct.pack(">I", 1), server_init(4, 4))
    assert only(events, Connected)
    client = RFBClient(password="bad")
    events = feed(client, b"RFB 003.003\n", struct.pack(">I", 2), CHALLENGE, b"\0\0\0\1")
    assert events == [AuthFailed("authentication failed")]
    assert client.closed


def test_33_refusal_reason() -> None:
    client = RFBClient()
    with pytest.raises(RFBSecurityError, match="too many connections"):
        feed(client, b"RFB 003.003\n", b"\0\0\0\0\0\0\0\x14too many connections")


@pytest.mark.parametrize(
    ("server", "expected"),
    [((3, 3), (3, 3)), ((3, 5), (3, 3)), ((3, 7), (3, 7)), ((3, 8), (3, 8)), ((3, 889), (3, 8))]
    + [((4, 1), (3, 8)), ((3, 6), (3, 3))],
)
def test_version_choice(server: tuple[int, int], expected: tuple[int, int]) -> None:
    assert choose_version(*server) == expected
    client = RFBClient()
    client.receive_data(b"RFB %03d.%03d\n" % server)
    assert client.data_to_send() == b"RFB %03d.%03d\n" % expected


def test_not_rfb() -> None:
    client = RFBClient()
    with pytest.raises(RFBProtocolError, match="not an RFB server"):
        client.receive_data(b"SSH-2.0-OpenSSH\r\n")
    with pytest.raises(RFBStateError):
        client.receive_data(b"more")


def test_38_auth_failed_with_reason() -> None:
    client = RFBClient(password="wrong")
    reason = b"Authentication failure"
    events = feed(
        client,
        b"RFB 003.008\n\x01\x02",
        CHALLENGE,
        struct.pack(">II", 1, len(reason)) + reason,
    )
    assert events == [AuthFailed("Authentication failure")]
    assert client.closed and not client.connected


def test_37_auth_failed_without_reason() -> None:
    client = RFBClient(password="wrong")
    events = feed(client, b"RFB 003.007\n\x01\x02", CHALLENGE, struct.pack(">I", 1))
    assert events == [AuthFailed("authentication failed")]


def test_password_requested_when_missing() -> None:
    client = RFBClient()
    events = feed(client, b"RFB 003.008\n", b"\x01\x02", CHALLENGE)
    assert events == [AuthRequired(("password",))]
    assert client.data_to_send() == b"RFB 003.008\n\x02"  # nothing answered yet
    # Still waiting if the caller gives nothing useful.
    assert client.provide_credentials(username="someone") == [AuthRequired(("password",))]
    assert client.provide_credentials(password="later") == []
    assert client.data_to_send() == vnc_auth_response("later", CHALLENGE)
    events = feed(client, b"\0\0\0\0", server_init(8, 8))
    assert only(events, Connected)


def test_server_refuses_with_reason_37() -> None:
    client = RFBClient()
    with pytest.raises(RFBSecurityError, match="go away"):
        feed(client, b"RFB 003.007\n\x00", struct.pack(">I", 7), b"go away")


def test_no_common_security_type() -> None:
    client = RFBClient()
    with pytest.raises(RFBSecurityError, match=r"server offers \[16, 30\]"):
        feed(client, b"RFB 003.008\n\x02\x10\x1e")


def test_security_types_filter() -> None:
    client = RFBClient(password="x", security_types=[SecurityType.VNC_AUTH])
    feed(client, b"RFB 003.008\n\x02\x01\x02")
    assert client.data_to_send().endswith(b"\x02")


def test_vencrypt_negotiation_bytes() -> None:
    client = RFBClient(username="guest", password="guest", security_types=[256])
    feed(client, b"RFB 003.008\n\x01\x13", b"\x00\x02")
    assert client.data_to_send() == b"RFB 003.008\n\x13\x00\x02"
    feed(client, b"\x00", b"\x02", struct.pack(">II", 262, 256))
    # 262 (X509Plain) comes first but only Plain is allowed here.
    assert client.data_to_send() == struct.pack(">I", 256) + struct.pack(">II", 5, 5) + b"guest" * 2


def test_vencrypt_subtype_follows_server_order() -> None:
    client = RFBClient(username="u", password="p")
    feed(client, b"RFB 003.008\n\x01\x13", b"\x00\x02", b"\x00\x02", struct.pack(">II", 256, 262))
    # Plain: no TLS ack byte; credentials follow at once.
    assert client.data_to_send().endswith(struct.pack(">III", 256, 1, 1) + b"up")
    assert client.security_type == VeNCryptSubtype.PLAIN


def test_vencrypt_plain_credentials_and_result() -> None:
    client = RFBClient(security_types=[VeNCryptSubtype.PLAIN])
    events = feed(client, b"RFB 003.008\n\x01\x13", b"\x00\x02\x00\x01", struct.pack(">I", 256))
    assert events == [AuthRequired(("username", "password"))]
    client.data_to_send()
    client.provide_credentials(username="guest", password="s3cret")
    assert client.data_to_send() == struct.pack(">II", 5, 6) + b"guests3cret"
    events = feed(client, b"\0\0\0\0", server_init(2, 2))
    assert only(events, Connected)[0].security_type == 256


def test_vencrypt_refused_version() -> None:
    client = RFBClient()
    with pytest.raises(RFBSecurityError, match=r"VeNCrypt 0\.1"):
        feed(client, b"RFB 003.008\n\x01\x13", b"\x00\x01")


def test_vencrypt_tls_ack_failure() -> None:
    client = RFBClient(password="x")
    with pytest.raises(RFBSecurityError):
        feed(client, b"RFB 003.008\n\x01\x13\x00\x02\x00\x01", struct.pack(">I", 99))
    client = RFBClient(password="x")
    from guacr.handlers.vnc.events import RFBTLSError

    with pytest.raises(RFBTLSError, match="initialise TLS"):
        feed(client, b"RFB 003.008\n\x01\x13\x00\x02\x00\x01", struct.pack(">I", 258), b"\x00")


def test_eof_during_handshake() -> None:
    client = RFBClient()
    client.receive_data(b"RFB 003.008\n")
    with pytest.raises(RFBConnectionClosed):
        client.receive_data(b"")


def test_input_before_connected_is_refused() -> None:
    client = RFBClient()
    with pytest.raises(RFBStateError):
        client.key_event(0x61, True)


def test_byte_at_a_time_handshake_and_update() -> None:
    script = (
        b"RFB 003.008\n\x01\x02"
        + CHALLENGE
        + b"\0\0\0\0"
        + server_init(3, 2, BGRX, "bureau \u00e9".encode())
        + b"\x02"  # Bell
        + b"\x00\x00\x00\x01"
        + struct.pack(">HHHHi", 0, 0, 3, 2, 0)
        + bytes(range(24))
    )
    whole = RFBClient(password="guestvnc")
    expected = whole.receive_data(script)
    slow = RFBClient(password="guestvnc")
    got: list[Event] = []
    for i in range(len(script)):
        got += slow.receive_data(script[i : i + 1])
    assert [type(e).__name__ for e in got] == [type(e).__name__ for e in expected]
    assert only(got, Connected)[0].name == "bureau \u00e9"
    assert (got[-2].pixels == expected[-2].pixels).all()  # type: ignore[attr-defined]
    assert slow.data_to_send() == whole.data_to_send()


def test_server_pixel_format_kept_when_none_requested() -> None:
    pf16 = PixelFormat.for_color_depth(16)
    client = RFBClient(pixel_format=None)
    events = feed(client, b"RFB 003.008\n\x01\x01\0\0\0\0", server_init(2, 2, pf16))
    assert only(events, Connected)[0].pixel_format == pf16
    assert client.data_to_send() == b"RFB 003.008\n\x01\x01"  # no SetPixelFormat


def test_unusable_server_pixel_format() -> None:
    odd = PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0)
    client = RFBClient(pixel_format=None)
    with pytest.raises(RFBProtocolError, match="pixel format"):
        feed(client, b"RFB 003.008\n\x01\x01\0\0\0\0", server_init(2, 2, odd))
