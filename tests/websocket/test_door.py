"""The WebSocket door end to end: real guacr, real sockets, websockets' own client as
the browser (one instruction per text message, as guacamole-common-js sends them).

The echo test handler stands in for a protocol here (what reaches it comes back as
``name`` instructions); tests/websocket/test_ssh_door.py runs real SSH sessions.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from websocket.doorproc import LITE_KEY, TOKEN_KEY, Door, start_door
from websocket.wsclient import WsClient, expect_name, tunnel_url
from websockets.exceptions import InvalidStatus

from guacr.config import Config
from guacr.server.ws_door import off_reason
from guacr.tunnel import lite
from guacr.tunnel.tokens import GuacrTokens

pytestmark = pytest.mark.timeout(240)  # a hang guard: start-up under load is slow

TOKENS = GuacrTokens(TOKEN_KEY)


def echo_token(**params: str) -> str:
    return TOKENS.mint(protocol="echo", params=params)


def lite_token(payload: object, key: str = LITE_KEY) -> str:
    return lite.encrypt(payload, key.encode(), os.urandom(16))  # type: ignore[arg-type]


def raw_upgrade(port: int, extra: str = "", path: str = "/", protocol: str = "guacamole") -> bytes:
    """Send a hand-made upgrade request; return the response head (and anything after)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
        )
        if protocol:
            head += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        s.sendall((head + extra + "\r\n").encode())
        return _read_all(s)


