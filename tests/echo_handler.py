"""A test-only handler: exercises the core without any upstream server.

It draws nothing real; it reports what reaches it as ``name`` instructions so tests
can see which worker process runs a connection and which input arrived.
"""

from __future__ import annotations

import asyncio
import os
import time

from guacr.errors import GuacrError
from guacr.contract.handler import Handler, StreamSink
from guacr.contract.params import params
from guacr.protocol import builders as b
from guacr.protocol.status import Status
from guacr.server.user import User


class _Upload:
    def __init__(self, user: User, stream: int, handler: EchoHandler) -> None:
        self.user, self.stream, self.handler, self.size = user, stream, handler, 0
        user.ack(stream, "OK", Status.SUCCESS)

    def blob(self, data: bytes) -> None:
        self.size += len(data)
        self.user.ack(self.stream, "OK", Status.SUCCESS)

    def end(self) -> None:
        self.handler.conn.broadcast(b.name(f"upload {self.size}"))


class EchoHandler(Handler):
    """Echoes input back as ``name`` instructions; behaviour chosen by parameters."""

    protocol = "echo"
    PARAMS = params(
        [
            "hostname", "port", "mode", "read-only", "password",
            "recording-path", "recording-name", "recording-exclude-output",
            "recording-exclude-mouse", "recording-exclude-touch", "recording-include-keys", "recording-include-clipboard",
            "create-recording-path", "recording-write-existing",
        ],
        {"port": "1"},
    )  # fmt: skip
    ARGV = frozenset({"font-size"})

    async def run(self) -> None:
        mode = self.params.get("mode")
        if mode == "crash":
            raise RuntimeError("deliberate crash")
        if mode == "deny":
            raise GuacrError("Access denied.", Status.CLIENT_UNAUTHORIZED)
        if mode == "finish":
            self.conn.end_frame()
            return
        if mode == "die":  # kill the whole worker process (worker crash test)
            os._exit(9)
        if mode == "hang":  # block the worker's event loop (hung-worker test)
            time.sleep(3600)
        if mode == "flood":  # ignore congestion: the core's write-buffer cap must act
            chunk = b.name("x" * 8000) * 64
            while self.conn.users:
                self.conn.broadcast(chunk)
                await asyncio.sleep(0)
        self.conn.broadcast(b.size(0, 64, 48))
        self.conn.end_frame()
        await asyncio.Event().wait()

    async def close(self) -> None:
        # Awaits something, like real handlers closing an upstream socket, so the core
        # must not cancel its own cleanup (tests/server/test_daemon.py checks removal).
        await asyncio.sleep(0.01)

    def user_joined(self, user: User) -> None:
        user.send(b.name(f"joined pid={os.getpid()} owner={user.owner}"))

    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        self.conn.broadcast(b.name(f"key {keysym} {int(pressed)}"))

    def on_mouse(self, user: User, x: int, y: int, mask: int) -> None:
        self.conn.broadcast(b.name(f"mouse {x} {y} {mask}"))

    def on_touch(self, user: User, args: tuple[str, ...]) -> None:
        self.conn.broadcast(b.name("touch " + " ".join(args)))

    def on_clipboard(self, user: User, mimetype: str, data: bytes) -> None:
        self.conn.broadcast(b.name(f"clipboard {mimetype} {data.decode()}"))

    def on_argv(self, user: User, name: str, value: str) -> None:
        self.conn.broadcast(b.name(f"argv {name}={value}"))

    def on_file(self, user: User, stream: int, mimetype: str, filename: str) -> StreamSink | None:
        return _Upload(user, stream, self)
