"""Display engine: plan decisions, pipelining, and client-side replay of its output."""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.render.fake_conn import FakeConn, FakeUser

from guacr.render import encode as enc
from guacr.render import plan as pl
from guacr.render.display import Display

W, H = 320, 240


def text_like(h: int, w: int, seed: int) -> np.ndarray:
    """Dark strokes on white, like terminal text: PNG-friendly, rows distinctive."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    count = max(1, h * w // 40)
    ys = rng.integers(0, h, count)
    xs = rng.integers(0, w, count)
    lengths = rng.integers(2, 9, count)
    shades = rng.integers(0, 90, count)
    vertical = rng.random(count) < 0.5
    for y, x, n, c, v in zip(ys, xs, lengths, shades, vertical, strict=True):
        if v:
            img[y : y + n, x] = c
        else:
            img[y, x : x + n] = c
    return img


def photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour fields with grain: every neighbour differs (a "photo" to guacd)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    smooth = Image.fromarray(base).resize((w + 32, h + 32), Image.Resampling.BICUBIC)
    field = np.asarray(smooth, np.float64)[:h, :w]
    return np.clip(field + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def fb_rgb(display: Display) -> np.ndarray:
    return display._fb[..., :3].copy()


async def settle(display: Display) -> None:
    for _ in range(400):
        await display.wait_idle()
        await asyncio.sleep(0)
        if display._idle.is_set() and not display._ready_frames and not display._joiners:
            return
    raise AssertionError("display never became idle")


def frame_ops(data: bytes) -> list[tuple[str, ...]]:
    from guacr.protocol.parser import Parser

    return [tuple(i) for i in Parser().receive_data(data)]


async def new_display(conn: FakeConn | None = None, **kw: Any) -> tuple[Display, FakeConn]:
    conn = conn or FakeConn()
    display = Display(conn, lossless_refresh=None, **kw)  # type: ignore[arg-type]
    display.resize(W, H)
    display.blit(0, 0, text_like(H, W, 1))
    display.end_frame()
    await settle(display)
    return display, conn


def last_ops(conn: FakeConn) -> list[str]:
    return [i[0] for i in frame_ops(conn.frames[-1])]


# --------------------------------------------------------------------- decisions


async def test_first_frame_is_complete_and_exact() -> None:
    display, conn = await new_display()
    canvas = conn.users[0].canvas
    assert canvas.size == (W, H)
    assert np.array_equal(canvas.rgb(), fb_rgb(display))
    assert canvas.syncs == 1
    await display.close()


async def test_solid_area_becomes_rect_and_cfill() -> None:
    display, conn = await new_display()
    display.fill(10, 20, 150, 100, (200, 30, 40))
    display.end_frame()
    await settle(display)
    ops = last_ops(conn)
    assert "img" not in ops
    assert ops.count("rect") == ops.count("cfill") >= 1
    # Cells fully inside the fill merge: far fewer fills than cells touched.
    assert ops.count("cfill") <= 6
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_scroll_without_server_copy_is_found_and_sent_as_copy() -> None:
    display, conn = await new_display()
    content = fb_rgb(display)
    # Scroll rows 20..220 up by 17 px and draw a new line at the bottom, as plain pixels.
    scrolled = content.copy()
    scrolled[20 : 220 - 17] = content[20 + 17 : 220]
    scrolled[220 - 17 : 220] = text_like(17, W, 99)
    display.blit(0, 0, scrolled)
    display.end_frame()
    await settle(display)
    ops = frame_ops(conn.frames[-1])
    copies = [op for op in ops if op[0] == "copy"]
    assert copies, ops
    assert all(int(c[3]) - int(c[9]) == 17 for c in copies)  # sy - dy
    image_pixels = sum(1 for op in ops if op[0] == "img")
    assert image_pixels <= 2  # only the new line travels as an image
    assert sum(len(op[2]) for op in ops if op[0] == "blob") < 20_000
    assert np.array_equal(conn.users[0].canvas.rgb(), scrolled)
    await display.close()


async def test_server_copyrect_is_relayed_as_copy() -> None:
    display, conn = await new_display()
    display.copy_rect(0, 40, W, 150, 0, 30)
    display.end_frame()
    await settle(display)
    ops = frame_ops(conn.frames[-1])
    assert [op[0] for op in ops] == ["copy"]
    assert ops[0][1:] == ("0", "0", "40", str(W), "150", "14", "0", "0", "30")
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_copy_from_freshly_drawn_source_falls_back_to_pixels() -> None:
    display, conn = await new_display()
    display.blit(0, 0, text_like(64, 64, 5))  # source not yet on the client
    display.copy_rect(0, 0, 64, 64, 200, 100)
    display.end_frame()
    await settle(display)
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def _busy_frames(display: Display, count: int, seed: int) -> None:
    for i in range(count):
        display.blit(0, 0, photo_like(H, W, seed + i))
        display.end_frame()
        await settle(display)
        await asyncio.sleep(0.03)


async def test_photo_like_frequent_region_goes_jpeg() -> None:
    display, conn = await new_display()
    await _busy_frames(display, 4, 10)
    canvas = conn.users[0].canvas
    assert canvas.mimetypes[-1] == "image/jpeg"
    diff = np.abs(canvas.rgb().astype(int) - fb_rgb(display).astype(int))
    assert diff.mean() < 8
    await display.close()


async def test_photo_like_but_static_region_stays_png() -> None:
    display, conn = await new_display()
    await asyncio.sleep(0.4)  # changes slower than 3 fps
    display.blit(0, 0, photo_like(H, W, 3))
    display.end_frame()
    await settle(display)
    await asyncio.sleep(0.4)
    display.blit(0, 0, photo_like(H, W, 4))
    display.end_frame()
    await settle(display)
    assert set(conn.users[0].canvas.mimetypes) == {"image/png"}
    await display.close()


async def test_force_lossless_never_sends_lossy() -> None:
    display, conn = await new_display(lossless=True)
    await _busy_frames(display, 4, 20)
    assert set(conn.users[0].canvas.mimetypes) == {"image/png"}
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_webp_when_every_user_offers_it() -> None:
    conn = FakeConn(FakeUser(("image/png", "image/jpeg", "image/webp")))
    display, conn = await new_display(conn)
    await _busy_frames(display, 4, 30)
    assert conn.users[0].canvas.mimetypes[-1] == "image/webp"
    await display.close()


async def test_no_jpeg_for_a_user_without_it() -> None:
    conn = FakeConn(FakeUser(("image/png",)))
    display, conn = await new_display(conn)
    await _busy_frames(display, 4, 40)
    assert set(conn.users[0].canvas.mimetypes) == {"image/png"}
    await display.close()


def test_quality_follows_lag() -> None:
    assert enc.lossy_quality(0) == 90
    assert enc.lossy_quality(20) == 90
    assert enc.lossy_quality(50) == 60
    assert enc.lossy_quality(80) == 30
    assert enc.lossy_quality(5000) == 30


async def test_lag_lowers_jpeg_quality() -> None:
    sizes = {}
    for lag in (0, 80):
        display, conn = await new_display()
        conn.lag = lag
        await _busy_frames(display, 4, 50)  # same content both times
        assert conn.users[0].canvas.mimetypes[-1] == "image/jpeg"
        last = frame_ops(conn.frames[-1])
        sizes[lag] = sum(len(op[2]) for op in last if op[0] == "blob")
        await display.close()
    assert sizes[80] < sizes[0] * 0.7


async def test_lossless_refresh_repairs_jpeg_artifacts() -> None:
    conn = FakeConn()
    display = Display(conn, lossless_refresh=0.2)  # type: ignore[arg-type]
    display.resize(W, H)
    display.end_frame()
    await settle(display)
    await _busy_frames(display, 4, 60)
    canvas = conn.users[0].canvas
    assert canvas.mimetypes[-1] == "image/jpeg"
    await asyncio.sleep(0.5)
    await settle(display)
    assert canvas.mimetypes[-1] == "image/png"
    assert np.array_equal(canvas.rgb(), fb_rgb(display))
    await display.close()


# ------------------------------------------------------------------ pipelining


class GatedExecutor(Executor):
    """Runs jobs in a thread, but only once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        future: Future[Any] = Future()

        def run() -> None:
            self.gate.wait(10)
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, daemon=True).start()
        return future


