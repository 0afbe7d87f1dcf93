"""The display engine shared by VNC and RDP: a framebuffer in, Guacamole frames out.

The protocol side draws into a framebuffer (``blit``, ``fill``, ``copy_rect``,
``put_jpeg``, ``resize``, ``set_cursor``) and marks frame boundaries with
``end_frame``. A per-display pipeline task turns each finished frame into a plan
(:mod:`guacr.render.plan`), encodes its images in the shared thread pool
(:mod:`guacr.render.encode`) and broadcasts one buffer ending in ``sync``.

Invariants that keep every client right:

* ``_sent`` is what every client shows once all planned frames arrived (exact pixels;
  lossy images differ only by their artifacts). It changes only when a frame is planned,
  and after each plan it equals the framebuffer. Pixels whose alpha byte is 0 in
  ``_sent`` are "unknown" and always differ from the framebuffer (whose alpha is 255).
* At most one frame is encoding. Frames that end meanwhile are merged into the next
  plan, never queued; the protocol side asks ``when_ready`` before requesting more.
* Server copies and JPEG pass-through are replayed on ``_sent`` in order at plan time,
  so they are sent as ``copy`` / the server's own JPEG only while their source is known
  to the client (no drawing into it since the last plan), else they become pixels.
* A joining user gets the full state between two frames, from ``_sent``, so every
  later frame applies on top of exactly what it was shown.

Runs entirely on the event loop except the encoders; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from guacr.control import figures
from guacr.errors import GuacrError
from guacr.protocol import builders as b
from guacr.protocol.status import Status
from guacr.render import encode as enc
from guacr.render import plan as pl
from guacr.render.pointer import PointerBroadcast

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

log = logging.getLogger("guacr.render")

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]

MAX_SIZE = 8192  # guacd's display limit
MAX_LAG_WAIT_MS = 500  # longest pause for a lagging client, as guacd
CONGESTION_POLL = 0.005
LOSSLESS_REFRESH = 1.0  # seconds a lossy region must stay still before a PNG refresh
BATCH_PIXELS = 1 << 18  # frames smaller than this encode in one pool call
# A plan that has run this long (loop thread CPU) yields to the loop at its next phase
# boundary: a full 1024x768 plan is several ms of numpy (see bench_rdp.py's loop lag).
# Small frames (typing, a cursor blink) plan in one go, as before.
SLICE_SECONDS = 0.002


@dataclass(slots=True)
class _Resize:
    width: int
    height: int


@dataclass(slots=True)
class _Jpeg:
    x: int
    y: int
    pixels: U8  # (h, w, 3) as decoded
    data: bytes


@dataclass(slots=True)
class _Cursor:
    hx: int
    hy: int
    width: int
    height: int
    rgba: bytes


@dataclass(slots=True)
class _Image:
    """An image to draw: encoded in the pool unless ``data`` is already known."""

    layer: int
    x: int
    y: int
    mode: int
    mimetype: str
    pixels: U8 | None = None  # (h, w, 4) RGBX snapshot
    quality: int = 90
    lossless: bool = False
    rgba: tuple[int, int, bytes] | None = None  # cursor images (w, h, rgba)
    data: bytes = b""

    @property
    def cost(self) -> int:
        if self.pixels is not None:
            return int(self.pixels.shape[0] * self.pixels.shape[1])
        return 0

    def encode(self) -> None:
        if self.data:
            return
        if self.rgba is not None:
            self.data = enc.encode_rgba_png(*self.rgba)
        elif self.pixels is not None:
            self.data = enc.encode(self.pixels, self.mimetype, self.quality, self.lossless)


Part = bytes | _Image


def _packed(rgb: tuple[int, int, int]) -> np.uint32:
    """An opaque colour as the framebuffer's uint32 (RGBX bytes in memory order)."""
    return np.uint32(int.from_bytes(bytes((rgb[0], rgb[1], rgb[2], 255)), sys.byteorder))


def _put_rgb(dst: U8, src: U8) -> None:
    """Copy RGB(X) pixels into an RGBX region, one channel at a time.

    Several times faster than ``dst[..., :3] = src`` (a 3-of-4 strided copy); see
    ``benchmarks/bench_display.py --micro``.
    """
    dst[..., 0] = src[..., 0]
    dst[..., 1] = src[..., 1]
    dst[..., 2] = src[..., 2]


