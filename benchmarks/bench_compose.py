"""Terminal image composition: CPU per image, and how long it keeps the event loop waiting.

    python benchmarks/bench_compose.py [--repeat 40] [--font-size 12]

A terminal frame's images are composed (cells -> palette image) and PNG-encoded in an
encoder thread while the worker's event loop serves other sessions; whatever of that
work holds the GIL delays the loop (issue 16). Printed, for the C compositor
(``guacr/render/_compose.c``) and the numpy version it falls back to, in one run:

* compose of a full screen of text (1024x768 at 96 dpi) and of a 10-cell echo image,
  median CPU;
* compose + PNG of a full screen in a thread, its median CPU, and how much longer a
  loop sleeping 0.5 ms at a time waited per image than without it (the GIL: the
  worker's switch interval, 0.5 ms, is set here too).

The machine is shared and its speed drifts: compare figures from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable

from guacr.frontend.cells import CellKeys, pack
from guacr.render import compose
from guacr.render.glyphs import CellKey, font_pixels, get_fontset
from guacr.render.terminal_view import encode_image
from guacr.server.worker import SWITCH_INTERVAL
from guacr.terminal import Terminal

WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


def screen(cols: int, rows: int) -> tuple[list[list[CellKey]], int]:
    """A screen of ``cat`` output (79-column lines), as the emulator shows it."""
    term = Terminal(cols, rows, 1000)
    for i in range(rows * 4):
        line = f"{i:07d} " + " ".join(WORDS[(i + k) % 8] for k in range(12))
        term.feed(line[:79].encode() + b"\r\n")
    keys = CellKeys()
    return [keys.row(term, y) for y in range(rows)], pack(term.palette.background)


def cpu(fn: Callable[[], object], repeat: int) -> float:
    """Median thread CPU seconds of ``fn``."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def loop_wait(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median CPU of ``fn`` in a thread, the extra wait of a loop beside it per call)."""

    def waits(job: Callable[[], object]) -> tuple[float, float]:
        done = threading.Event()
        spent: list[float] = []

        def worker() -> None:
            for _ in range(repeat):
                start = time.thread_time()
                job()
                spent.append(time.thread_time() - start)
                time.sleep(0.01)
            done.set()

        thread = threading.Thread(target=worker)
        thread.start()
        extra = 0.0
        while not done.is_set():
            start = time.perf_counter()
            time.sleep(0.0005)
            extra += max(0.0, time.perf_counter() - start - 0.0005)
        thread.join()
        return statistics.median(spent), extra / repeat

    _, idle = waits(lambda: time.sleep(0.003))
    used, extra = waits(fn)
    return used, max(0.0, extra - idle)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=40)
    p.add_argument("--font-size", type=float, default=12.0)
    args = p.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL)
    fonts = get_fontset("monospace", font_pixels(args.font_size, 96))
    cols, rows = 1024 // fonts.cell_width, 768 // fonts.cell_height
    grid, bg = screen(cols, rows)
    echo = [grid[0][:10]]
    native = compose.palette_indices
    print(f"bench_compose: {cols}x{rows} cells of {fonts.cell_width}x{fonts.cell_height} px")
    for name, impl in (("C", native), ("numpy", None)):
        if name == "C" and impl is None:
            print("  C: not available (the library could not be built)")
            continue
        compose.palette_indices = impl
        try:
            full = cpu(lambda: fonts.compose(grid, bg), args.repeat)
            small = cpu(lambda: fonts.compose(echo, bg), args.repeat * 25)
            used, extra = loop_wait(
                lambda: encode_image(fonts.compose(grid, bg), False), args.repeat
            )
        finally:
            compose.palette_indices = native
        print(
            f"  {name:5s}: full screen {full * 1e3:5.2f} ms, 10-cell echo {small * 1e6:5.1f} us; "
            f"full screen + PNG in a thread {used * 1e3:5.2f} ms CPU, "
            f"the loop waited {extra * 1e3:4.2f} ms more per image"
        )


if __name__ == "__main__":
    main()
