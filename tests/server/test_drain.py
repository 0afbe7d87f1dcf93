"""Drain mode: new sessions refused, joins of live ones still routed; the main process
keeps the state for a listener forked after this one dies."""

from __future__ import annotations

import asyncio
import socket

from guacr.config import Config
from guacr.protocol.parser import Parser
from guacr.server import channel
from guacr.server.forkserver import ForkServer
from guacr.server.registry import ConnectionRecord, LocalRegistry
from guacr.server.routing import Router
from guacr.server.slots import Slot


async def test_draining_refuses_new_sessions_but_routes_joins() -> None:
    worker_end, ours = channel.pair()
    slot = Slot(0, pid=1, chan=ours, ready=True)
    registry = LocalRegistry()
    registry.add_connection(ConnectionRecord("$live", 0, "echo"))
    router = Router([slot], registry, frozenset({"echo"}), drain=lambda: None)
    router.draining = True
    loop = asyncio.get_running_loop()
    try:
        client, server = socket.socketpair()
        server.setblocking(False)
        await router.route(server, "echo", b"", "tcp")
        reply = await loop.run_in_executor(None, client.recv, 4096)
        assert Parser().receive_data(reply)[0] == ("error", "Server is draining.", "513")
        assert registry.load(0) == 0
        client.close()

        client, server = socket.socketpair()
        await router.route(server, "$live", b"4.size;", "tcp")
        msg, fds = channel.recv(worker_end)
        assert isinstance(msg, channel.Handoff) and msg.target == "$live" and len(fds) == 1
        assert channel.unpack_bytes(msg.pending) == b"4.size;"
        assert registry.load(0) == 1
        socket.close(fds[0])
        client.close()

        router.draining = False
        client, server = socket.socketpair()
        await router.route(server, "echo", b"", "tcp")
        msg, fds = channel.recv(worker_end)
        assert isinstance(msg, channel.Handoff) and msg.target == "echo"
        socket.close(fds[0])
        client.close()
    finally:
        worker_end.close()
        ours.close()


def test_the_main_process_remembers_the_drain_state() -> None:
    fs = ForkServer(Config(), [])
    listener_end, fs._ctl = channel.pair()
    try:
        channel.send(listener_end, channel.Draining(True))
        fs._on_listener()
        assert fs.draining
        channel.send(listener_end, channel.Draining(False))
        fs._on_listener()
        assert not fs.draining
    finally:
        listener_end.close()
        fs._ctl.close()
