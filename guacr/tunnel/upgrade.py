"""The opening handshake of a tunnel, sans-I/O, on ``websockets``' ``ServerProtocol``.

Bytes go in; out comes either an :class:`Accepted` (the 101 to send, the request's
path, query and headers, and any bytes the client sent after its request, which
belong to whoever serves the open tunnel) or a :class:`Rejected` (a complete HTTP error
response to send before closing). Anything that is not a WebSocket handshake gets a
proper HTTP answer, never silence: a plain ``GET`` 426, a wrong path 404, a missing or
wrong subprotocol 400, a refused ``Origin`` 403, garbage 400, an oversized head 431.

Only the request head is fed to ``ServerProtocol`` (it would otherwise start parsing
frames before the 101 is even sent), so bytes after the head are handed on untouched;
that is what lets the listener answer the upgrade and a worker serve the tunnel.
"""

from __future__ import annotations

import email.utils
import http
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from guacr.tunnel.grant import Query, parse_query

SUBPROTOCOL = Subprotocol("guacamole")
MAX_HEAD = 16384
_END_OF_HEAD = b"\r\n\r\n"

# websockets logs every handshake at INFO ("connection open"); guacr logs its own lines.
_quiet = logging.getLogger("guacr.tunnel.websockets")
_quiet.setLevel(logging.WARNING)


@dataclass(frozen=True)
class UpgradePolicy:
    """What the door accepts: ``path`` (empty = any) and ``origins`` (empty = any).

    A request without ``Origin`` (not a browser) passes the allow-list: only browsers
    send it, and a non-browser client could put anything there anyway.
    """

    path: str = ""
    origins: Sequence[str] = ()


@dataclass(frozen=True)
class Accepted:
    """The handshake succeeded; ``response`` is the 101 to write."""

    response: bytes
    path: str
    query: Query
    headers: Headers
    leftover: bytes

    @property
    def origin(self) -> str | None:
        """The browser's ``Origin`` header, if any."""
        return self.headers.get("Origin")


@dataclass(frozen=True)
class Rejected:
    """The handshake failed; write ``response`` and close."""

    status: int
    response: bytes
    reason: str


def _raw_response(status: http.HTTPStatus, text: str) -> bytes:
    body = text.encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
        ]
    )
    return Response(status.value, status.phrase, headers, body).serialize()


class Upgrade:
    """One connection's opening handshake; feed bytes until :attr:`result` is set."""

    def __init__(self, policy: UpgradePolicy) -> None:
        self.policy = policy
        self._buf = bytearray()
        self.result: Accepted | Rejected | None = None
        origins: list[Origin | None] | None = None
        if policy.origins:
            origins = [Origin(o) for o in policy.origins]
            origins.append(None)
        self._protocol = ServerProtocol(origins=origins, subprotocols=[SUBPROTOCOL], logger=_quiet)

    def receive_data(self, data: bytes) -> Accepted | Rejected | None:
        """Consume bytes; returns the result once the head is complete."""
        if self.result is not None:
            return self.result
        self._buf += data
        end = self._buf.find(_END_OF_HEAD)
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                self._reject(
                    http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request head too large"
                )
            return self.result
        end += len(_END_OF_HEAD)
        if end > MAX_HEAD:
            return self._reject(
                http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request head too large"
            )
        head, leftover = bytes(self._buf[:end]), bytes(self._buf[end:])
        self._buf.clear()
        self._protocol.receive_data(head)
        request = next(
            (e for e in self._protocol.events_received() if isinstance(e, Request)), None
        )
        if request is None:
            return self._reject(http.HTTPStatus.BAD_REQUEST, "Not a valid HTTP request")
        path, _, raw_query = request.path.partition("?")
        if self.policy.path and path != self.policy.path:
            return self._reject(http.HTTPStatus.NOT_FOUND, "No WebSocket tunnel at this path")
        response = self._protocol.accept(request)
        if response.status_code != 101:
            exc = self._protocol.handshake_exc
            self.result = Rejected(
                response.status_code,
                response.serialize(),
                str(exc) if exc else response.reason_phrase,
            )
            return self.result
        self._protocol.send_response(response)
        self._protocol.data_to_send()
        self.result = Accepted(
            response=response.serialize(),
            path=path,
            query=parse_query(raw_query),
            headers=request.headers,
            leftover=leftover,
        )
        return self.result

    def _reject(self, status: http.HTTPStatus, text: str) -> Rejected:
        self.result = Rejected(status.value, _raw_response(status, text + ".\n"), text)
        return self.result
