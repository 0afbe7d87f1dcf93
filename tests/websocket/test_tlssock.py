"""The test client's TLS socket: one thread at a time in the session (tests/websocket/tlssock).

The wss tests stalled now and then because websockets' threading client entered one
OpenSSL session from two threads (its reader inside ``SSL_read`` while the caller sent
the upgrade request), and a write was lost. These tests show the wrapper the client
now uses keeps the threads apart, and that it still carries data both ways at once
over real TLS.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers import _self_signed_cert
from websocket.tlssock import LockedTls

pytestmark = pytest.mark.timeout(240)  # a hang guard: start-up under load is slow


class _Session:
    """Stands in for an ``ssl.SSLSocket``: notes when two threads are inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.overlaps = 0
        self.family = socket.AF_INET
        self.pair = socket.socketpair()  # a descriptor to wait on, always writable
        self.sent = bytearray()
        self.reads = 0

    def _enter(self) -> None:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        time.sleep(0.02)  # a slow SSL_read / SSL_write: plenty of time to collide

    def recv(self, n: int) -> bytes:
        self._enter()
        self.inside -= 1
        self.reads += 1
        if self.reads < 20:
            raise ssl.SSLWantReadError()
        return b"x"

    def send(self, data: Any) -> int:
        self._enter()
        self.inside -= 1
        self.sent += bytes(data[:10])
        return min(10, len(data))

    def pending(self) -> int:
        return 0

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return self.pair[1].fileno()


def test_reader_and_writer_never_share_the_session() -> None:
    session = _Session()
    session.pair[0].send(b"!")  # the descriptor reads as ready: recv retries at once
    tls = LockedTls(session)  # type: ignore[arg-type]
    reader = threading.Thread(target=tls.recv, args=(100,))
    reader.start()
    tls.sendall(b"0123456789" * 10)
    reader.join(10)
    assert not reader.is_alive()
    assert session.sent == b"0123456789" * 10
    assert session.overlaps == 0
    for s in session.pair:
        s.close()


def test_both_ways_at_once_over_real_tls(tmp_path: Path) -> None:
    """A reader thread blocked in recv while the caller sends, as websockets does."""
    cert, key = _self_signed_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def echo() -> None:  # answers each line as it comes (after its session tickets)
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            while data := s.recv(65536):
                s.sendall(data)

    server = threading.Thread(target=echo, daemon=True)
    server.start()
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    tls = LockedTls.connect("127.0.0.1", port, client_ctx)
    want = b"".join(b"line %d\n" % i for i in range(300))
    got = bytearray()

    def read() -> None:
        while len(got) < len(want):
            chunk = tls.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(300):
        tls.sendall(b"line %d\n" % i)
    reader.join(30)
    assert bytes(got) == want
    tls.shutdown(socket.SHUT_WR)
    server.join(10)
    tls.close()
    listener.close()
