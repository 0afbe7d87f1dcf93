"""The tunnel contract, sans-I/O: websockets' own ClientProtocol plays the browser."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from guacr.protocol.status import Status
from guacr.tunnel.closecodes import close_code
from guacr.tunnel.framing import Closed, Received, Tunnel
from guacr.tunnel.upgrade import Accepted, Rejected, Upgrade, UpgradePolicy


def client(
    path: str = "/ws?token=x", subprotocols: list[str] | None = None, origin: str | None = None
) -> ClientProtocol:
    return ClientProtocol(
        parse_uri("ws://127.0.0.1:4823" + path),
        subprotocols=[
            Subprotocol(s) for s in (["guacamole"] if subprotocols is None else subprotocols)
        ],
        origin=origin,  # type: ignore[arg-type]
    )


def request_bytes(c: ClientProtocol) -> bytes:
    c.send_request(c.connect())
    return b"".join(c.data_to_send())


def opened(max_message: int = 1 << 20) -> tuple[ClientProtocol, Tunnel]:
    """A client and a tunnel past the upgrade, as the worker holds it after a hand-off."""
    c = client()
    up = Upgrade(UpgradePolicy())
    result = up.receive_data(request_bytes(c))
    assert isinstance(result, Accepted)
    c.receive_data(result.response)
    assert c.state is State.OPEN
    t = Tunnel(max_message)
    t.receive_data(result.leftover)
    return c, t


def pump(c: ClientProtocol, t: Tunnel) -> list[object]:
    """Client -> tunnel; returns the tunnel's events."""
    events: list[object] = []
    for chunk in c.data_to_send():
        if chunk:
            events += t.receive_data(chunk)
        else:
            events += t.receive_eof()
    return events


def to_client(t: Tunnel, c: ClientProtocol) -> list[Frame]:
    for chunk in t.data_to_send():
        if chunk:
            c.receive_data(chunk)
        else:
            c.receive_eof()
    return [e for e in c.events_received() if isinstance(e, Frame)]


def texts(frames: list[Frame]) -> list[str]:
    return [bytes(f.data).decode() for f in frames if f.opcode is Opcode.TEXT]


# ------------------------------------------------------------------ upgrade


def test_upgrade_accepts_guacamole_subprotocol_and_parses_query() -> None:
    c = client(
        "/guacamole/websocket-tunnel?token=a%2Bb&GUAC_AUDIO=x&GUAC_AUDIO=y",
        origin="https://app.example",
    )
    up = Upgrade(UpgradePolicy(path="/guacamole/websocket-tunnel", origins=["https://app.example"]))
    raw = request_bytes(c)
    assert up.receive_data(raw[:10]) is None  # head not complete yet
    result = up.receive_data(raw[10:] + b"early")
    assert isinstance(result, Accepted)
    assert result.query == {"token": "a+b", "GUAC_AUDIO": ["x", "y"]}
    assert result.path == "/guacamole/websocket-tunnel"
    assert result.origin == "https://app.example"
    assert result.leftover == b"early"
    c.receive_data(result.response)
    resp = next(e for e in c.events_received() if isinstance(e, Response))
    assert resp.status_code == 101 and resp.headers["Sec-WebSocket-Protocol"] == "guacamole"


def _rejected(raw: bytes, policy: UpgradePolicy = UpgradePolicy()) -> Rejected:
    result = Upgrade(policy).receive_data(raw)
    assert isinstance(result, Rejected), result
    assert result.response.startswith(f"HTTP/1.1 {result.status} ".encode())
    return result


