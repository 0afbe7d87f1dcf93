"""Frame pacing: ``max_fps`` merges frames that end sooner, and ``ready`` says so.

No wall-clock windows: the interval used is far longer than any step of the test
(seconds), and the test only checks which frames were (not) sent at each point.
"""

from __future__ import annotations

import asyncio

import numpy as np
from tests.render.fake_conn import FakeConn
from tests.render.test_display import fb_rgb, settle, text_like

from guacr.render.display import Display

W, H = 320, 240


async def turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_frames_within_the_interval_merge_and_wait() -> None:
    conn = FakeConn()
    display = Display(conn, lossless_refresh=None, max_fps=0.1)  # type: ignore[arg-type]
    display.resize(W, H)
    display.blit(0, 0, text_like(H, W, 1))
    display.end_frame()
    await settle(display)  # the first frame goes at once ...
    display.blit(0, 0, text_like(H, W, 2))
    display.end_frame()
    await asyncio.wait_for(settle(display), 30)  # ... and so does one more (its slot)
    assert len(conn.frames) == 2
    for seed in (3, 4):
        display.blit(0, 0, text_like(H, W, seed))
        display.end_frame()
        await turns()
    # Ten seconds are not over: nothing more was sent, and the display says it is not
    # ready, so a protocol handler holds its drawing (and its reading) meanwhile.
    assert len(conn.frames) == 2
    assert not display.ready
    await display.close()


async def test_the_held_frame_is_sent_once_the_interval_is_over() -> None:
    conn = FakeConn()
    display = Display(conn, lossless_refresh=None, max_fps=1000.0)  # type: ignore[arg-type]
    display.resize(W, H)
    display.blit(0, 0, text_like(H, W, 1))
    display.end_frame()
    await settle(display)
    display.blit(0, 0, text_like(H, W, 2))
    display.end_frame()
    display.blit(0, 0, text_like(H, W, 3))
    display.end_frame()
    await asyncio.wait_for(settle(display), 30)
    assert 2 <= len(conn.frames) <= 3
    assert not display._ready_frames
    assert display.ready
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_without_max_fps_frames_are_not_held() -> None:
    conn = FakeConn()
    display = Display(conn, lossless_refresh=None)  # type: ignore[arg-type]
    display.resize(W, H)
    display.blit(0, 0, text_like(H, W, 1))
    display.end_frame()
    await settle(display)
    display.blit(0, 0, text_like(H, W, 2))
    display.end_frame()
    await asyncio.wait_for(settle(display), 30)
    assert len(conn.frames) == 2
    await display.close()


async def test_ready_callbacks_run_apart_from_the_frame_pipeline() -> None:
    # A callback draws (an RDP frame's bitmaps): run inside the pipeline task it would
    # add to the stretch that planned or assembled the frame before it.
    conn = FakeConn()
    display = Display(conn, lossless_refresh=None)  # type: ignore[arg-type]
    display.resize(W, H)
    conn.congested = True  # the frame waits until the client drains its socket
    display.blit(0, 0, text_like(H, W, 1))
    display.end_frame()
    ran_in: list[asyncio.Task[object] | None] = []
    await turns()
    assert not display.ready
    display.when_ready(lambda: ran_in.append(asyncio.current_task()))
    conn.congested = False
    await settle(display)
    assert len(ran_in) == 1
    assert ran_in[0] is not display._task
    await display.close()


async def test_with_max_fps_ready_callbacks_wait_for_the_frame_to_be_sent() -> None:
    # Without max_fps they run once the frame is planned (VNC asks for its next update
    # while this one encodes); with it, after the frame went out: an RDP reader then
    # reads once per frame.
    for max_fps, expected in ((None, 1), (1000.0, 2)):
        conn = FakeConn()
        display = Display(conn, lossless_refresh=None, max_fps=max_fps)  # type: ignore[arg-type]
        display.resize(W, H)
        display.blit(0, 0, text_like(H, W, 1))
        display.end_frame()
        await settle(display)
        conn.congested = True  # hold the next frame until the callback is registered
        display.blit(0, 0, text_like(H, W, 2))
        display.end_frame()
        await turns()
        assert not display.ready
        frames_sent: list[int] = []
        display.when_ready(lambda conn=conn: frames_sent.append(len(conn.frames)))
        conn.congested = False
        await asyncio.wait_for(settle(display), 30)
        assert frames_sent == [expected], max_fps
        await display.close()