async def _breathe() -> None:
    """Let every callback that is due run before we go on.

    Twice: a timer or I/O that became due during our last stretch queues its task's
    step behind ours (asyncio and uvloop alike), so one ``sleep(0)`` would run our next
    stretch first; after the second, ours is queued behind theirs.
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _encode_all(images: list[_Image]) -> None:
    for image in images:
        image.encode()


@dataclass(slots=True)
class Stats:
    """Counters for benchmarks and logs."""

    frames: int = 0
    merged: int = 0
    bytes: int = 0
    images: int = 0
    copies: int = 0
    fills: int = 0
    plan_seconds: float = 0.0


def _pointer_rgba() -> tuple[int, int, int, int, bytes]:
    """A small arrow (hotspot 0,0): the local cursor before the server sends one."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (11, 16), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 0), (0, 14), (4, 11), (7, 15), (9, 14), (6, 10), (10, 10)], (0, 0, 0, 255))
    draw.polygon([(1, 2), (1, 12), (4, 9), (7, 13), (8, 13), (5, 9), (8, 9)], (255, 255, 255, 255))
    return 0, 0, 11, 16, image.tobytes()


def _dot_rgba() -> tuple[int, int, int, int, bytes]:
    """A 5x5 dot (hotspot 2,2): the cursor when the server draws its own."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (5, 5), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((0, 0, 4, 4), (0, 0, 0, 255), (255, 255, 255, 255))
    return 2, 2, 5, 5, image.tobytes()


class Display:
    """One connection's remote display (Guacamole layer 0) and its pointer."""

    def __init__(
        self,
        conn: Connection,
        *,
        lossless: bool = False,
        copy_search: bool = True,
        lossless_refresh: float | None = LOSSLESS_REFRESH,
        executor: Executor | None = None,
        max_fps: float | None = None,
    ) -> None:
        """``max_fps``: start frames at most this often on average (None: whenever one
        is ready).

        For servers that send as fast as they are read (RDP): frames that end sooner
        merge into the next, and ``ready`` stays False meanwhile, so the protocol side
        can stop reading too.
        """
        self.conn = conn
        self.lossless = lossless
        self.copy_search = copy_search
        self.lossless_refresh = lossless_refresh
        self.stats = Stats()
        self._executor = executor
        self.width = 0
        self.height = 0
        # Both buffers are padded to whole 64x64 cells (pad: opaque black in both, so
        # it never differs) and exposed as views of the visible area.
        self._fb_full: U8 = np.zeros((0, 0, 4), np.uint8)
        self._fb: U8 = self._fb_full
        self._sent_full: U8 = np.zeros((0, 0, 4), np.uint8)
        self._sent: U8 = self._sent_full
        self._fb32: U32 = self._as32(self._fb_full)
        self._sent32: U32 = self._as32(self._sent_full)
        self._touched = np.zeros((0, 0), np.bool_)
        self._last_change = np.zeros((0, 0), np.float64)
        self._interval = np.zeros((0, 0), np.float64)
        self._lossy = np.zeros((0, 0), np.bool_)
        self._ops: list[_Resize | pl.Copy | _Jpeg] = []
        self._open = False  # drawing since the last end_frame
        self._ready_frames = 0  # end_frame calls not yet planned
        self._refresh = False
        self._cursor: _Cursor | None = None  # current pointer image
        self._cursor_dirty = False
        self._cursor_buffer: int | None = None
        self.pointer = PointerBroadcast(conn)
        self._joiners: list[User] = []
        self._planned = 0
        self._busy = False
        self._closed = False
        self._last_flush = 0.0
        self._min_interval = 1.0 / max_fps if max_fps else 0.0
        self._next_frame = 0.0  # time.monotonic() before which no frame starts
        self._ready_callbacks: list[Callable[[], None]] = []
        # While a plan is in progress (it yields to the loop between slices), drawing
        # calls are queued here and applied, in order, once it is done: a plan must see
        # one consistent framebuffer, ``_touched`` and ``_ops``.
        self._deferred: list[Callable[[], None]] | None = None
        self._slice_started = 0.0
        self._slice_cpu = 0.0
        self._plan_busy = 0.0  # seconds the current plan ran (its yields excluded)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------- drawing API
    @staticmethod
    def _as32(frame: U8) -> U32:
        """The (h, w) uint32 view of an (h, w, 4) RGBX buffer: one compare per pixel."""
        return frame.view(np.uint32)[..., 0]

    def resize(self, width: int, height: int) -> None:
        """Change the display size; content in the overlap is kept, the rest is black."""
        if self._deferred is not None:
            self._deferred.append(partial(self.resize, width, height))
            return
        width = max(1, min(width, MAX_SIZE))
        height = max(1, min(height, MAX_SIZE))
        if (width, height) == (self.width, self.height):
            return
        rows, cols = pl.cell_grid(width, height)
        fb = np.zeros((rows * pl.CELL, cols * pl.CELL, 4), np.uint8)
        fb[..., 3] = 255
        h, w = min(height, self.height), min(width, self.width)
        fb[:h, :w] = self._fb[:h, :w]
        self._fb_full = fb
        self._fb = fb[:height, :width]
        self._fb32 = self._as32(fb)
        self.width, self.height = width, height
        self._touched = np.ones(pl.touch_grid(width, height), np.bool_)
        self._last_change = np.full((rows, cols), -1e9)
        self._interval = np.full((rows, cols), np.inf)
        self._lossy = np.zeros((rows, cols), np.bool_)
        self._ops.append(_Resize(width, height))
        self._open = True

    def _clip(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        return x0, y0, max(0, x1 - x0), max(0, y1 - y0)

    def blit(self, x: int, y: int, pixels: U8) -> None:
        """Draw an (h, w, 3) RGB (or RGBX) array with its top-left corner at (x, y)."""
        if self._deferred is not None:
            # Copied: the caller may reuse its buffer before the plan is done.
            self._deferred.append(partial(self.blit, x, y, pixels.copy()))
            return
        h, w = pixels.shape[:2]
        cx, cy, cw, ch = self._clip(x, y, w, h)
        if not cw or not ch:
            return
        src = pixels[cy - y : cy - y + ch, cx - x : cx - x + cw]
        _put_rgb(self._fb[cy : cy + ch, cx : cx + cw], src)
        pl.mark(self._touched, cx, cy, cw, ch)
        self._open = True

    def fill(self, x: int, y: int, w: int, h: int, rgb: tuple[int, int, int]) -> None:
        """Fill a rectangle with one colour."""
        if self._deferred is not None:
            self._deferred.append(partial(self.fill, x, y, w, h, rgb))
            return
        x, y, w, h = self._clip(x, y, w, h)
        if not w or not h:
            return
        # One uint32 store per pixel (RGBX in memory order): far cheaper than a 4-tuple
        # broadcast (bench_display.py --micro), and servers send many fills a second.
        self._fb32[y : y + h, x : x + w] = _packed(rgb)
        pl.mark(self._touched, x, y, w, h)
        self._open = True

    def copy_rect(self, sx: int, sy: int, w: int, h: int, dx: int, dy: int) -> None:
        """Server-side copy (VNC CopyRect, RDP ScrBlt): sent as ``copy`` when possible."""
        if self._deferred is not None:
            self._deferred.append(partial(self.copy_rect, sx, sy, w, h, dx, dy))
            return
        if sx < 0:
            w, dx, sx = w + sx, dx - sx, 0
        if dx < 0:
            w, sx, dx = w + dx, sx - dx, 0
        if sy < 0:
            h, dy, sy = h + sy, dy - sy, 0
        if dy < 0:
            h, sy, dy = h + dy, sy - dy, 0
        w = min(w, self.width - sx, self.width - dx)
        h = min(h, self.height - sy, self.height - dy)
        if w <= 0 or h <= 0:
            return
        fb = self._fb
        fb[dy : dy + h, dx : dx + w] = fb[sy : sy + h, sx : sx + w]
        self._open = True
        if (sx, sy) == (dx, dy):
            return
        if pl.overlaps(self._touched, sx, sy, w, h):
            # The client's copy of the source is stale: send pixels instead.
            pl.mark(self._touched, dx, dy, w, h)
        else:
            self._ops.append(pl.Copy(sx, sy, w, h, dx, dy))

    def put_jpeg(
        self, x: int, y: int, w: int, h: int, data: bytes, pixels: U8 | None = None
    ) -> None:
        """A w x h JPEG from the server: relayed as is when every user takes JPEG.

        ``pixels`` is the decoded image if the caller already has it (decoding in a
        worker thread keeps the loop free); otherwise it is decoded here.
        """
        if self._deferred is not None:
            copied = None if pixels is None else pixels.copy()
            self._deferred.append(partial(self.put_jpeg, x, y, w, h, data, copied))
            return
        if pixels is None:
            pixels = enc.decode_rgb(data)
        users = self.conn.users
        if (
            self.lossless
            or pixels.shape[:2] != (h, w)
            or self._clip(x, y, w, h) != (x, y, w, h)
            or not users
            or not all(u.info.supports_jpeg for u in users)
        ):
            self.blit(x, y, pixels[:h, :w])
            return
        _put_rgb(self._fb[y : y + h, x : x + w], pixels)
        self._ops.append(_Jpeg(x, y, pixels, data))
        self._open = True

    def set_cursor(self, hx: int, hy: int, width: int, height: int, rgba: bytes) -> None:
        """New pointer image (straight RGBA); an empty one hides the pointer."""
        if self._deferred is not None:
            self._deferred.append(partial(self.set_cursor, hx, hy, width, height, rgba))
            return
        if width <= 0 or height <= 0:
            width, height, rgba = 1, 1, bytes(4)
        self._cursor = _Cursor(hx, hy, width, height, rgba)
        self._cursor_dirty = True
        self._open = True

    def set_cursor_pointer(self) -> None:
        """Show a plain arrow (local cursor before the server sent a shape)."""
        self.set_cursor(*_pointer_rgba())

    def set_cursor_dot(self) -> None:
        """Show a small dot (the server draws the real cursor itself)."""
        self.set_cursor(*_dot_rgba())

    def move_pointer(self, user: User, x: int, y: int, mask: int) -> None:
        """A user moved the mouse: every other user is shown where (see
        :mod:`guacr.render.pointer`); the recording gets it from the core, once."""
        self.pointer.update(user, x, y, mask)

    def end_frame(self) -> None:
        """The protocol says the picture is complete: flush it (or merge it into the next)."""
        if self._deferred is not None:
            self._deferred.append(self.end_frame)
            return
        self._open = False
        self._ready_frames += 1
        self._kick()

    def send_full_state(self, user: User) -> None:
        """Show a joining user the whole display at the next frame boundary."""
        if self._planned == 0:
            return  # the first frame is a full one and reaches every user
        self._joiners.append(user)
        self._kick()

    @property
    def planning(self) -> bool:
        """True while a frame's plan is in progress (drawing is queued meanwhile)."""
        return self._deferred is not None

    @property
    def ready(self) -> bool:
        """False while a finished frame waits behind the one being encoded."""
        return not (self._ready_frames and self._busy)

    def when_ready(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the display can take another frame (maybe now)."""
        if self.ready:
            callback()
        else:
            self._ready_callbacks.append(callback)

    async def wait_idle(self) -> None:
        """Wait until every finished frame (and joiner) has been sent."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop the pipeline and release the pointer buffer."""
        self._closed = True
        if self._cursor_buffer is not None:
            self.conn.buffers.free(self._cursor_buffer)
            self._cursor_buffer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait neither raises the task's CancelledError nor swallows ours.
            await asyncio.wait([task], timeout=1.0)

    # -------------------------------------------------------------------- pipeline
    def _kick(self) -> None:
        if self._closed:
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        try:
            while not self._closed:
                await self._wait()
                if self._joiners:
                    await self._serve_joiners()
                if self._ready_frames and not self._open:
                    await self._pace()
                    if self._open or self._closed:
                        # More drawing began meanwhile: wait for its end_frame.
                        self._busy = False
                        self._take_ready_callbacks()
                        continue
                    await self._flush()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Display pipeline failed")
            self.conn.end(GuacrError("Internal server error.", Status.SERVER_ERROR))

    async def _wait(self) -> None:
        if (self._ready_frames and not self._open) or self._joiners:
            return
        timeout = self._refresh_due()
        self._wake.clear()
        self._idle.set()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            self._idle.clear()
            self._schedule_refresh()

    def _refresh_due(self) -> float | None:
        if self.lossless_refresh is None or not self._lossy.any():
            return None
        oldest = float(self._last_change[self._lossy].min())
        due = oldest / 1000 + self.lossless_refresh - time.monotonic()
        return max(0.01, due)

    def _schedule_refresh(self) -> None:
        """Re-send lossy regions that stopped changing, losslessly."""
        if self.lossless_refresh is None or self._open or self._ready_frames:
            return
        now = time.monotonic() * 1000
        still = self._lossy & (now - self._last_change >= self.lossless_refresh * 1000)
        if not still.any():
            return
        self._lossy &= ~still
        h, w = self._sent.shape[:2]
        mask = np.repeat(np.repeat(still, pl.CELL, axis=0), pl.CELL, axis=1)
        self._sent[..., 3][mask[:h, :w]] = 0
        self._touched |= np.repeat(still, pl.CELL, axis=0)
        self._refresh = True
        self._ready_frames += 1

    async def _pace(self) -> None:
        """Don't outrun the client: wait out its lag (capped) and socket congestion,
        and the frame interval ``max_fps`` asks for.

        Always yields once first: the previous frame's assembly and the drawing its
        ready callbacks did ran in one stretch, and the next plan must not join it.
        """
        await _breathe()
        lag = min(self.conn.lag, MAX_LAG_WAIT_MS) / 1000
        due = max(self._last_flush + lag, self._next_frame)
        wait = due - time.monotonic()
        if wait > 0:
            self._busy = True
            await asyncio.sleep(wait)
        while self.conn.congested and not self._closed:
            self._busy = True
            await asyncio.sleep(CONGESTION_POLL)

    def _take_ready_callbacks(self) -> None:
        """Run the ``when_ready`` callbacks, each as its own loop callback: they draw
        (an RDP frame's bitmaps), and run inline they would lengthen the stretch of the
        plan or frame assembly before them (``bench_rdp.py``'s loop lag)."""
        callbacks, self._ready_callbacks = self._ready_callbacks, []
        if callbacks:
            loop = asyncio.get_running_loop()
            for cb in callbacks:
                loop.call_soon(self._ready_callback, cb)

    @staticmethod
    def _ready_callback(cb: Callable[[], None]) -> None:
        try:
            cb()
        except Exception:
            log.exception("Display ready callback failed")

    async def _flush(self) -> None:
        self._busy = True
        try:
            started = time.perf_counter()
            if self._min_interval:
                # Frames keep a cadence: one that started late (a long plan, a busy
                # loop) lets the next follow sooner, so the rate stays near max_fps.
                now = time.monotonic()
                self._next_frame = max(self._next_frame + self._min_interval, now)
            frames = self._ready_frames
            self._deferred = []
            self._slice_started, self._plan_busy = started, 0.0
            self._slice_cpu = time.thread_time()
            try:
                parts = await self._plan()
            finally:
                deferred, self._deferred = self._deferred, None
            self._ready_frames = 0
            planned = self._plan_busy + time.perf_counter() - self._slice_started
            for draw in deferred:
                draw()
            self.stats.plan_seconds += planned
            figures.CURRENT.observe("frame_plan_seconds", planned)
            if not self._min_interval:
                # The protocol side may prepare the next frame while this one encodes
                # (VNC asks for its next update). With ``max_fps`` the next frame
                # cannot start before the interval anyway: waiting for this one to be
                # sent gives an RDP reader one stretch of reading per frame, not two.
                self._take_ready_callbacks()
            if parts:
                data = await self._render(parts)
                self._last_flush = time.monotonic()
                self.stats.frames += 1
                self.stats.merged += frames
                self.stats.bytes += len(data)
                self.conn.end_frame(frames, data)
        finally:
            self._busy = False
        self._take_ready_callbacks()

    async def _render(self, parts: list[Part]) -> bytes:
        """Encode images in the pool (batched by size) and assemble the frame buffer."""
        images = [p for p in parts if isinstance(p, _Image) and not p.data]
        if images:
            loop = asyncio.get_running_loop()
            pool = self._executor or enc.executor()
            total = sum(i.cost for i in images)
            if total < BATCH_PIXELS or len(images) == 1:
                batches = [images]
            else:
                workers = enc.WORKERS
                batches = [[] for _ in range(workers)]
                loads = [0] * workers
                for image in sorted(images, key=lambda i: -i.cost):
                    k = loads.index(min(loads))
                    batches[k].append(image)
                    loads[k] += image.cost
            started = time.perf_counter()
            await asyncio.gather(
                *(loop.run_in_executor(pool, partial(_encode_all, batch)) for batch in batches)
            )
            figures.CURRENT.observe("encode_seconds", time.perf_counter() - started)
        out = bytearray()
        conn = self.conn
        for part in parts:
            if isinstance(part, _Image):
                stream = conn.alloc_stream()
                try:
                    out += b.image(
                        stream, part.mode, part.layer, part.mimetype, part.x, part.y, part.data
                    )
                finally:
                    conn.free_stream(stream)
                self.stats.images += 1
            else:
                out += part
        return bytes(out)

    # ------------------------------------------------------------------------ planning
    def _replay_ops(self, parts: list[Part]) -> None:
        """Apply this frame's ordered operations to ``_sent`` and emit them."""
        for op in self._ops:
            if isinstance(op, _Resize):
                h, w = op.height, op.width
                rows, cols = pl.cell_grid(w, h)
                sent = np.zeros((rows * pl.CELL, cols * pl.CELL, 4), np.uint8)
                sent[h:, :, 3] = 255  # the pad matches the framebuffer's
                sent[:, w:, 3] = 255
                self._sent_full = sent
                self._sent = sent[:h, :w]  # alpha 0: unknown
                self._sent32 = self._as32(sent)
                parts.append(b.size(0, w, h))
            elif isinstance(op, pl.Copy):
                pl.apply_copy(self._sent32, op)
                parts.append(b.copy(0, op.sx, op.sy, op.w, op.h, b.MODE_OVER, 0, op.dx, op.dy))
                self.stats.copies += 1
            else:
                h, w = op.pixels.shape[:2]
                region = self._sent[op.y : op.y + h, op.x : op.x + w]
                _put_rgb(region, op.pixels)
                region[..., 3] = 255
                parts.append(_Image(0, op.x, op.y, b.MODE_OVER, enc.JPEG, data=op.data))
        self._ops.clear()

    async def _slice(self) -> None:
        """Let the loop run if this plan has had the loop for ``SLICE_SECONDS``."""
        if time.thread_time() - self._slice_cpu < SLICE_SECONDS:
            return
        self._plan_busy += time.perf_counter() - self._slice_started
        await _breathe()
        self._slice_started = time.perf_counter()
        self._slice_cpu = time.thread_time()

    async def _plan(self) -> list[Part]:
        """Turn everything drawn since the last plan into instructions; update ``_sent``.

        A large frame is planned in slices, yielding to the loop between them (drawing
        meanwhile is deferred by the caller, so every slice sees the same state).
        """
        parts: list[Part] = []
        self._replay_ops(parts)
        fb32, sent32 = self._fb32, self._sent32
        boxes = pl.find_dirty(fb32, sent32, self._touched, self.width, self.height)
        await self._slice()
        if self.copy_search and not self._refresh and len(boxes) >= 2:
            copies = pl.find_scrolls(fb32, sent32, boxes, self.width, self.height)
            await self._slice()
            if copies:
                for copy in copies:
                    pl.apply_copy(sent32, copy)
                    parts.append(
                        b.copy(
                            0, copy.sx, copy.sy, copy.w, copy.h, b.MODE_OVER, 0, copy.dx, copy.dy
                        )
                    )
                self.stats.copies += len(copies)
                # Only what was dirty, or written by a copy (which may have read a
                # source another copy overwrote), can differ now.
                self._touched[:] = False
                pl.mark_boxes(self._touched, boxes)
                for copy in copies:
                    pl.mark(self._touched, copy.dx, copy.dy, copy.w, copy.h)
                await self._slice()
                boxes = pl.find_dirty(fb32, sent32, self._touched, self.width, self.height)
        self._touched[:] = False
        refresh, self._refresh = self._refresh, False
        now = time.monotonic() * 1000
        if boxes:
            rows = np.fromiter((box.cells[0][0] for box in boxes), np.intp, len(boxes))
            cols = np.fromiter((box.cells[0][1] for box in boxes), np.intp, len(boxes))
            self._interval[rows, cols] = now - self._last_change[rows, cols]
            self._last_change[rows, cols] = now
        solids, images = pl.classify(fb32, boxes)
        await self._slice()
        users = self.conn.users
        jpeg_ok = bool(users) and all(u.info.supports_jpeg for u in users)
        webp_ok = bool(users) and all(u.info.supports_webp for u in users)
        quality = enc.lossy_quality(self.conn.lag)
        for box in pl.combine_images(images):
            await self._slice()
            fps = 0.0
            if not refresh:
                cy, cx = zip(*box.cells, strict=True)
                interval = float(np.mean(self._interval[cy, cx]))
                fps = 1000.0 / interval if interval > 0 else 0.0
            region = fb32[box.y0 : box.y1, box.x0 : box.x1]
            mimetype = pl.choose_format(
                region, fps, lossless=self.lossless, jpeg_ok=jpeg_ok, webp_ok=webp_ok
            )
            lossy = mimetype == enc.JPEG or (mimetype == enc.WEBP and not self.lossless)
            if lossy:
                box = pl.align_lossy(box, self.width, self.height)
            # The encoder reads ``_sent`` directly: it changes only when a frame is
            # planned, and the next plan waits for this frame's encoding to finish.
            pixels = self._sent[box.y0 : box.y1, box.x0 : box.x1]
            pixels[...] = self._fb[box.y0 : box.y1, box.x0 : box.x1]
            if lossy:
                self._lossy[
                    box.y0 // pl.CELL : (box.y1 - 1) // pl.CELL + 1,
                    box.x0 // pl.CELL : (box.x1 - 1) // pl.CELL + 1,
                ] = True
            else:
                cy, cx = zip(*box.cells, strict=True)
                self._lossy[cy, cx] = False
            parts.append(
                _Image(0, box.x0, box.y0, b.MODE_OVER, mimetype, pixels, quality, self.lossless)
            )
        for solid in pl.combine_solids(solids):
            sent = self._sent32[solid.y0 : solid.y1, solid.x0 : solid.x1]
            sent[...] = solid.colour
            r, g, bl = solid.colour & 255, (solid.colour >> 8) & 255, (solid.colour >> 16) & 255
            parts.append(
                b.fill_rect(
                    0, solid.x0, solid.y0, solid.x1 - solid.x0, solid.y1 - solid.y0, (r, g, bl)
                )
            )
            self.stats.fills += 1
        for solid in solids:
            self._lossy[solid.y0 // pl.CELL, solid.x0 // pl.CELL] = False
        if self._cursor_dirty:
            self._cursor_dirty = False
            parts += self._cursor_parts()
        if parts:
            self._planned += 1
        return parts

    def _cursor_parts(self) -> list[Part]:
        cursor = self._cursor
        if cursor is None:
            return []
        if self._cursor_buffer is None:
            self._cursor_buffer = self.conn.buffers.alloc()
        buf = self._cursor_buffer
        w, h = cursor.width, cursor.height
        return [
            b.size(buf, w, h),
            _Image(buf, 0, 0, b.MODE_SRC, enc.PNG, rgba=(w, h, cursor.rgba)),
            b.cursor(cursor.hx, cursor.hy, buf, 0, 0, w, h),
        ]

    def _full_state(self) -> list[Part]:
        """Everything a new user needs: size, the picture as last sent, the pointer."""
        height, width = self._sent.shape[:2]
        parts: list[Part] = [b.size(0, width, height)]
        if width and height:
            sent32 = self._sent32
            unknown = np.zeros_like(sent32)
            touched = np.ones(pl.touch_grid(width, height), np.bool_)
            boxes = pl.find_dirty(sent32, unknown, touched, width, height)
            solids, images = pl.classify(sent32, boxes)
            for box in pl.combine_images(images):
                pixels = self._sent[box.y0 : box.y1, box.x0 : box.x1].copy()
                parts.append(_Image(0, box.x0, box.y0, b.MODE_OVER, enc.PNG, pixels))
            for s in pl.combine_solids(solids):
                rgb = (s.colour & 255, (s.colour >> 8) & 255, (s.colour >> 16) & 255)
                parts.append(b.fill_rect(0, s.x0, s.y0, s.x1 - s.x0, s.y1 - s.y0, rgb))
        parts += self._cursor_parts()
        position = self.pointer.state()
        if position:
            parts.append(position)
        return parts

    async def _serve_joiners(self) -> None:
        joiners, self._joiners = self._joiners, []
        self._busy = True
        try:
            data = await self._render(self._full_state())
        finally:
            self._busy = False
        for user in joiners:
            if user in self.conn.users:
                user.send(data)
        self.conn.end_frame()