def test_upgrade_http_errors() -> None:
    # A plain HTTP GET (a browser opening the URL): 426 Upgrade Required.
    assert _rejected(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 426
    # Not HTTP at all, or a method websockets does not parse: 400.
    assert _rejected(b"\x16\x03\x01 garbage\r\n\r\n").status == 400
    assert _rejected(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").status == 405
    # Missing and wrong subprotocol: 400.
    assert _rejected(request_bytes(client(subprotocols=[]))).status == 400
    assert _rejected(request_bytes(client(subprotocols=["chat"]))).status == 400
    # Wrong path when one is configured: 404; any path when none is.
    assert _rejected(request_bytes(client("/other")), UpgradePolicy(path="/ws")).status == 404
    assert isinstance(
        Upgrade(UpgradePolicy()).receive_data(request_bytes(client("/x/y"))), Accepted
    )
    # Origin not allowed: 403; no Origin (not a browser) passes.
    policy = UpgradePolicy(origins=["https://ok.example"])
    assert _rejected(request_bytes(client(origin="https://evil.example")), policy).status == 403
    assert isinstance(Upgrade(policy).receive_data(request_bytes(client())), Accepted)
    # An endless head: 431.
    assert _rejected(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 4000).status == 431


# ------------------------------------------------------------------ open tunnel


def test_id_first_then_instructions_and_ping_echo() -> None:
    c, t = opened()
    t.send_id("$abc")
    t.send(b"4.sync,1.1;3.nop;")
    assert texts(to_client(t, c)) == ["0.,4.$abc;", "4.sync,1.1;3.nop;"]
    c.send_text(b"0.,4.ping,13.1700000000000;")
    c.send_text(b"3.key,2.65,1.1;0.,3.foo;5.mouse,1.1,1.2,1.0;")
    events = pump(c, t)
    assert events == [
        Received(
            [("key", "65", "1"), ("mouse", "1", "2", "0")], b"3.key,2.65,1.1;5.mouse,1.1,1.2,1.0;"
        )
    ]
    assert texts(to_client(t, c)) == ["0.,4.ping,13.1700000000000;"]
    assert t.pings == 1


def test_fragmented_message_reassembled() -> None:
    c, t = opened()
    c.send_text(b"4.size,4.10", fin=False)
    c.send_continuation(b"24,3.7", fin=False)
    assert pump(c, t) == []
    c.send_continuation(b"68;", fin=True)
    assert pump(c, t) == [Received([("size", "1024", "768")], b"4.size,4.1024,3.768;")]


@pytest.mark.parametrize(
    ("send", "status"),
    [
        (lambda c: c.send_binary(b"4.sync,1.1;"), Status.CLIENT_BAD_TYPE),
        (lambda c: c.send_text(b"4.sync,1.1;5.mouse,1.1"), Status.CLIENT_BAD_REQUEST),
        (lambda c: c.send_text(b"garbage;"), Status.CLIENT_BAD_REQUEST),
        (lambda c: c.send_text(b"9999999.x;"), Status.CLIENT_OVERRUN),
        (
            lambda c: c.send_text("3.key,1.\udcff;".encode("utf-8", "surrogatepass")),
            Status.CLIENT_BAD_REQUEST,
        ),
        (lambda c: c.send_text(b"4.sync,1.1;12"), Status.CLIENT_BAD_REQUEST),
    ],
    ids=["binary", "mid-instruction", "garbage", "overrun", "bad-utf8", "trailing-junk"],
)
def test_bad_messages_close_with_guacamole_status(send: object, status: Status) -> None:
    c, t = opened()
    send(c)  # type: ignore[operator]
    events = pump(c, t)
    assert events == [Closed(close_code(status), str(int(status)), False)]
    frames = to_client(t, c)
    error = texts(frames)[0]
    assert error.startswith("5.error,") and error.endswith(f",3.{int(status)};")
    close = next(f for f in frames if f.opcode is Opcode.CLOSE)
    assert Close.parse(close.data) == Close(close_code(status), str(int(status)))
    # The client's answering close completes the handshake; nothing else gets through.
    assert pump(c, t) == []
    to_client(t, c)
    assert c.state is State.CLOSED
    pump(c, t)  # the client's EOF
    assert t.state is State.CLOSED


def test_binary_code_is_1003_and_overrun_1009() -> None:
    assert close_code(Status.CLIENT_BAD_TYPE) == 1003
    assert close_code(Status.CLIENT_OVERRUN) == 1009
    assert close_code(Status.CLIENT_UNAUTHORIZED) == 1008


def test_message_too_large_is_781_with_1009() -> None:
    c, t = opened(max_message=1000)
    c.send_text(b"4.sync,1.1;" * 200)
    events = pump(c, t)
    assert events == [Closed(1009, "781", False)]
    frames = to_client(t, c)
    assert texts(frames)[0].endswith(",3.781;")
    assert Close.parse(frames[-1].data) == Close(1009, "781")


def test_refused_token_close() -> None:
    c, t = opened()
    t.close(Status.CLIENT_UNAUTHORIZED, "Token validation failed")
    frames = to_client(t, c)
    assert texts(frames) == ["5.error,23.Token validation failed,3.769;"]
    assert Close.parse(frames[-1].data) == Close(1008, "769")
    pump(c, t)
    to_client(t, c)
    assert c.close_code == 1008 and c.close_reason == "769"


def test_client_close_without_code_is_1005_and_echoed() -> None:
    c, t = opened()
    c.send_text(b"10.disconnect;")
    c.send_close()
    events = pump(c, t)
    assert events == [Received([("disconnect",)], b"10.disconnect;"), Closed(1005, "", True)]
    frames = to_client(t, c)
    assert frames and frames[-1].opcode is Opcode.CLOSE
    assert t.close_expected() is False or t.state is not State.OPEN
    t.send(b"3.nop;")  # ignored once closing
    assert texts(to_client(t, c)) == []


def test_ping_read_with_the_clients_close_is_not_answered() -> None:
    """A browser's tunnel ping and its close frame in one read (it left while pinging;
    common on a loaded machine): the close is answered, the ping no longer can be."""
    c, t = opened()
    c.send_text(b"0.,4.ping,13.1700000000000;")
    c.send_close(1000)
    events = t.receive_data(b"".join(c.data_to_send()))  # one read: no exception
    assert events == [Closed(1000, "", True)]
    frames = to_client(t, c)
    assert [f.opcode for f in frames] == [Opcode.CLOSE] and texts(frames) == []
    assert t.pings == 0


def test_server_close_success_and_eof() -> None:
    c, t = opened()
    t.close()
    frames = to_client(t, c)
    assert Close.parse(frames[-1].data) == Close(1000, "0")
    assert texts(frames) == []
    c2, t2 = opened()
    assert t2.receive_eof() == [Closed(1006, "", True)]


def test_websocket_ping_answered_by_pong() -> None:
    c, t = opened()
    c.send_ping(b"hi")
    assert pump(c, t) == []
    frames = to_client(t, c)
    assert [(f.opcode, bytes(f.data)) for f in frames] == [(Opcode.PONG, b"hi")]
