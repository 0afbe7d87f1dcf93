"""Health and metrics over HTTP: ``/health/live``, ``/health/ready``, ``/metrics``.

Served on the listener's event loop with ``h11`` (sans-I/O HTTP/1.1) and thin asyncio
glue: three read-only routes do not warrant a web framework, and prometheus-client's
own server is thread-based. Bounded per connection (16 KiB of request head, 10 s per
request, at most ``MAX_CLIENTS`` at once) so a misbehaving scraper costs little.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import h11
from prometheus_client import CollectorRegistry

from guacr.control.metrics import exposition
from guacr.control.model import InstanceInfo

log = logging.getLogger("guacr.metrics")

MAX_HEAD = 16 * 1024
REQUEST_TIMEOUT = 10.0
MAX_CLIENTS = 64


def readiness(info: InstanceInfo) -> tuple[bool, str]:
    """(ready, reason) for ``/health/ready``."""
    if info.draining:
        return False, "draining"
    if info.workers_ready == 0:
        return False, "no worker ready"
    return True, "ready"


class HealthMetricsServer:
    """The HTTP endpoint; ``instance`` and ``registry`` are read at each request."""

    def __init__(
        self,
        instance: Callable[[], InstanceInfo],
        registry: CollectorRegistry,
        host: str,
        port: int,
    ) -> None:
        self.instance = instance
        self.registry = registry
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._clients = 0

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("Health and metrics on http://%s:%d/", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def respond(self, method: str, target: str, accept: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; pure, for unit tests."""
        path = target.split("?", 1)[0]
        if path not in ("/health/live", "/health/ready", "/metrics"):
            return 404, "text/plain; charset=utf-8", b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == "/health/live":
            return 200, "text/plain; charset=utf-8", b"live\n"
        if path == "/health/ready":
            ok, reason = readiness(self.instance())
            return (200 if ok else 503), "text/plain; charset=utf-8", reason.encode() + b"\n"
        body, content_type = exposition(self.registry, accept)
        return 200, content_type, body

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while True:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    request = await self._next_request(conn, reader)
                if request is None:
                    break
                accept = ""
                for name, value in request.headers:
                    if name == b"accept":
                        accept = value.decode("latin-1")
                method = request.method.decode("ascii", "replace")
                status, content_type, body = self.respond(
                    method, request.target.decode("ascii", "replace"), accept
                )
                headers = [("content-type", content_type), ("content-length", str(len(body)))]
                if method == "HEAD":
                    body = b""
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                if body:
                    writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (TimeoutError, ConnectionError, h11.ProtocolError) as exc:
            if isinstance(exc, h11.RemoteProtocolError) and conn.our_state in (
                h11.IDLE,
                h11.SEND_RESPONSE,
            ):
                with contextlib.suppress(Exception):
                    writer.write(
                        conn.send(
                            h11.Response(
                                status_code=exc.error_status_hint,
                                headers=[("content-length", "0"), ("connection", "close")],
                            )
                        )
                    )
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
        finally:
            self._clients -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _next_request(
        conn: h11.Connection, reader: asyncio.StreamReader
    ) -> h11.Request | None:
        """The next request with its body consumed, or None when the client is done."""
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(8192)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
