"""The gRPC server: ``guacr.v1.Control``, ``grpc.health.v1`` and reflection on one port.

It runs on the listener's event loop (grpc.aio works on uvloop; measured). grpc's own
I/O runs in its core threads, and each call's Python work is bounded (paged answers,
a cap on concurrent calls and message size), so a slow or hostile client cannot hold
up accepting and routing. It must be created in the process that serves it, after the
last ``fork()`` of that process: a process holding a live grpc.aio server cannot fork
safely (measured: every child hung or crashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from guacr.control.auth import AuthSettings, TokenInterceptor
from guacr.control.backend import ControlBackend
from guacr.control.servicer import ControlServicer
from guacr.control.v1 import control_pb2, control_pb2_grpc

log = logging.getLogger("guacr.control")

SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name  # "guacr.v1.Control"
MAX_CONCURRENT_RPCS = 64
MAX_MESSAGE = 1 << 20
HEALTH_POLL = 1.0

OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_concurrent_streams", 32),
    ("grpc.so_reuseport", 0),
    # Drop connections that stay silent (keepalive pings unanswered).
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class ControlServer:
    """One running gRPC server bound to ``host:port``."""

    def __init__(self, backend: ControlBackend, auth: AuthSettings, host: str, port: int) -> None:
        auth.check()
        self.backend = backend
        self.auth = auth
        self.host, self.port = host, port
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._poll: asyncio.Task[None] | None = None
        self._serving: bool | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0 in tests)."""
        interceptors = [TokenInterceptor(self.auth.token)] if self.auth.token else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=OPTIONS,
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        )
        control_pb2_grpc.add_ControlServicer_to_server(  # type: ignore[no-untyped-call]
            ControlServicer(self.backend, self.refresh_health), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        credentials = self.auth.credentials()
        if credentials is None:
            bound = int(server.add_insecure_port(address))
        else:
            bound = int(server.add_secure_port(address, credentials))
        if bound == 0:
            raise OSError(f"cannot bind gRPC to {address}")
        await server.start()
        self._server = server
        self.port = bound
        await self.refresh_health()
        self._poll = asyncio.get_running_loop().create_task(self._poll_health())
        log.info(
            "gRPC control listening on %s:%d (%s)",
            self.host,
            bound,
            " + ".join(
                x
                for x in (
                    "bearer token" if self.auth.token else "",
                    "mutual TLS" if self.auth.mtls else "",
                    "TLS" if credentials and not self.auth.mtls else "",
                )
                if x
            ),
        )
        return bound

    async def refresh_health(self) -> None:
        """SERVING unless draining or no worker is ready."""
        serving = self.backend.instance().ready
        if serving == self._serving:
            return
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        await self.health.set(SERVICE, status)

    async def _poll_health(self) -> None:
        # Worker readiness changes without a gRPC call; drain changes call refresh directly.
        while True:
            await asyncio.sleep(HEALTH_POLL)
            try:
                await self.refresh_health()
            except Exception:  # keep polling; a broken backend shows as a log line
                log.exception("Health refresh failed")

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving; open calls get ``grace`` seconds."""
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