async def test_frames_ending_while_encoding_are_merged() -> None:
    gated = GatedExecutor()
    display, conn = await new_display(executor=gated)
    gated.gate.clear()
    frames_before = len(conn.frames)
    display.blit(0, 0, text_like(32, 32, 7))
    display.end_frame()
    await asyncio.sleep(0.05)  # frame 1 is now stuck in the encoder
    assert display.ready  # one frame in flight, nothing waiting behind it
    called: list[int] = []
    for i in range(5):
        display.blit(40 * i, 100, text_like(30, 30, 100 + i))
        display.end_frame()
    assert not display.ready
    display.when_ready(lambda: called.append(1))
    assert not called
    gated.gate.set()
    await settle(display)
    assert called == [1]
    assert len(conn.frames) - frames_before == 2  # frame 1 and all five merged
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_incomplete_frame_is_not_sent() -> None:
    display, conn = await new_display()
    count = len(conn.frames)
    display.blit(0, 0, text_like(20, 20, 8))  # drawing without end_frame
    await asyncio.sleep(0.05)
    assert len(conn.frames) == count
    display.end_frame()
    await settle(display)
    assert len(conn.frames) == count + 1
    await display.close()


async def test_congested_client_pauses_output() -> None:
    display, conn = await new_display()
    conn.congested = True
    count = len(conn.frames)
    display.blit(0, 0, text_like(20, 20, 9))
    display.end_frame()
    await asyncio.sleep(0.05)
    assert len(conn.frames) == count
    assert not display.ready
    display.blit(30, 30, text_like(20, 20, 10))
    display.end_frame()
    conn.congested = False
    await settle(display)
    assert len(conn.frames) == count + 1
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


