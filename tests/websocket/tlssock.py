"""A TLS client socket that two threads may use at once, for the blocking test client.

websockets' threading client reads in a background thread while the caller's thread
sends (the upgrade request, then every message). On a plain ``ssl.SSLSocket`` both
threads then enter the same OpenSSL session at once, which OpenSSL forbids: a blocking
``recv`` sits inside ``SSL_read`` (the server's TLS 1.3 session tickets arrive right
after the handshake) while ``sendall`` runs ``SSL_write``. Under CPU load a write was
lost that way now and then, and the client waited 10 s for an upgrade response to a
request the server never got (the wss tests' rare stall).

:class:`LockedTls` keeps one lock around every call into the session and never holds
it across a network wait: the session is non-blocking, and waits for readiness happen
on the raw descriptor with the lock released.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any


class LockedTls:
    """Enough of ``socket.socket`` for ``websockets.sync`` (recv, sendall, shutdown,
    settimeout, close, fileno, ...), over a TLS session entered by one thread at a time."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls  # its handshake done
        self.tls.setblocking(False)
        self.lock = threading.Lock()
        self.timeout: float | None = None
        self.family = tls.family

    @classmethod
    def connect(
        cls, host: str, port: int, context: ssl.SSLContext, timeout: float = 10.0
    ) -> LockedTls:
        """TCP connection and TLS handshake (within ``timeout``)."""
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            return cls(context.wrap_socket(raw, server_hostname=host))
        except BaseException:
            raw.close()
            raise

    # The session, one thread at a time --------------------------------------------
    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` decrypted bytes; b'' at the end of the stream."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            with self.lock:
                try:
                    data = self.tls.recv(bufsize)
                    # Drain what OpenSSL already decrypted: select() on the
                    # descriptor would not wake up for it.
                    while data and len(data) < bufsize and self.tls.pending():
                        data += self.tls.recv(bufsize - len(data))
                    return data
                except ssl.SSLWantReadError:
                    want_read = True
                except ssl.SSLWantWriteError:
                    want_read = False
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
            self._wait(want_read, deadline)

    def sendall(self, data: bytes) -> None:
        """Send all of ``data`` (retried with the same bytes, as OpenSSL requires)."""
        view = memoryview(data)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while view:
            with self.lock:
                try:
                    sent = self.tls.send(view)
                    view = view[sent:]
                    continue
                except ssl.SSLWantWriteError:
                    want_read = False
                except ssl.SSLWantReadError:
                    want_read = True
            self._wait(want_read, deadline)

    def _wait(self, want_read: bool, deadline: float | None) -> None:
        """Wait for the descriptor without holding the lock."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError("timed out")
        fd = self.tls.fileno()
        if fd < 0:
            raise OSError("socket closed")
        r, w = ([fd], []) if want_read else ([], [fd])
        select.select(r, w, [], left)

    # Plain socket calls -------------------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def shutdown(self, how: int) -> None:
        """Half-close the TCP stream; the session stays usable for reading
        (``ssl.SSLSocket.shutdown`` would drop it and read raw records after)."""
        socket.socket.shutdown(self.tls, how)

    def close(self) -> None:
        self.tls.close()

    def fileno(self) -> int:
        return self.tls.fileno()

    def setsockopt(self, *args: Any) -> None:
        self.tls.setsockopt(*args)

    def getsockname(self) -> Any:
        return self.tls.getsockname()

    def getpeername(self) -> Any:
        return self.tls.getpeername()
