"""A blocking guacamole-common-js stand-in over WebSocket, for tests and benchmarks.

Same surface as ``guacr_process.Client`` (``send``, ``read``, ``queue``, ``close``) so
the terminal helpers of the SSH tests drive it unchanged. Like ``WebSocketTunnel`` it
sends one instruction per text message, and keeps the id from the first ``""``
instruction in :attr:`tunnel_id`; other ``""`` instructions (ping echoes) are kept
in :attr:`internal`, never queued.
"""

from __future__ import annotations

import ssl
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from websocket.tlssock import LockedTls

from guacr.protocol.instruction import encode_str
from guacr.protocol.parser import Instruction, Parser

GUAC_SUBPROTOCOL = "guacamole"


def tunnel_url(
    port: int, query: dict[str, str] | str, path: str = "/websocket-tunnel", scheme: str = "ws"
) -> str:
    q = query if isinstance(query, str) else urlencode(query)
    return f"{scheme}://127.0.0.1:{port}{path}?{q}"


class WsClient:
    """One tunnel, blocking."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        max_size: int | None = 1 << 24,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        sock = None
        if ssl_context is not None:
            # wss: a session both of websockets' threads may use (see tlssock); the
            # request then goes over it as if it were a plain ws:// socket.
            parts = urlsplit(url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 443
            sock = LockedTls.connect(host, port, ssl_context, timeout)
            url = urlunsplit(parts._replace(scheme="ws"))
        self.ws: ClientConnection = connect(
            url,
            sock=sock,  # type: ignore[arg-type]
            subprotocols=[GUAC_SUBPROTOCOL],  # type: ignore[list-item]
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=timeout,
            max_size=max_size,
            compression=None,
            legacy=True,
        )
        self.parser = Parser()
        self.queue: list[Instruction] = []
        self.internal: list[Instruction] = []
        self.tunnel_id: str | None = None
        self.messages = 0

    def send(self, opcode: str, *args: object) -> None:
        self.ws.send(encode_str(opcode, *args))

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def _fill(self, timeout: float | None) -> bool:
        try:
            msg = self.ws.recv(timeout=timeout)
        except ConnectionClosed:
            return False
        self.messages += 1
        data = msg.encode() if isinstance(msg, str) else msg
        for ins in self.parser.receive_data(data):
            if ins[0] == "":
                if self.tunnel_id is None and len(ins) == 2:
                    self.tunnel_id = ins[1]
                else:
                    self.internal.append(ins)
            else:
                self.queue.append(ins)
        return True

    def read(self, timeout: float | None = None) -> Instruction | None:
        """Next instruction, or None once the tunnel closed; TimeoutError if none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.queue:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._fill(left):
                return None
        return self.queue.pop(0)

    def wait_id(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while self.tunnel_id is None:
            if not self._fill(max(0.0, deadline - time.monotonic())):
                raise EOFError(f"closed before the id: {self.close_info()} {self.queue}")
        return self.tunnel_id

    def read_until_close(self, timeout: float = 10.0) -> list[Instruction]:
        out: list[Instruction] = []
        deadline = time.monotonic() + timeout
        while True:
            ins = self.read(max(0.0, deadline - time.monotonic()))
            if ins is None:
                return out
            out.append(ins)

    def close_info(self) -> tuple[int | None, str | None]:
        rcvd = self.ws.close_rcvd if hasattr(self.ws, "close_rcvd") else None
        if rcvd is not None:
            return rcvd.code, rcvd.reason
        return self.ws.protocol.close_code, self.ws.protocol.close_reason

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def expect_name(c: WsClient, text: str, timeout: float = 15.0) -> None:
    """Read (answering ``sync``) until the echo handler's ``name`` ``text`` arrives."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ins = c.read(max(0.0, deadline - time.monotonic()))
        assert ins is not None, f"closed while waiting for {text!r}: {seen} {c.close_info()}"
        seen.append(ins)
        if ins[0] == "sync":
            c.send("sync", ins[1])
        if ins == ("name", text):
            return
    raise AssertionError(f"no name {text!r}; saw {seen}")
