"""The user session is sans-I/O: bytes in, whole instructions out, no socket needed."""

from __future__ import annotations

import asyncio

from guacr_process import ECHO

from guacr.config import Config
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Parser
from guacr.server import channel
from guacr.server.user import User
from guacr.server.worker import Worker


def instructions(chunks: list[bytes]) -> list[tuple[str, ...]]:
    parser = Parser()
    out: list[tuple[str, ...]] = []
    for chunk in chunks:
        got = parser.receive_data(chunk)
        assert len(got) >= 1, "every chunk out holds whole instructions"
        out.extend(got)
    assert parser.pending_bytes() == b""
    return out


class Recorder:
    """A Link that records what the session does to its transport."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def test_handshake_and_input_without_a_socket() -> None:
    ours, theirs = channel.pair()
    worker = Worker(theirs, Config(handlers=ECHO))
    try:
        user = User(worker, "echo", encode("size", 640, 480, 96), user_id="@s", remote="x")
        user.start()
        [args] = instructions(user.data_to_send())
        assert args[0] == "args" and args[1] == "VERSION_1_5_0"
        user.receive_data(encode("image", "image/png"))
        user.receive_data(encode("connect", "VERSION_1_5_0", *[""] * (len(args) - 2))[:7])
        assert user.data_to_send() == []  # half an instruction: nothing yet
        user.receive_data(encode("connect", "VERSION_1_5_0", *[""] * (len(args) - 2))[7:])
        out = instructions(user.data_to_send())
        assert out[0][0] == "ready" and out[0][1].startswith("$")
        assert user.info.width == 640

        link = Recorder()
        user.attach(link)
        await asyncio.sleep(0.05)  # the echo handler's first frame
        user.receive_data(encode("key", 65, 1))
        names = [i[1] for i in instructions(link.written) if i[0] == "name"]
        assert "key 65 1" in names

        user.receive_data(b"5.bogus")  # garbage after a partial instruction
        user.receive_data(b"!;")
        assert user.closed and link.closed
        assert any(i[0] == "error" for i in instructions(link.written))
    finally:
        for conn in list(worker.connections.values()):
            conn.end()
            await conn.wait_closed()
        ours.close()
        theirs.close()
