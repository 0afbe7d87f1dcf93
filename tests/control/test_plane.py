"""The listener backend's token minting (CreateSession/ShareSession) with guacr tokens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from guacr.control import model
from guacr.control.plane import ControlPlane
from guacr.server.registry import ConnectionRecord, LocalRegistry, UserRecord
from guacr.tunnel.authorize import TokenAuthority
from guacr.tunnel.grant import Grant, TokenRefused, parse_query
from guacr.tunnel.tokens import GuacrTokens, new_connection_id

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
    # The future id is decided now and sealed in the token; each CreateSession its own.
    assert created.session_id.startswith("$") and claims.connection == created.session_id
    again = asyncio.run(plane.backend.create_session("ssh", {}, 30))
    assert again.session_id != created.session_id
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


def test_connection_id_travels_from_token_to_grant() -> None:
    """The door's grant (what the worker opens the connection from) carries the id, also
    through the listener-to-worker hand-off; a token cannot be spent twice."""
    tokens = GuacrTokens(KEY)
    conn_id = new_connection_id()
    token = tokens.mint(protocol="echo", params={}, connection=conn_id)
    auth = TokenAuthority.from_keys(None, KEY)
    grant = asyncio.run(auth.authorize(parse_query(f"token={token}")))
    assert grant.connection == conn_id and grant.selector == "echo"
    assert Grant.from_wire(grant.to_wire()).connection == conn_id
    with pytest.raises(TokenRefused) as err:
        asyncio.run(auth.authorize(parse_query(f"token={token}")))
    assert "already used" in err.value.reason
    # Without an id (tokens minted elsewhere) the worker picks one, as before.
    plain = asyncio.run(auth.authorize(parse_query(f"token={tokens.mint(protocol='echo')}")))
    assert plain.connection == ""


def test_mint_refuses_ids_that_are_not_fresh_connection_ids() -> None:
    tokens = GuacrTokens(KEY)
    for bad in ("", "$", "abc", "$not-a-uuid", "@" + new_connection_id()[1:]):
        with pytest.raises(ValueError):
            tokens.mint(protocol="echo", connection=bad)
    with pytest.raises(ValueError):  # a join names its connection with ``join``
        tokens.mint(join=new_connection_id(), connection=new_connection_id())
