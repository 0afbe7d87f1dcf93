"""Minimal stand-ins for the core's Connection and User, for session/view unit tests."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from guacr.contract.params import Params
from guacr.protocol.parser import Instruction, Parser
from guacr.server.pool import IndexPool


@dataclass
class FakeInfo:
    width: int = 800
    height: int = 480
    dpi: int = 96
    supports_webp: bool = False
    timezone: str | None = None
    image: list[str] = field(default_factory=lambda: ["image/png"])


class FakeUser:
    def __init__(self, owner: bool = True, **info: object) -> None:
        self.owner = owner
        self.info = FakeInfo(**info)  # type: ignore[arg-type]
        self.id = "@fake"
        self.params = Params((), {})
        self.closed = False
        self.sent: list[bytes] = []
        self._streams = IndexPool(0, 2)
        self.objects = IndexPool(0, 1)

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def alloc_stream(self) -> int:
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        self._streams.free(index)

    def instructions(self) -> list[Instruction]:
        return Parser().receive_data(b"".join(self.sent))


class FakeConn:
    """Records broadcasts and frame ends."""

    def __init__(self, *users: FakeUser) -> None:
        self.users = list(users) or [FakeUser()]
        self.owner = self.users[0]
        self.layers = IndexPool(1, 1)
        self.buffers = IndexPool(-1, -1)
        self._streams = IndexPool(1, 2)
        self.log = logging.LoggerAdapter(logging.getLogger("test"), {})
        self.congested = False
        self.frames: list[tuple[float, bytes]] = []
        self.broadcasts: list[bytes] = []
        self.last_sync_sent = 0

    def alloc_stream(self) -> int:
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        self._streams.free(index)

    def broadcast(self, data: bytes) -> None:
        self.broadcasts.append(data)
        for u in self.users:
            u.send(data)

    def end_frame(self, frames: int = 0, extra: bytes = b"") -> None:
        self.frames.append((time.monotonic(), extra))
        self.broadcast(extra + b"4.sync,1.0,1.0;")

    def timestamp(self) -> int:
        return int(time.monotonic() * 1000)

    def instructions(self) -> list[Instruction]:
        return Parser().receive_data(b"".join(self.broadcasts))
