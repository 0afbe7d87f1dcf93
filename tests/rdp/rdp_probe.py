"""Drive guacr's RDP client directly (no daemon) and collect what it delivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from servers.xrdp import XrdpServer

from guacr.handlers.rdp.client import RDPClient, RDPConfig, RDPConnectError


@dataclass
class Collected:
    """A framebuffer painted from the client's bitmaps, plus what else arrived."""

    width: int = 1024
    height: int = 768
    fb: np.ndarray = field(default_factory=lambda: np.zeros((768, 1024, 4), np.uint8))
    painted: np.ndarray = field(default_factory=lambda: np.zeros((768, 1024), bool))
    rects: int = 0
    errors: list[int] = field(default_factory=list)
    indicators: list[int] = field(default_factory=list)
    clipboard: list[str] = field(default_factory=list)
    resized: list[tuple[int, int]] = field(default_factory=list)
    cursors: list[object] = field(default_factory=list)

    def bitmap(self, x: int, y: int, pixels: np.ndarray) -> None:
        h, w = pixels.shape[:2]
        self.fb[y : y + h, x : x + w, :3] = pixels[: self.height - y, : self.width - x, :3]
        self.painted[y : y + h, x : x + w] = True
        self.rects += 1

    def update_end(self) -> None:
        pass

    def error_info(self, code: int) -> None:
        self.errors.append(code)

    def keyboard_indicators(self, flags: int) -> None:
        self.indicators.append(flags)

    def desktop_resized(self, width: int, height: int) -> None:
        self.resized.append((width, height))

    def server_clipboard(self, text: str) -> None:
        self.clipboard.append(text)

    def cursor(self, cursor: object) -> None:
        self.cursors.append(cursor)

    async def more_updates(self) -> None:
        await asyncio.sleep(0)

    def rgb(self) -> np.ndarray:
        return self.fb[..., :3]


@dataclass
class Outcome:
    sink: Collected
    client: RDPClient | None
    error: RDPConnectError | None
    closed: bool
    seconds: float


def run_session(
    server: XrdpServer,
    *,
    depth: int = 32,
    seconds: float = 1.5,
    timeout: float = 4.0,
    security: str = "tls",
    password: str = "guest",
    until_full: bool = True,
    during: Callable[[], object] | None = None,
    resize_to: tuple[int, int] | None = None,
    until: Callable[[Collected], bool] | None = None,
    bulk: bool = False,
) -> Outcome:
    """Connect, collect bitmaps for up to ``seconds`` (less once the screen is full, or,
    with ``until``, once that condition holds: checked off the event loop, so it may
    grab the server's screen)."""

    async def main() -> Outcome:
        sink = Collected()
        config = RDPConfig(
            server.host, server.port, server.username, password, None, 1024, 768, depth,
            security, timeout, display_control=resize_to is not None, bulk_compression=bulk,
        )  # fmt: skip
        client = RDPClient(config, sink)
        start = time.monotonic()
        try:
            await client.connect()
        except RDPConnectError as exc:
            return Outcome(sink, None, exc, True, time.monotonic() - start)
        if resize_to is not None:
            for _ in range(40):  # the server opens Display Control shortly after connect
                if client.can_resize:
                    break
                await asyncio.sleep(0.05)
            client.resize(*resize_to)
        if during is not None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(during)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not client.closed.is_set():
            if until is not None:
                if sink.painted.all() and await asyncio.to_thread(until, sink):
                    break
                await asyncio.sleep(0.2)
                continue
            if until_full and sink.painted.all():
                await asyncio.sleep(0.2)  # let the last strips of this update land
                break
            await asyncio.sleep(0.05)
        closed = client.closed.is_set()
        await client.close()
        return Outcome(sink, client, None, closed, time.monotonic() - start)

    return asyncio.run(main())


def differing(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels that differ between two RGB arrays of the same shape."""
    return int((a != b).any(axis=2).sum())
