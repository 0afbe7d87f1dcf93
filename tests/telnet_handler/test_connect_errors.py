"""``connect_tcp``'s mapping of connect failures to statuses, in-process (no daemon)."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from guacr.errors import UpstreamNotFound, UpstreamTimeout
from guacr.handlers.telnet.handler import connect_tcp
from guacr.protocol.status import Status


async def test_connects_and_sets_nodelay() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = await connect_tcp("127.0.0.1", listener.getsockname()[1], 2)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_unreachable_is_519(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real EHOSTUNREACH needs a route off this machine; fake only the kernel's answer.
    loop = asyncio.get_running_loop()

    async def unreachable(sock: socket.socket, address: object) -> None:
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(loop, "sock_connect", unreachable)
    with pytest.raises(UpstreamNotFound) as info:
        await connect_tcp("127.0.0.1", 23, 2)
    assert info.value.status == Status.UPSTREAM_NOT_FOUND
    assert "unreachable" in info.value.message and "No route to host" in info.value.message


async def test_empty_hostname_is_519() -> None:
    with pytest.raises(UpstreamNotFound):
        await connect_tcp("", 23, 2)


async def test_timeout_covers_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is shared by all addresses: two silent ones still end after ``timeout``."""
    loop = asyncio.get_running_loop()

    async def two(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        addr = ("127.0.0.1", 9)
        info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", addr)
        return [info, info]

    async def silent(sock: socket.socket, address: object) -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(loop, "getaddrinfo", two)
    monkeypatch.setattr(loop, "sock_connect", silent)
    t0 = loop.time()
    with pytest.raises(UpstreamTimeout) as info:
        await connect_tcp("example.test", 9, 0.3)
    assert loop.time() - t0 < 0.6
    assert info.value.status == Status.UPSTREAM_TIMEOUT
