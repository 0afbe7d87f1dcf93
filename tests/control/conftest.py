"""Fixtures for the control-API tests: an in-process gRPC server over a fake backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from control.fake_backend import FakeBackend
from guacr.control.auth import AuthSettings
from guacr.control.server import ControlServer
from guacr.control.v1 import control_pb2_grpc

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def control(backend: FakeBackend) -> AsyncIterator[ControlServer]:
    server = ControlServer(backend, AuthSettings(token=TOKEN), "127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
async def channel(control: ControlServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{control.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(channel)


AUTH = (("authorization", f"Bearer {TOKEN}"),)