def raw_tunnel(port: int, token: str) -> socket.socket:
    """An upgraded tunnel on a plain socket (no client library in the way)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(
        (
            f"GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: guacamole\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s


def _read_all(s: socket.socket, limit: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        out += data
    return out


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# ------------------------------------------------------------------ the contract


def test_id_first_input_and_output(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token(), "GUAC_WIDTH": "640"})) as c:
        first = c.ws.recv(timeout=5)
        assert isinstance(first, str) and first.startswith("0.,37.$")  # the connection id
        c.tunnel_id = first[6:-1]
        joined = c.read(5)
        assert joined is not None and joined[0] == "name" and joined[1].endswith("owner=True")
        c.send("key", 65, 1)
        expect_name(c, "key 65 1")
        # the connection id works for a 4822 joiner (one registry across doors)
        tcp = door.guacr.client()
        try:
            tcp.send("select", c.tunnel_id)
            assert tcp.expect("args")[1] == "VERSION_1_5_0"
        finally:
            tcp.close()


def test_ping_echoed_at_once_and_internal_dropped(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token()})) as c:
        c.wait_id()
        for ts in ("1", "1733500000000"):
            c.send_raw(f"0.,4.ping,{len(ts)}.{ts};")
            deadline = time.monotonic() + 2
            while ("", "ping", ts) not in c.internal:
                assert time.monotonic() < deadline, c.internal
                c._fill(2)
        c.send_raw("0.,3.foo,1.x;")  # an unknown internal instruction reaches nobody
        c.send("key", 66, 1)
        expect_name(c, "key 66 1")
        assert not any(i[1] == "foo" for i in c.internal)


def test_fragmented_message_reassembled(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token()})) as c:
        c.wait_id()
        c.ws.send(iter(["3.key", ",2.67", ",1.1;5.mouse,", "2.10,2.20,1.0;"]))
        expect_name(c, "key 67 1")
        expect_name(c, "mouse 10 20 0")


def _expect_refusal(c: WsClient, status: int, code: int) -> None:
    got = c.read_until_close(5)
    errors = [i for i in got if i[0] == "error"]
    assert errors and errors[-1][2] == str(status), got
    assert c.close_info() == (code, str(status))


def test_binary_frame_closes_1003(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token()})) as c:
        c.wait_id()
        c.ws.send(b"3.key,2.65,1.1;")
        _expect_refusal(c, 783, 1003)


def test_message_ending_mid_instruction_closes_768(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token()})) as c:
        c.wait_id()
        c.send_raw("3.key,2.65,1.1;5.mouse,1.")
        _expect_refusal(c, 768, 1002)


def test_client_close_without_code(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token()})) as c:
        c.wait_id()
        c.send("disconnect")
        got = c.read_until_close(5)
        assert ("disconnect",) in got
        assert c.close_info() == (1000, "0")
    # What guacamole-common-js's socket.close() sends: a close frame without a code
    # (1005 on arrival). It is echoed as it came, then the server ends the TCP stream.
    with raw_tunnel(door.ws_port, echo_token()) as s:
        time.sleep(0.3)
        s.sendall(masked_frame(0x8, b""))
        tail = _read_all(s)
        assert tail.endswith(b"\x88\x00"), tail


def test_malformed_frames_end_only_that_connection(door: Door) -> None:
    bystander = WsClient(tunnel_url(door.ws_port, {"token": echo_token()}))
    bystander.wait_id()
    bad_frames = [
        bytes([0x81, 0x05]) + b"hello",  # unmasked client frame: protocol error
        masked_frame(0x3, b"x"),  # reserved opcode
        masked_frame(0x1, b"\xff\xfe"),  # invalid UTF-8 in a text frame
        masked_frame(0x0, b"3.key;"),  # continuation without a start
        masked_frame(0x1, b"3.key", fin=False) + masked_frame(0x1, b"x"),  # new msg mid-fragment
        masked_frame(0x9, b"p" * 200),  # control frame over 125 bytes
    ]
    for frame in bad_frames:
        with raw_tunnel(door.ws_port, echo_token()) as s:
            head = b""
            while b"0.," not in head:  # the id: the worker serves the tunnel now
                chunk = s.recv(4096)
                assert chunk, head
                head += chunk
            s.sendall(frame)
            tail = _read_all(s)
            # an error instruction, a close frame (0x88) with a Guacamole status, then EOF
            assert b"5.error," in tail and b"\x88" in tail, (frame, tail)
    bystander.send("key", 68, 1)
    expect_name(bystander, "key 68 1")
    bystander.close()


# ------------------------------------------------------------------ tokens at the door


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: lite_token({"connection": {"type": "ssh"}}, "y" * 32), id="lite-wrong-key"
        ),
        pytest.param(lambda: "Z2FyYmFnZQ==", id="lite-garbage"),
        pytest.param(
            lambda: lite_token({"connection": {"type": "gopher"}}), id="lite-unknown-type"
        ),
        pytest.param(lambda: echo_token()[:-3] + "AAA", id="guacr-tampered"),
        pytest.param(lambda: TOKENS.mint(protocol="echo", ttl=0.001), id="guacr-expired"),
        pytest.param(
            lambda: GuacrTokens("some other token key").mint(protocol="echo"), id="guacr-other-key"
        ),
        pytest.param(lambda: "", id="no-token"),
    ],
)
def test_refused_tokens_get_769_after_the_upgrade(door: Door, make: object) -> None:
    token = make()  # type: ignore[operator]
    time.sleep(0.01)
    with WsClient(tunnel_url(door.ws_port, {"token": token})) as c:
        got = c.read_until_close(5)
        assert got == [("error", "Token validation failed", "769")]
        assert c.tunnel_id is None
        assert c.close_info() == (1008, "769")
    if token:
        assert token not in door.guacr.log()


def test_guacr_token_works_once(door: Door) -> None:
    token = echo_token()
    with WsClient(tunnel_url(door.ws_port, {"token": token})) as c:
        c.wait_id()
    with WsClient(tunnel_url(door.ws_port, {"token": token})) as c:
        _expect_refusal(c, 769, 1008)
    assert token not in door.guacr.log()


def test_unknown_join_gets_516(door: Door) -> None:
    with WsClient(tunnel_url(door.ws_port, {"token": TOKENS.mint(join="$nope")})) as c:
        _expect_refusal(c, 516, 1002)


# ------------------------------------------------------------------ HTTP


def test_http_errors(door: Door) -> None:
    with socket.create_connection(("127.0.0.1", door.ws_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 426 ")
    assert raw_upgrade(door.ws_port, protocol="").startswith(b"HTTP/1.1 400 ")
    assert raw_upgrade(door.ws_port, protocol="chat").startswith(b"HTTP/1.1 400 ")
    ok = raw_upgrade(door.ws_port, path="/?token=bad")
    assert ok.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol: guacamole" in ok
    with socket.create_connection(("127.0.0.1", door.ws_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 400 ")


# ------------------------------------------------------------------ limits


@pytest.fixture(scope="module")
def strict_door(tmp_path_factory: pytest.TempPathFactory) -> object:
    yield from start_door(
        tmp_path_factory.mktemp("ws-strict"),
        workers=1,
        GUACR_WEBSOCKET_ORIGINS="https://app.example",
        GUACR_WEBSOCKET_MAX_PER_ADDRESS="2",
        GUACR_WEBSOCKET_TRUSTED_PROXIES="127.0.0.1",
        GUACR_WEBSOCKET_MAX_MESSAGE="4096",
        GUACR_WEBSOCKET_HANDSHAKE_TIMEOUT="1",
        GUACR_WEBSOCKET_PATH="/guacamole/websocket-tunnel",
        GUACR_MAX_WRITE_BUFFER=str(1 << 20),
    )


def _strict(
    door: Door, xff: str | None = None, origin: str | None = "https://app.example", **params: str
) -> WsClient:
    return WsClient(
        tunnel_url(door.ws_port, {"token": echo_token(**params)}, "/guacamole/websocket-tunnel"),
        origin=origin,
        headers={"X-Forwarded-For": xff} if xff else None,
    )


def test_origin_allow_list_and_path(strict_door: Door) -> None:
    with pytest.raises(InvalidStatus) as info:
        _strict(strict_door, origin="https://evil.example")
    assert info.value.response.status_code == 403
    with _strict(strict_door) as c:
        c.wait_id()
    with _strict(strict_door, origin=None) as c:  # not a browser: no Origin
        c.wait_id()
    with pytest.raises(InvalidStatus) as info:
        WsClient(tunnel_url(strict_door.ws_port, {"token": echo_token()}, "/other"))
    assert info.value.response.status_code == 404


def test_per_address_limit_with_forwarded_for(strict_door: Door) -> None:
    a1 = _strict(strict_door, xff="10.0.0.1")
    a2 = _strict(strict_door, xff="192.0.2.9, 10.0.0.1")
    a1.wait_id()
    a2.wait_id()
    with _strict(strict_door, xff="10.0.0.1") as a3:
        _expect_refusal(a3, 797, 1008)
    with _strict(strict_door, xff="10.0.0.2") as b:  # another address is fine
        b.wait_id()
    a1.close()
    deadline = time.monotonic() + 5
    while True:  # the slot frees once the worker reports the tunnel gone
        with _strict(strict_door, xff="10.0.0.1") as a4:
            got = a4.read(5) if a4.tunnel_id is None else None
            if a4.tunnel_id is not None or (got is not None and got[0] != "error"):
                break
        assert time.monotonic() < deadline, "address slot never freed"
        time.sleep(0.2)
    a2.close()


def test_handshake_timeout(strict_door: Door) -> None:
    with socket.create_connection(("127.0.0.1", strict_door.ws_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        start = time.monotonic()
        assert _read_all(s, 4) == b""
        assert time.monotonic() - start < 3


def test_max_message_size(strict_door: Door) -> None:
    with _strict(strict_door) as c:
        c.wait_id()
        c.send("clipboard", 1, "text/plain" + "x" * 5000)
        _expect_refusal(c, 781, 1009)


def test_slow_reader_is_dropped_and_others_unaffected(strict_door: Door) -> None:
    other = _strict(strict_door)
    other.wait_id()
    flood = _strict(strict_door, mode="flood")
    flood.wait_id()
    flood.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deadline = time.monotonic() + 20
    while "is not reading" not in strict_door.guacr.log():
        assert time.monotonic() < deadline, strict_door.guacr.log()[-2000:]
        other.send("key", 69, 1)
        expect_name(other, "key 69 1")
        time.sleep(0.2)
    other.send("key", 70, 1)
    expect_name(other, "key 70 1")
    other.close()
    flood.ws.socket.close()


@pytest.mark.parametrize(
    ("lite_key", "token_key", "reason"),
    [
        (None, None, "neither guacamole_lite_key nor token_key is set"),
        ("too short for AES-256", None, "guacamole_lite_key must be 32 bytes"),
        (None, "k", "token_key"),
        (LITE_KEY, TOKEN_KEY, ""),
    ],
)
def test_why_the_door_stays_off(lite_key: str | None, token_key: str | None, reason: str) -> None:
    config = Config(guacamole_lite_key=lite_key, token_key=token_key)
    if reason:
        assert reason in off_reason(config)
        assert not lite_key or lite_key not in off_reason(config)
    else:
        assert off_reason(config) == ""


def test_door_off_without_usable_keys(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The daemon starts without the door, logs why (never the key) and serves 4822."""
    lite_key, token_key = "too short for AES-256", ""
    reason = "guacamole_lite_key must be 32 bytes"
    gen = start_door(
        tmp_path_factory.mktemp("ws-off"),
        workers=1,
        GUACR_GUACAMOLE_LITE_KEY=lite_key,
        GUACR_TOKEN_KEY=token_key,
    )
    d = next(gen)
    try:
        assert reason in d.guacr.log()
        if lite_key:
            assert lite_key not in d.guacr.log()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", d.ws_port), timeout=2).close()
        with d.guacr.client() as c:  # 4822 serves as ever
            c.send("select", "echo")
            assert c.expect("args")[1] == "VERSION_1_5_0"
    finally:
        gen.close()


def test_close_right_after_the_id_removes_the_connection(door: Door) -> None:
    """A browser that closes as soon as the id arrives (before the handler's task
    started) must not leave its connection behind."""
    ids = []
    for _ in range(5):
        c = WsClient(tunnel_url(door.ws_port, {"token": echo_token()}))
        ids.append(c.wait_id())
        c.close()
    deadline = time.monotonic() + 5
    while not all(f"Connection {i} removed" in door.guacr.log() for i in ids):
        assert time.monotonic() < deadline, door.guacr.log()[-3000:]
        time.sleep(0.05)


def test_keep_alive_nop_within_the_browsers_receive_timeout(door: Door) -> None:
    """guacamole-common-js closes a tunnel silent for 15 s: an idle session gets ``nop``
    (after 5 s without output, as guacd) and ping echoes keep it alive anyway."""
    with WsClient(tunnel_url(door.ws_port, {"token": echo_token()})) as c:
        c.wait_id()
        start = time.monotonic()
        while True:
            ins = c.read(8)
            assert ins is not None, c.close_info()
            if ins[0] == "sync":
                c.send("sync", ins[1])
            if ins[0] == "nop":
                break
        assert time.monotonic() - start < 7
