"""The shared upstream connect: failure kinds and statuses, and Wake-on-LAN in guacd's
order, in-process against real loopback sockets (packets go to 127.255.255.255)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from servers import free_port

from guacr.contract.params import Params
from guacr.errors import GuacrError
from guacr.services.ssh import SSH_CONNECT_POLICY
from guacr.handlers.vnc.handler import VNC_CONNECT_POLICY
from guacr.protocol.status import Status
from guacr.services import upstream
from guacr.services.upstream import ConnectFailed, Failure, open_tcp
from guacr.services.wol import magic_packet

LOG = logging.LoggerAdapter(logging.getLogger("test.upstream"), {})
MAC = "52:54:00:12:34:56"
BROADCAST = "127.255.255.255"


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    """Receives what is sent to the loopback broadcast address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((BROADCAST, 0))
        s.setblocking(False)
        yield s


def wol_params(udp: socket.socket, wait: int, **extra: str) -> Params:
    return Params(
        (),
        {
            "wol-send-packet": "true",
            "wol-mac-addr": MAC,
            "wol-broadcast-addr": BROADCAST,
            "wol-udp-port": str(udp.getsockname()[1]),
            "wol-wait-time": str(wait),
            **extra,
        },
    )


def packets(udp: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(udp.recv(1024))
        except BlockingIOError:
            return out


# ----------------------------------------------------------------------- open_tcp


async def test_connects_and_sets_nodelay() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = await open_tcp("127.0.0.1", listener.getsockname()[1], 2)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_refused_and_empty_host() -> None:
    with pytest.raises(ConnectFailed) as info:
        await open_tcp("127.0.0.1", free_port(), 2)
    assert info.value.kind is Failure.REFUSED
    with pytest.raises(ConnectFailed) as info:
        await open_tcp("", 23, 2)
    assert info.value.kind is Failure.NO_HOST


async def test_dns_failure() -> None:
    with pytest.raises(ConnectFailed) as info:
        await open_tcp("no-such-host.invalid", 22, 5)
    assert info.value.kind is Failure.DNS
    error = upstream.DEFAULT_POLICY.error(info.value)
    assert error.status == Status.UPSTREAM_NOT_FOUND and "DNS lookup" in error.message


async def test_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real EHOSTUNREACH needs a route off this machine; fake only the kernel's answer.
    loop = asyncio.get_running_loop()

    async def unreachable(sock: socket.socket, address: object) -> None:
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(loop, "sock_connect", unreachable)
    with pytest.raises(ConnectFailed) as info:
        await open_tcp("127.0.0.1", 23, 2)
    error = upstream.DEFAULT_POLICY.error(info.value)
    assert error.status == Status.UPSTREAM_NOT_FOUND
    assert "unreachable" in error.message and "No route to host" in error.message


async def test_timeout_covers_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is shared by all addresses: two silent ones still end after ``timeout``."""
    loop = asyncio.get_running_loop()

    async def two(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))
        return [info, info]

    async def silent(sock: socket.socket, address: object) -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(loop, "getaddrinfo", two)
    monkeypatch.setattr(loop, "sock_connect", silent)
    t0 = loop.time()
    with pytest.raises(ConnectFailed) as info:
        await open_tcp("example.test", 9, 0.3)
    assert loop.time() - t0 < 0.6
    assert upstream.DEFAULT_POLICY.error(info.value).status == Status.UPSTREAM_TIMEOUT


def test_per_protocol_statuses() -> None:
    refused = ConnectFailed(Failure.REFUSED, "h", 1, "connection refused")
    timeout = ConnectFailed(Failure.TIMEOUT, "h", 1, "10 s")
    assert upstream.DEFAULT_POLICY.error(refused).status == Status.UPSTREAM_NOT_FOUND
    assert upstream.DEFAULT_POLICY.error(timeout).status == Status.UPSTREAM_TIMEOUT
    ssh = SSH_CONNECT_POLICY.error(timeout)
    assert ssh.status == Status.SERVER_ERROR and "Failed to open TCP connection" in ssh.message
    vnc = VNC_CONNECT_POLICY.error(timeout)
    assert vnc.status == Status.UPSTREAM_NOT_FOUND
    assert vnc.message.startswith("Unable to connect to VNC server")


# -------------------------------------------------------------------- Wake-on-LAN


async def test_wait_time_host_up_sends_no_packet(udp: socket.socket) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sock = await upstream.connect("127.0.0.1", port, 2, params=wol_params(udp, 1), log=LOG)
        sock.close()
    await asyncio.sleep(0.1)
    assert packets(udp) == []


async def test_wait_time_host_down_wakes_then_retries(udp: socket.socket) -> None:
    """First a connect, then the packet, then retries ``wol-wait-time`` apart."""
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    loop = asyncio.get_running_loop()
    woken_at: list[float] = []

    async def wake_on_packet() -> None:
        while not packets(udp):
            await asyncio.sleep(0.01)
        woken_at.append(time.monotonic())
        listener.bind(("127.0.0.1", port))  # the host "boots" when woken
        listener.listen(1)

    waker = loop.create_task(wake_on_packet())
    try:
        t0 = time.monotonic()
        sock = await upstream.connect("127.0.0.1", port, 2, params=wol_params(udp, 1), log=LOG)
        sock.close()
        assert woken_at and time.monotonic() - woken_at[0] >= 0.9  # waited before retrying
        assert time.monotonic() - t0 < 3
    finally:
        waker.cancel()
        listener.close()


async def test_wait_time_gives_up_after_five_retries(
    udp: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(upstream.asyncio, "sleep", no_sleep)
    with pytest.raises(GuacrError) as info:
        await upstream.connect("127.0.0.1", free_port(), 2, params=wol_params(udp, 7), log=LOG)
    assert slept == [7] * 5
    assert info.value.status == Status.UPSTREAM_NOT_FOUND
    assert packets(udp) == [magic_packet(MAC)]


async def test_no_wait_time_sends_then_connects(udp: socket.socket) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sock = await upstream.connect("127.0.0.1", port, 2, params=wol_params(udp, 0), log=LOG)
        sock.close()
    await asyncio.sleep(0.05)
    assert packets(udp) == [magic_packet(MAC)]


async def test_packet_that_cannot_be_sent_fails_the_connection(udp: socket.socket) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        for extra in ({"wol-mac-addr": "not-a-mac"}, {"wol-broadcast-addr": "256.1.1.1"}):
            with pytest.raises(GuacrError) as info:
                await upstream.connect(
                    "127.0.0.1", port, 2, params=wol_params(udp, 0, **extra), log=LOG
                )
            assert "Wake-on-LAN" in info.value.message


async def test_without_mac_wol_is_disabled(udp: socket.socket) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        params = wol_params(udp, 0, **{"wol-mac-addr": ""})
        sock = await upstream.connect(
            "127.0.0.1", listener.getsockname()[1], 2, params=params, log=LOG
        )
        sock.close()
    assert packets(udp) == []


async def test_autoretry_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(upstream.asyncio, "sleep", no_sleep)
    with pytest.raises(GuacrError):
        await upstream.connect(
            "127.0.0.1", free_port(), 2, params=Params((), {}), log=LOG, attempts=3
        )
    assert slept == [1.0, 1.0]
