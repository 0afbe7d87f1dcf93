"""The listener backend's token minting (CreateSession/ShareSession) with guacr tokens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from guacr.control import model
from guacr.control.plane import ControlPlane
from guacr.server.registry import ConnectionRecord, LocalRegistry, UserRecord
from guacr.tunnel.tokens import GuacrTokens

KEY = "token-key-for-tests-0123456789"


@dataclass
class Slot:
    index: int
    pid: int = 100
    ready: bool = True


@dataclass
class Config:
    token_key: str = KEY
    websocket_bind_port: int = 4823
    grpc_bind_port: int = 0
    metrics_bind_port: int = 0


@dataclass
class Host:
    registry: LocalRegistry = field(default_factory=LocalRegistry)
    slots: list[Slot] = field(default_factory=lambda: [Slot(0), Slot(1)])
    draining: bool = False

    def set_draining(self, on: bool) -> None:
        self.draining = on

    async def ask_worker(self, conn_id: str, op: str, **fields: Any) -> tuple[bool, str, dict[str, Any]]:
        return False, "No such connection.", {}


def test_create_and_share_mint_tokens_the_door_accepts() -> None:
    host = Host()
    host.registry.add_user(UserRecord("@o", 1, remote="127.0.0.1"))
    host.registry.add_connection(ConnectionRecord("$c", 1, "ssh", "@o"))
    plane = ControlPlane(Config(), host)
    created = asyncio.run(plane.backend.create_session("ssh", {"hostname": "h", "password": "pw"}, 30))
    claims = GuacrTokens(KEY).verify(created.token)
    assert claims.protocol == "ssh" and dict(claims.params) == {"hostname": "h", "password": "pw"}
    shared = asyncio.run(plane.backend.share_session("$c", True, 30))
    claims = GuacrTokens(KEY).verify(shared.token)
    assert claims.join == "$c" and claims.read_only
    with pytest.raises(model.ControlError) as err:
        asyncio.run(plane.backend.create_session("nosuchproto", {}, 30))
    assert err.value.failure is model.Failure.INVALID
    host.draining = True
    with pytest.raises(model.ControlError) as err:
        asyncio.run(plane.backend.create_session("ssh", {}, 30))
    assert err.value.failure is model.Failure.UNAVAILABLE


def test_no_websocket_door_no_tokens() -> None:
    plane = ControlPlane(Config(websocket_bind_port=0), Host())
    with pytest.raises(model.ControlError) as err:
        asyncio.run(plane.backend.create_session("ssh", {}, 30))
    assert err.value.failure is model.Failure.FAILED_PRECONDITION
