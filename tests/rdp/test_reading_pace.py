"""Reading no faster than the display draws: the RDP reader waits while bitmaps wait
for the display (xrdp then merges its updates), on a small socket buffer; and bulk
compression is off unless asked for. Unit tests: no server (the figures these choices
give are in benchmarks/bench_rdp.py)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tests.render.fake_conn import FakeConn

from guacr.handlers.rdp import compat
from guacr.handlers.rdp.client import (
    RECEIVE_BUFFER,
    RDPClient,
    RDPConfig,
    limit_receive_buffer,
)
from guacr.handlers.rdp.handler import RDPHandler
from guacr.render.display import Display

DATA = Path(__file__).parent / "data"


async def turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class GatedSink:
    """The adapter side of compat's MCS patch: counts updates, holds the reader."""

    def __init__(self) -> None:
        self.updates = 0
        self.gate = asyncio.Event()

    def bitmaps(self, rectangles: list[object]) -> None:
        self.updates += 1

    async def more_updates(self) -> None:
        await self.gate.wait()


async def test_the_reader_waits_for_more_updates_after_a_bitmap_update() -> None:
    from aardwolf.channels import MCSChannel

    compat.install()
    sink = GatedSink()
    channel = SimpleNamespace(connection=SimpleNamespace(guacr_sink=sink))
    update = (DATA / "bitmap-update-32bpp.bin").read_bytes()
    reading = asyncio.ensure_future(MCSChannel.process_channel_data(channel, update))
    await turns()
    assert sink.updates == 1
    assert not reading.done()  # aardwolf's reader reads nothing more meanwhile
    sink.gate.set()
    await asyncio.wait_for(reading, 10)


def handler_with(display: Display) -> RDPHandler:
    handler = object.__new__(RDPHandler)
    handler.__dict__.update(
        display=display, _pending=[], _frame_timer=None, _waiting_display=False,
        _display_free=asyncio.Event(),
    )  # fmt: skip
    handler._display_free.set()
    return handler


async def wait_for(condition: object, timeout: float = 30.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_handler_holds_the_reader_while_bitmaps_wait_for_the_display() -> None:
    conn = FakeConn()
    # One frame per 3 s: the second frame waits for it, far longer than this test's
    # steps take (the test only checks order, never durations).
    display = Display(conn, lossless_refresh=None, max_fps=1 / 3)  # type: ignore[arg-type]
    display.resize(64, 64)
    handler = handler_with(display)
    handler.bitmap(0, 0, np.full((8, 8, 3), 10, np.uint8))
    handler.update_end()
    await asyncio.wait_for(handler.more_updates(), 10)  # the display is free
    await wait_for(lambda: len(conn.frames) == 1)
    handler.bitmap(0, 0, np.full((8, 8, 3), 50, np.uint8))  # in the first frame's slot
    handler.update_end()
    await wait_for(lambda: len(conn.frames) == 2)
    # The next frame is taken (the display holds it for its interval); the bitmaps
    # after it wait in the handler, and so does the reader.
    handler.bitmap(0, 0, np.full((8, 8, 3), 100, np.uint8))
    handler.update_end()
    await wait_for(lambda: display._ready_frames == 1 and not handler._pending)
    handler.bitmap(8, 0, np.full((8, 8, 3), 200, np.uint8))
    handler.update_end()
    await wait_for(lambda: handler._waiting_display)
    reader = asyncio.ensure_future(handler.more_updates())
    await turns()
    assert not reader.done()
    assert len(conn.frames) == 2
    # Once the held frame is sent, the waiting bitmaps are drawn and reading goes on.
    await asyncio.wait_for(reader, 30)
    assert len(conn.frames) == 3
    assert np.array_equal(conn.users[0].canvas.rgb()[0, 0], [100, 100, 100])
    assert not handler._pending
    await display.close()


def config(**kw: object) -> RDPConfig:
    return RDPConfig("127.0.0.1", 3389, "u", "p", None, 1024, 768, 32, **kw)  # type: ignore[arg-type]


def test_bulk_compression_is_off_unless_asked_for() -> None:
    sink = GatedSink()
    off = RDPClient(config(), sink)._settings()  # type: ignore[arg-type]
    on = RDPClient(config(bulk_compression=True), sink)._settings()  # type: ignore[arg-type]
    assert off.bulk_compression_max_type is None
    assert on.bulk_compression_max_type is not None


def test_the_rdp_socket_gets_a_small_receive_buffer() -> None:
    with socket.socket() as sock:
        limit_receive_buffer(sock)
        # Linux reports twice the size asked for (its bookkeeping share).
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * RECEIVE_BUFFER
