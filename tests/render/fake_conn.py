"""A stand-in for ``guacr.server.connection.Connection`` for display-engine unit tests.

Only what the display uses: users with handshake info, index pools, lag/congestion and
``end_frame``. Every user records what it was sent into its own :class:`Canvas`.
"""

from __future__ import annotations

import time
from typing import Any

from tests.render.guac_canvas import Canvas

from guacr.protocol import builders as b
from guacr.protocol.handshake import ClientInfo
from guacr.server.pool import IndexPool


class FakeUser:
    def __init__(self, images: tuple[str, ...] = ("image/png", "image/jpeg")) -> None:
        self.info = ClientInfo(image=list(images))
        self.canvas = Canvas()
        self.received = bytearray()

    def send(self, data: bytes) -> None:
        self.received += data
        self.canvas.feed_bytes(data)


class FakeConn:
    def __init__(self, *users: FakeUser) -> None:
        self.users: list[Any] = list(users) or [FakeUser()]
        self.buffers = IndexPool(-1, -1)
        self._streams = IndexPool(1, 2)
        self.lag = 0
        self.congested = False
        self.last_sync_sent = 0
        self.frames: list[bytes] = []
        self.ended = False

    def alloc_stream(self) -> int:
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        self._streams.free(index)

    def broadcast(self, data: bytes) -> None:
        for user in self.users:
            user.send(data)

    def end_frame(self, frames: int = 0, extra: bytes = b"") -> None:
        ts = time.monotonic_ns() // 1_000_000
        self.last_sync_sent = ts
        self.frames.append(extra)
        self.broadcast(extra + b.sync(ts, frames))

    def timestamp(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def end(self, error: object = None) -> None:
        self.ended = True