# ------------------------------------------------------------------ replay fidelity


async def _random_session(display: Display, rng: np.random.Generator, frames: int) -> None:
    for _ in range(frames):
        for _ in range(int(rng.integers(1, 6))):
            kind = int(rng.integers(0, 5))
            x, y = int(rng.integers(-10, W)), int(rng.integers(-10, H))
            w, h = int(rng.integers(1, 150)), int(rng.integers(1, 120))
            if kind == 0:
                display.blit(x, y, text_like(h, w, int(rng.integers(1 << 30))))
            elif kind == 1:
                display.fill(x, y, w, h, tuple(int(v) for v in rng.integers(0, 256, 3)))
            elif kind == 2:
                sx, sy = int(rng.integers(0, W)), int(rng.integers(0, H))
                display.copy_rect(sx, sy, w, h, x, y)
            elif kind == 3:
                display.blit(x, y, photo_like(h, w, int(rng.integers(1 << 30))))
            else:
                # Vertical scroll of a band, as a terminal would.
                dy = int(rng.integers(1, 30))
                display.copy_rect(0, dy, W, H - dy, 0, 0)
        display.end_frame()
        if rng.random() < 0.5:
            await settle(display)


@pytest.mark.parametrize("seed", range(6))
async def test_random_drawing_replays_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    display, conn = await new_display(lossless=True)
    await _random_session(display, rng, 25)
    await settle(display)
    canvas = conn.users[0].canvas
    assert canvas.size == (W, H)
    assert np.array_equal(canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_joiner_gets_full_state_then_follows_frames() -> None:
    rng = np.random.default_rng(77)
    display, conn = await new_display(lossless=True)
    await _random_session(display, rng, 5)
    display.set_cursor(3, 4, 8, 8, bytes(range(256)))
    display.end_frame()
    joiner = FakeUser()
    conn.users.append(joiner)
    display.send_full_state(joiner)
    await _random_session(display, rng, 5)
    await settle(display)
    assert joiner.canvas.size == (W, H)
    assert np.array_equal(joiner.canvas.rgb(), fb_rgb(display))
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    assert joiner.canvas.cursor is not None
    hx, hy, image = joiner.canvas.cursor
    assert (hx, hy) == (3, 4)
    assert image.tobytes() == bytes(range(256))
    await display.close()


async def test_resize_keeps_clients_in_step() -> None:
    display, conn = await new_display(lossless=True)
    display.resize(200, 300)
    display.blit(0, 250, text_like(50, 200, 3))
    display.end_frame()
    await settle(display)
    canvas = conn.users[0].canvas
    assert canvas.size == (200, 300)
    assert np.array_equal(canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_jpeg_pass_through_is_sent_unchanged() -> None:
    display, conn = await new_display()
    out = io.BytesIO()
    Image.fromarray(photo_like(64, 96, 5)).save(out, "JPEG", quality=70)
    data = out.getvalue()
    display.put_jpeg(16, 32, 96, 64, data)
    display.end_frame()
    await settle(display)
    ops = frame_ops(conn.frames[-1])
    assert [op[0] for op in ops] == ["img", "blob", "end"]
    assert ops[0][4] == "image/jpeg"
    import base64

    assert base64.b64decode(ops[1][2]) == data
    # The framebuffer holds the decoded pixels, so the client matches it exactly.
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_jpeg_pass_through_reencoded_for_png_only_users() -> None:
    conn = FakeConn(FakeUser(("image/png",)))
    display, conn = await new_display(conn)
    out = io.BytesIO()
    Image.fromarray(photo_like(64, 96, 6)).save(out, "JPEG", quality=70)
    display.put_jpeg(16, 32, 96, 64, out.getvalue())
    display.end_frame()
    await settle(display)
    assert set(conn.users[0].canvas.mimetypes) == {"image/png"}
    assert np.array_equal(conn.users[0].canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_cursor_shape_and_hiding() -> None:
    display, conn = await new_display()
    rgba = np.zeros((10, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[2:5, :, 3] = 255
    display.set_cursor(1, 2, 6, 10, rgba.tobytes())
    display.end_frame()
    await settle(display)
    cursor = conn.users[0].canvas.cursor
    assert cursor is not None and cursor[:2] == (1, 2)
    assert np.array_equal(cursor[2], rgba)
    display.set_cursor(0, 0, 0, 0, b"")
    display.end_frame()
    await settle(display)
    cursor = conn.users[0].canvas.cursor
    assert cursor is not None and cursor[2].shape[:2] == (1, 1) and cursor[2][0, 0, 3] == 0
    await display.close()


# ------------------------------------------------------------------ plan units


def test_combine_respects_tiles_and_cost() -> None:
    boxes = [pl.Box(c * 64, 0, c * 64 + 64, 64, [(0, c)]) for c in range(16)]
    merged = pl.combine_images(boxes)
    assert len(merged) == 2
    assert {(b.x0, b.x1) for b in merged} == {(0, 512), (512, 1024)}
    # The fixed cost per image makes a thin strip cheaper than two tiny images...
    strip = [pl.Box(0, 0, 8, 8, [(0, 0)]), pl.Box(192, 0, 200, 8, [(0, 3)])]
    assert len(pl.combine_images(strip)) == 1
    # ...but not a mostly clean square.
    square = [pl.Box(0, 60, 64, 64, [(0, 0)]), pl.Box(0, 64, 300, 128, [(1, 0)])]
    assert len(pl.combine_images(square)) == 1
    apart = [pl.Box(0, 0, 8, 8, [(0, 0)]), pl.Box(400, 64, 408, 72, [(1, 6)])]
    assert len(pl.combine_images(apart)) == 2


def test_png_score_separates_text_from_photos() -> None:
    text = np.ascontiguousarray(np.dstack([text_like(64, 64, 1), np.full((64, 64), 255, np.uint8)]))
    photo = np.ascontiguousarray(
        np.dstack([photo_like(64, 64, 1), np.full((64, 64), 255, np.uint8)])
    )
    assert pl.png_score(text.view(np.uint32)[..., 0]) > 0
    assert pl.png_score(photo.view(np.uint32)[..., 0]) < 0


def test_palette_png_is_exact_and_small() -> None:
    rgbx = np.full((128, 256, 4), 255, np.uint8)
    rgbx[..., :3] = text_like(128, 256, 2)
    data = enc.encode_png(rgbx)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im.convert("RGB")), rgbx[..., :3])
    busy = np.full((128, 256, 4), 255, np.uint8)
    busy[..., :3] = photo_like(128, 256, 2)
    with Image.open(io.BytesIO(enc.encode_png(busy))) as im:
        assert im.mode == "RGB"
        assert np.array_equal(np.asarray(im), busy[..., :3])


async def test_busy_text_stays_png() -> None:
    """Anti-aliased text scores as "photo-like" by guacd's neighbour rule alone, but
    with few colours it stays PNG (smaller and sharp) even when it changes fast."""
    display, conn = await new_display()
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, 40, dtype=np.uint8)  # 40 grey levels, like AA text
    for _ in range(4):
        display.blit(0, 0, np.repeat(grey[rng.integers(0, 40, (H, W))][..., None], 3, axis=2))
        display.end_frame()
        await settle(display)
        await asyncio.sleep(0.03)
    canvas = conn.users[0].canvas
    assert set(canvas.mimetypes) == {"image/png"}
    assert np.array_equal(canvas.rgb(), fb_rgb(display))
    await display.close()


async def test_copies_reading_overwritten_sources_are_repaired() -> None:
    """Two moves found in one band, where the down-move lands on rows the up-move then
    reads: the up-move's destination reaches rows that did not change (an untouched
    cell) and must still end up right on the client."""
    rng = np.random.default_rng(5)

    def lines(n: int) -> list[np.ndarray]:
        return [rng.integers(0, 256, (8, 64, 3), dtype=np.uint8) for _ in range(n)]

    unique, period, fresh = lines(32), lines(4), lines(12)
    old = list(unique)
    old[8:20] = [period[i % 4] for i in range(8, 20)]  # repeats every 4 lines
    new = list(old)
    new[0:16] = old[4:20]  # up 4 lines; lines 8-15 (one whole cell) stay the same
    new[16:20] = old[0:4]  # down 16 lines, into rows the up-move reads
    new[20:32] = fresh
    conn = FakeConn()
    display = Display(conn, lossless=True, lossless_refresh=None)  # type: ignore[arg-type]
    display.resize(64, 256)
    display.blit(0, 0, np.concatenate(old))
    display.end_frame()
    await settle(display)
    # As a server would: only the changed rows are redrawn (lines 8-15 are not).
    display.blit(0, 0, np.concatenate(new[0:8]))
    display.blit(0, 128, np.concatenate(new[16:32]))
    display.end_frame()
    await settle(display)
    assert "copy" in last_ops(conn)
    assert np.array_equal(conn.users[0].canvas.rgb(), np.concatenate(new))
    await display.close()
