"""Who may call the control API: a bearer token, mutual TLS, or both.

* ``grpc_token``: every call carries ``authorization: Bearer <token>`` (compared in
  constant time; the token is never logged).
* ``grpc_cert`` + ``grpc_key`` + ``grpc_client_ca``: TLS that requires a client
  certificate signed by that CA; the TLS layer refuses anyone else.
* ``grpc_cert`` + ``grpc_key`` alone is TLS without client authentication: the token
  is then still required.

The standard health service answers without credentials (load balancers and kubelets
probe it); nothing else does. Without any authentication the service does not start.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("guacr.control")

# Methods that answer without credentials.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class AuthConfigError(Exception):
    """gRPC authentication settings that cannot work together."""


@dataclass(frozen=True)
class AuthSettings:
    """The four settings, as configured."""

    token: str | None = None
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None

    def check(self) -> None:
        """Raise AuthConfigError for combinations that cannot work."""
        if bool(self.cert) != bool(self.key):
            raise AuthConfigError("grpc_cert and grpc_key must be given together")
        if self.client_ca and not self.cert:
            raise AuthConfigError("grpc_client_ca needs grpc_cert and grpc_key")
        if self.token is not None and len(self.token) < 16:
            raise AuthConfigError("grpc_token must be at least 16 characters")

    @property
    def mtls(self) -> bool:
        return bool(self.cert and self.key and self.client_ca)

    @property
    def enabled(self) -> bool:
        """Whether any authentication is configured (else the service stays off)."""
        return bool(self.token) or self.mtls

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials for the port, or None for plaintext (token only)."""
        if not self.cert or not self.key:
            return None
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def _deny(code: grpc.StatusCode, message: str) -> Callable[..., Awaitable[Any]]:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    return deny


async def _deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
    yield None  # pragma: no cover - makes this an async generator


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls without the right bearer token (health excepted)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def allowed(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method in OPEN_METHODS or self.allowed(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        log.info("gRPC call to %s refused: no valid bearer token", method[:120])
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: still refuse without saying it does not exist
            return grpc.unary_unary_rpc_method_handler(
                _deny(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            )
        if handler.response_streaming:
            if handler.request_streaming:
                return grpc.stream_stream_rpc_method_handler(
                    _deny_stream,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
            return grpc.unary_stream_rpc_method_handler(
                _deny_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        deny = _deny(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                deny,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            deny,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
