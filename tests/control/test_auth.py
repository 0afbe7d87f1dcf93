"""Only authenticated callers reach guacr.v1.Control; health answers anyone."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from control.certs import write_set
from control.conftest import AUTH, TOKEN
from control.fake_backend import FakeBackend
from guacr.control.auth import AuthConfigError, AuthSettings
from guacr.control.server import ControlServer
from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc


async def _reflect(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(metadata=metadata)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    resp = await call.read()
    await call.done_writing()
    return [s.name for s in resp.list_services_response.service]


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong-token-0123456789"),),
                                      (("authorization", TOKEN),)])
async def test_token_required(backend: FakeBackend, channel: grpc.aio.Channel,
                              metadata: tuple[tuple[str, str], ...]) -> None:
    backend.add("$a")
    stub = control_pb2_grpc.ControlStub(channel)
    calls = [
        stub.ListSessions(pb.ListSessionsRequest(), metadata=metadata),
        stub.TerminateSession(pb.TerminateSessionRequest(id="$a"), metadata=metadata),
        stub.Drain(pb.DrainRequest(), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.WatchEvents(pb.WatchEventsRequest(replay_live=True), metadata=metadata):
            pass
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _reflect(channel, metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "$a" in backend.sessions and not backend.draining  # nothing happened
    # Health answers without credentials.
    health = health_pb2_grpc.HealthStub(channel)
    r = await health.Check(health_pb2.HealthCheckRequest(service="guacr.v1.Control"))
    assert r.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_with_token(channel: grpc.aio.Channel) -> None:
    names = await _reflect(channel, AUTH)
    assert "guacr.v1.Control" in names and "grpc.health.v1.Health" in names


def test_auth_settings() -> None:
    assert not AuthSettings().enabled
    assert not AuthSettings(cert="c", key="k").enabled  # TLS alone authenticates nobody
    assert AuthSettings(token="x" * 16).enabled
    assert AuthSettings(cert="c", key="k", client_ca="ca").enabled
    for bad in (AuthSettings(cert="c"), AuthSettings(client_ca="ca"), AuthSettings(token="short")):
        with pytest.raises(AuthConfigError):
            bad.check()


async def test_mutual_tls(tmp_path: Path, backend: FakeBackend) -> None:
    f = write_set(tmp_path)
    auth = AuthSettings(cert=str(f["server_cert"]), key=str(f["server_key"]), client_ca=str(f["ca"]))
    server = ControlServer(backend, auth, "127.0.0.1", 0)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    options = (("grpc.ssl_target_name_override", "localhost"),)
    try:
        good = grpc.ssl_channel_credentials(
            f["ca"].read_bytes(), f["client_key"].read_bytes(), f["client_cert"].read_bytes()
        )
        async with grpc.aio.secure_channel(target, good, options) as ch:
            st = await control_pb2_grpc.ControlStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
            assert st.workers == 2
        for creds in (
            grpc.ssl_channel_credentials(f["ca"].read_bytes()),  # no client certificate
            grpc.ssl_channel_credentials(  # a certificate from another CA
                f["ca"].read_bytes(), f["bad_key"].read_bytes(), f["bad_cert"].read_bytes()
            ),
        ):
            async with grpc.aio.secure_channel(target, creds, options) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await control_pb2_grpc.ControlStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(target) as ch:  # plaintext
            with pytest.raises(grpc.aio.AioRpcError):
                await control_pb2_grpc.ControlStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    finally:
        await server.stop(0)


async def test_tls_plus_token(tmp_path: Path, backend: FakeBackend) -> None:
    """Server TLS without client CA: the token is what authenticates."""
    f = write_set(tmp_path)
    auth = AuthSettings(token=TOKEN, cert=str(f["server_cert"]), key=str(f["server_key"]))
    server = ControlServer(backend, auth, "127.0.0.1", 0)
    await server.start()
    try:
        creds = grpc.ssl_channel_credentials(f["ca"].read_bytes())
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{server.port}", creds, (("grpc.ssl_target_name_override", "localhost"),)
        ) as ch:
            stub = control_pb2_grpc.ControlStub(ch)
            assert (await stub.GetStatus(pb.GetStatusRequest(), metadata=AUTH, timeout=5)).workers == 2
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetStatus(pb.GetStatusRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)
