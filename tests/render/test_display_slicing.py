"""A large frame is planned in slices: the loop runs between them, drawing meanwhile is
deferred, and every client still ends up with exactly the framebuffer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tests.render.fake_conn import FakeConn
from tests.render.test_display import fb_rgb, photo_like, settle, text_like

from guacr.render import display as display_module
from guacr.render.display import Display

W, H = 1024, 768


class Watcher:
    """A task that runs once per loop iteration and notes whether a plan was in progress;
    the first time it sees one, it draws (as a VNC update arriving mid-plan would)."""

    def __init__(self, display: Display, draw: bool) -> None:
        self.display = display
        self.draw = draw
        self.seen_planning = 0
        self.stopped = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.stopped:
            if self.display.planning:
                self.seen_planning += 1
                if self.draw and self.seen_planning == 1:
                    d = self.display
                    d.blit(100, 100, photo_like(90, 130, 7))
                    d.fill(600, 400, 80, 50, (200, 10, 30))
                    d.copy_rect(0, 0, 200, 100, 500, 600)
                    d.set_cursor(0, 0, 2, 2, bytes(16))
                    d.end_frame()
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.stopped = True
        await self.task


async def full_display() -> tuple[Display, FakeConn]:
    conn = FakeConn()
    display = Display(conn, lossless=True, lossless_refresh=None)  # type: ignore[arg-type]
    display.resize(W, H)
    display.blit(0, 0, text_like(H, W, 1))
    display.end_frame()
    await settle(display)
    return display, conn


async def test_full_screen_plan_yields_and_defers_drawing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every phase boundary yields (the real budget is CPU time: no wall-clock window).
    monkeypatch.setattr(display_module, "SLICE_SECONDS", 0.0)
    display, conn = await full_display()
    watcher = Watcher(display, draw=True)
    display.blit(0, 0, text_like(H, W, 2))
    display.end_frame()
    await settle(display)
    await watcher.stop()
    # The loop ran while the full-screen frame was being planned ...
    assert watcher.seen_planning >= 2
    # ... the drawing done meanwhile waited for the plan, then reached the client.
    assert np.array_equal(display._fb[605:645, 505:545, :3], display._fb[5:45, 5:45, :3])
    canvas = conn.users[0].canvas
    assert np.array_equal(canvas.rgb(), fb_rgb(display))
    assert np.array_equal(canvas.rgb()[420, 620], [200, 10, 30])
    await display.close()


async def test_plan_within_budget_runs_in_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(display_module, "SLICE_SECONDS", 60.0)
    display, conn = await full_display()
    watcher = Watcher(display, draw=False)
    display.blit(0, 0, text_like(H, W, 3))
    display.end_frame()
    await settle(display)
    await watcher.stop()
    assert watcher.seen_planning == 0
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()
