"""A worker's side of the control channel, in-process: what it reports, and its
answers to the listener's questions (list users, terminate)."""

from __future__ import annotations

import asyncio
import socket

from guacr_process import ECHO

from guacr.config import Config
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Instruction, Parser
from guacr.server import channel
from guacr.server.worker import Worker


class Listener:
    """The listener's end of a worker channel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.backlog: list[channel.Message] = []
        sock.setblocking(False)

    async def next(self, kind: type[channel.Message]) -> channel.Message:
        """The first message of ``kind`` (others are kept for later calls)."""
        for msg in self.backlog:
            if isinstance(msg, kind):
                self.backlog.remove(msg)
                return msg
        async with asyncio.timeout(5):
            while True:
                try:
                    msg, fds = channel.recv(self.sock)
                except BlockingIOError:
                    await asyncio.sleep(0.005)
                    continue
                assert msg is not None and not fds
                if isinstance(msg, kind):
                    return msg
                self.backlog.append(msg)


async def read_until(reader: asyncio.StreamReader, parser: Parser, opcode: str) -> Instruction:
    async with asyncio.timeout(5):
        while True:
            data = await reader.read(65536)
            assert data, f"EOF before {opcode}"
            for ins in parser.receive_data(data):
                if ins[0] == opcode:
                    return ins


async def test_worker_reports_and_answers_questions() -> None:
    config = Config(handlers=ECHO)
    ours, theirs = channel.pair()
    listener = Listener(ours)
    worker = Worker(theirs, config)
    loop = asyncio.get_running_loop()
    theirs.setblocking(False)
    loop.add_reader(theirs.fileno(), worker.on_channel)
    client, server = socket.socketpair()
    worker.adopt(server, "echo", b"", user_id="@alice-id", remote="192.0.2.7")
    reader, writer = await asyncio.open_connection(sock=client)
    parser = Parser()
    try:
        args = await read_until(reader, parser, "args")
        writer.write(encode("size", 800, 600, 96) + encode("image", "image/png"))
        writer.write(encode("name", "alice"))
        writer.write(encode("connect", "VERSION_1_5_0", *[""] * (len(args) - 2)))
        cid = (await read_until(reader, parser, "ready"))[1]

        opened = await listener.next(channel.ConnectionOpened)
        assert isinstance(opened, channel.ConnectionOpened)
        assert (opened.id, opened.protocol, opened.owner, opened.remote) == (
            cid,
            "echo",
            "@alice-id",
            "192.0.2.7",
        )
        joined = await listener.next(channel.UserJoined)
        assert joined == channel.UserJoined("@alice-id", cid, True, "alice")

        await worker._report_counters()  # what the 1 s sweep does
        stats = await listener.next(channel.Stats)
        assert isinstance(stats, channel.Stats)
        [[stat_id, bytes_in, bytes_out]] = stats.counters
        assert stat_id == cid and bytes_in > 0 and bytes_out > 0

        channel.send(ours, channel.ListUsers(rid=41, connection=cid))
        reply = await listener.next(channel.Reply)
        assert isinstance(reply, channel.Reply) and reply.rid == 41 and reply.ok
        [user] = reply.result["users"]
        assert (user["id"], user["name"], user["owner"], user["remote"]) == (
            "@alice-id",
            "alice",
            True,
            "192.0.2.7",
        )

        channel.send(ours, channel.ListUsers(rid=42, connection="$nope"))
        reply = await listener.next(channel.Reply)
        assert isinstance(reply, channel.Reply) and reply.rid == 42 and not reply.ok

        channel.send(ours, channel.Terminate(rid=43, connection=cid, message="Bye.", status=521))
        reply = await listener.next(channel.Reply)
        assert isinstance(reply, channel.Reply) and reply.rid == 43 and reply.ok
        error = await read_until(reader, parser, "error")
        assert error[1:] == ("Bye.", "521")
        assert await listener.next(channel.UserLeft) == channel.UserLeft("@alice-id")
        assert await listener.next(channel.ConnectionClosed) == channel.ConnectionClosed(cid, 521, "Bye.")
    finally:
        writer.close()
        loop.remove_reader(theirs.fileno())
        while worker.tasks:
            await asyncio.wait(list(worker.tasks), timeout=5)
        ours.close()
        theirs.close()


async def test_reports_never_block_and_keep_their_order() -> None:
    """A listener that stops reading must not stall the worker's loop."""
    ours, theirs = channel.pair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setblocking(False)
    worker = Worker(theirs, Config(handlers=ECHO))
    try:
        start = asyncio.get_running_loop().time()
        for i in range(3000):
            assert worker.report(channel.Stats([[f"${i}", i, i]]))
        assert asyncio.get_running_loop().time() - start < 1.0
        assert worker._queued, "the channel should have filled up"
        ours.setblocking(False)
        got: list[int] = []
        async with asyncio.timeout(10):
            while len(got) < 3000:
                try:
                    msg, _ = channel.recv(ours)
                except BlockingIOError:
                    await asyncio.sleep(0.001)  # the worker's writer callback runs
                    continue
                assert isinstance(msg, channel.Stats)
                got.append(msg.counters[0][1])
        assert got == list(range(3000)) and not worker._queued
    finally:
        worker._drop_queue()
        ours.close()
        theirs.close()
