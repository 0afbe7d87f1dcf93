"""Display engine cost per frame: planning (event-loop time) and encoding (pool time).

Scenes, at 1024x768 and 1920x1080, on a synthetic desktop (gradient wallpaper, text
windows, a photo):

* ``full-text``: the whole screen changes to new text-like content (PNG path)
* ``full-video``: the whole screen changes to photo-like content at 30 fps (JPEG path)
* ``scroll-pixels``: a terminal-sized window scrolls by one 17-px line, sent by the
  server as plain pixels (found by the copy search)
* ``scroll-copyrect``: the same scroll announced by the server as a CopyRect
* ``small``: one 10x17 glyph typed

Run: ``.venv/bin/python benchmarks/bench_display.py [--frames N] [--micro]``.
Prints median ms per frame: plan (on the loop), frame total (plan + encode + assemble,
wall clock with the 2-thread pool) and bytes per frame. ``--micro`` adds the
measurements behind the choices commented in guacr/render (encoder settings, palette
building, framebuffer writes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from guacr.protocol import builders as b
from guacr.protocol.handshake import ClientInfo
from guacr.render.display import Display
from guacr.server.pool import IndexPool


class _User:
    def __init__(self) -> None:
        self.info = ClientInfo(image=["image/png", "image/jpeg"])


class _Conn:
    """The few Connection members the display uses; counts bytes instead of sending."""

    def __init__(self) -> None:
        self.users = [_User()]
        self.buffers = IndexPool(-1, -1)
        self._streams = IndexPool(1, 2)
        self.lag = 0
        self.congested = False
        self.sent = 0
        self.frame_done = asyncio.Event()

    def alloc_stream(self) -> int:
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        self._streams.free(index)

    def end_frame(self, frames: int = 0, extra: bytes = b"") -> None:
        self.sent += len(extra) + len(b.sync(0, frames))
        self.frame_done.set()

    def end(self) -> None:
        pass


def text_block(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Terminal-like text: dark glyph strokes in 9x17 cells on white."""
    img = np.full((h, w, 3), 255, np.uint8)
    rows, cols = h // 17, w // 9
    glyphs = rng.random((rows, cols)) < 0.6
    for r, c in zip(*np.nonzero(glyphs), strict=True):
        y, x = r * 17 + 3, c * 9 + 1
        img[y + 2 : y + 12, x + 1] = 20
        img[y + 2, x + 1 : x + 6] = 20
        img[y + 2 + int(rng.integers(0, 10)), x + 1 : x + 7] = 40
    return img


