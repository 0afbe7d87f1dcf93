"""Tiny asyncio glue around the sans-I/O RFBClient, for tests against real servers.

Keeps a numpy framebuffer so a full update can be compared with the server's own
screenshot. Not the production handler: just enough I/O to drive the core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.events import (
    AuthFailed,
    Connected,
    CopyRect,
    DesktopResized,
    Event,
    FramebufferUpdateEnd,
    JpegRect,
    RectDecoded,
    SolidRect,
)
from guacr.handlers.vnc.tight import decode_jpeg


class Session:
    def __init__(
        self, client: RFBClient, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.client = client
        self.reader = reader
        self.writer = writer
        self.events: list[Event] = []
        self.fb = np.zeros((1, 1, 3), np.uint8)
        self.painted = np.zeros((1, 1), bool)
        self.stats: dict[str, int] = {}
        self.jpeg_rects = 0

    @classmethod
    async def open(cls, host: str, port: int, **kwargs: Any) -> Session:
        """Connect and run the handshake; raises AssertionError on AuthFailed."""
        reader, writer = await asyncio.open_connection(host, port)
        session = cls(RFBClient(**kwargs), reader, writer)
        event = await session.wait_for(lambda e: isinstance(e, (Connected, AuthFailed)))
        if isinstance(event, AuthFailed):
            await session.close()
            raise AssertionError(f"authentication failed: {event.reason}")
        return session

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def flush(self) -> None:
        out = self.client.data_to_send()
        if out:
            self.writer.write(out)

    def _apply(self, e: Event) -> None:
        if isinstance(e, Connected):
            self._resize(e.width, e.height)
        elif isinstance(e, DesktopResized):
            if (e.height, e.width) != self.fb.shape[:2]:
                self._resize(e.width, e.height)
        elif isinstance(e, RectDecoded):
            self._paint(e.x, e.y, e.width, e.height, e.pixels)
            key = f"enc{int(e.encoding)}"
            self.stats[key] = self.stats.get(key, 0) + 1
        elif isinstance(e, SolidRect):
            self._paint(e.x, e.y, e.width, e.height, np.array(e.rgb, np.uint8))
            self.stats["solid"] = self.stats.get("solid", 0) + 1
        elif isinstance(e, JpegRect):
            self._paint(e.x, e.y, e.width, e.height, decode_jpeg(e.data))
            self.stats["jpeg"] = self.stats.get("jpeg", 0) + 1
        elif isinstance(e, CopyRect):
            src = self.fb[e.src_y : e.src_y + e.height, e.src_x : e.src_x + e.width].copy()
            self._paint(e.x, e.y, e.width, e.height, src)
            self.stats["copy"] = self.stats.get("copy", 0) + 1

    def _resize(self, w: int, h: int) -> None:
        self.fb = np.zeros((h, w, 3), np.uint8)
        self.painted = np.zeros((h, w), bool)

    def _paint(self, x: int, y: int, w: int, h: int, pixels: npt.NDArray[np.uint8]) -> None:
        self.fb[y : y + h, x : x + w] = pixels
        self.painted[y : y + h, x : x + w] = True

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        """Read until an event matches; every event is applied and kept in ``events``."""
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            for i, e in enumerate(self.events):
                if predicate(e):
                    del self.events[: i + 1]
                    return e
            self.events.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching RFB event")
            data = await asyncio.wait_for(self.reader.read(1 << 20), left)
            new = self.client.receive_data(data)
            for e in new:
                self._apply(e)
            self.events += new
            if not data:
                if any(predicate(e) for e in self.events):
                    continue
                raise ConnectionError("server closed the connection")

    async def full_frame(
        self, encodings: list[int] | None = None, timeout: float = 20.0
    ) -> npt.NDArray[np.uint8]:
        """Request updates until every pixel has been painted once; returns the frame."""
        if encodings is not None:
            self.client.set_encodings(encodings)
        self.painted[:] = False
        self.stats.clear()
        deadline = time.monotonic() + timeout
        incremental = False
        while not self.painted.all():
            self.client.framebuffer_update_request(incremental)
            incremental = True
            await self.wait_for(
                lambda e: isinstance(e, FramebufferUpdateEnd), deadline - time.monotonic()
            )
        return self.fb.copy()