def photo(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(base).resize((w + 64, h + 64), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 4, (h, w, 3))
    return np.clip(field[:h, :w] + noise, 0, 255).astype(np.uint8)


def desktop(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(30, 90, h, dtype=np.uint8)[:, None]
    img[..., 1] = np.linspace(60, 120, w, dtype=np.uint8)[None, :]
    img[..., 2] = 150
    img[10:420, 10:740] = text_block(410, 730, rng)
    img[h - 300 : h - 20, w - 420 : w - 20] = photo(280, 400, rng)
    return img


async def measure(
    w: int, h: int, frames: int, step: Callable[[Display, int], None], interval: float
) -> tuple[float, float, float]:
    rng = np.random.default_rng(1)
    conn = _Conn()
    display = Display(conn, lossless_refresh=None)  # type: ignore[arg-type]
    display.resize(w, h)
    display.blit(0, 0, desktop(w, h, rng))
    display.end_frame()
    await display.wait_idle()
    await asyncio.sleep(0.05)
    totals, plans, sizes = [], [], []
    for i in range(frames):
        conn.frame_done.clear()
        before_plan, before_bytes = display.stats.plan_seconds, conn.sent
        start = time.perf_counter()
        step(display, i)
        display.end_frame()
        await conn.frame_done.wait()
        totals.append(time.perf_counter() - start)
        plans.append(display.stats.plan_seconds - before_plan)
        sizes.append(conn.sent - before_bytes)
        await display.wait_idle()
        await asyncio.sleep(interval)
    await display.close()
    return statistics.median(plans) * 1e3, statistics.median(totals) * 1e3, statistics.median(sizes)


def scenes(w: int, h: int) -> dict[str, tuple[Callable[[Display, int], None], float]]:
    rng = np.random.default_rng(2)
    texts = [text_block(h, w, rng) for _ in range(4)]
    videos = [photo(h, w, rng) for _ in range(4)]
    lines = [text_block(17, 730, rng) for _ in range(8)]

    def full_text(d: Display, i: int) -> None:
        d.blit(0, 0, texts[i % 4])

    def full_video(d: Display, i: int) -> None:
        d.blit(0, 0, videos[i % 4])

    def scroll_pixels(d: Display, i: int) -> None:
        win = d._fb[10:420, 10:740, :3].copy()
        win[:-17] = win[17:]
        win[-17:] = lines[i % 8]
        d.blit(10, 10, win)

    def scroll_copyrect(d: Display, i: int) -> None:
        d.copy_rect(10, 27, 730, 410 - 17, 10, 10)
        d.blit(10, 420 - 17, lines[i % 8])

    def small(d: Display, i: int) -> None:
        glyph = np.full((17, 10, 3), 255, np.uint8)
        glyph[3:14, 2] = glyph[3, 2:8] = glyph[8, 2:7] = (i * 40) % 200  # an "F"
        d.blit(100 + 9 * (i % 50), 200 + 17 * (i // 50), glyph)

    return {
        "full-text": (full_text, 0.4),
        "full-video": (full_video, 1 / 30),
        "scroll-pixels": (scroll_pixels, 1 / 60),
        "scroll-copyrect": (scroll_copyrect, 1 / 60),
        "small": (small, 1 / 60),
    }


def best_ms(fn: Callable[[], object], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def micro() -> None:
    """The measurements behind the choices commented in guacr/render."""
    import io

    from guacr.render import encode as enc
    from guacr.render import palette

    rng = np.random.default_rng(3)
    samples = {
        "text 512x46": text_block(46, 512, rng),
        "text 512x256": text_block(256, 512, rng),
        "photo 512x512": photo(512, 512, rng),
    }
    print(f"\n{'encoder (ms / bytes)':<22} " + " ".join(f"{k:>20}" for k in samples))
    rgbx = {}
    for name, rgb in samples.items():
        arr = np.full((*rgb.shape[:2], 4), 255, np.uint8)
        arr[..., :3] = rgb
        rgbx[name] = arr

    def row(label: str, fn: Callable[[np.ndarray], bytes | None]) -> None:
        cells = []
        for arr in rgbx.values():
            out = fn(arr)
            ms = best_ms(lambda arr=arr: fn(arr))  # type: ignore[misc]
            cells.append(f"{ms:8.2f} / {len(out) if out else 0:>8}")
        print(f"{label:<22} " + " ".join(f"{c:>20}" for c in cells))

    def png_rgb(level: int) -> Callable[[np.ndarray], bytes | None]:
        def run(arr: np.ndarray) -> bytes | None:
            out = io.BytesIO()
            enc._rgb_image(arr).save(out, "PNG", compress_level=level)
            return out.getvalue()

        return run

    def png_palette(level: int, native: bool) -> Callable[[np.ndarray], bytes | None]:
        """enc._palette_png with this deflate level and the C or the Python indexer."""

        def run(arr: np.ndarray) -> bytes | None:
            saved = enc.PALETTE_PNG_LEVEL, palette.index_colours
            enc.PALETTE_PNG_LEVEL = level
            if not native:
                palette.index_colours = palette.index_colours_py
            try:
                return enc._palette_png(arr)
            finally:
                enc.PALETTE_PNG_LEVEL, palette.index_colours = saved

        return run

    def quantize(arr: np.ndarray) -> bytes | None:
        rgb = enc._rgb_image(arr)
        colours = rgb.getcolors(256)
        if colours is None:
            return None
        out = io.BytesIO()
        rgb.quantize(len(colours)).save(out, "PNG", compress_level=4)
        return out.getvalue()

    row("PNG rgb level 1", png_rgb(1))
    row("PNG rgb level 6", png_rgb(6))
    row("PNG palette level 1", png_palette(1, True))
    row("PNG palette level 4", png_palette(4, True))
    row("PNG palette py index", png_palette(4, False))
    row("PNG Pillow quantize", quantize)
    row("encode_png (used)", enc.encode_png)
    row("JPEG q90", lambda a: enc.encode_jpeg(a, 90))
    row("WebP q90 method 0", lambda a: enc.encode_webp(a, 90))

    def webp_m4(arr: np.ndarray) -> bytes:
        out = io.BytesIO()
        enc._rgb_image(arr).save(out, "WEBP", quality=90, method=4)
        return out.getvalue()

    row("WebP q90 method 4", webp_m4)

    h, w = 1080, 1920
    fb = np.zeros((h, w, 4), np.uint8)
    src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def strided() -> None:
        fb[..., :3] = src

    def per_channel() -> None:
        for c in range(3):
            fb[..., c] = src[..., c]

    fb32 = fb.view(np.uint32)[..., 0]
    print(f"\n{'framebuffer write, 1920x1080':<34} ms")
    print(f"{'blit: fb[..., :3] = rgb':<34} {best_ms(strided):6.2f}")
    print(f"{'blit: one channel at a time':<34} {best_ms(per_channel):6.2f}")
    tuple_fill = best_ms(lambda: fb.__setitem__(..., (1, 2, 3, 255)))
    print(f"{'fill: fb[...] = (r, g, b, 255)':<34} {tuple_fill:6.2f}")
    print(f"{'fill: uint32 view = packed':<34} {best_ms(lambda: fb32.__setitem__(..., 7)):6.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--micro", action="store_true", help="also run the micro measurements")
    args = parser.parse_args()
    print(f"{'scene':<16} {'size':>10} {'plan ms':>8} {'frame ms':>9} {'bytes/frame':>12}")
    for w, h in ((1024, 768), (1920, 1080)):
        for name, (step, interval) in scenes(w, h).items():
            frames = args.frames if not name.startswith("full-text") else min(args.frames, 6)
            plan_ms, total_ms, size = await measure(w, h, frames, step, interval)
            print(f"{name:<16} {w}x{h:<5} {plan_ms:8.2f} {total_ms:9.2f} {size:12.0f}")
    if args.micro:
        micro()


if __name__ == "__main__":
    asyncio.run(main())
