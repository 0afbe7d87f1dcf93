"""RFB decode cost per full 1024x768 frame, per encoding, from real server captures.

    .venv/bin/python benchmarks/bench_rfb_decode.py [--repeat 7]

Starts Xtigervnc and Xvfb + x11vnc on 127.0.0.1 (tests/servers.py, so the same Debian
packages as the test suite), fills the desktop with text (xterms) and a photo-like
window, then for each encoding captures the server's bytes for one full frame. The
capture is replayed through a fresh sans-I/O ``RFBClient`` (in 64 KiB reads, like a
socket) and timed: decode only, no network. Prints median ms per frame, wire bytes,
events, Tight JPEG rects, and MB/s of RGB produced (3 bytes per pixel). Tight JPEG rects
are passed through undecoded; the "+dec" line adds decoding them with Pillow. Raw
rects come out as zero-copy views of the received bytes, hence their speed.

ZRLE is timed twice: "zrle" with the tile decoder guacr uses (the C one, _zrle.c, when
built), "zrle py" with the Python one. A second table times the tile decoders alone on
each of the frame's ZRLE rects (after inflate, before colour conversion), grouped by
content: flat (one colour), text (2-1000 colours: xterms), photo (more), mixed (x11vnc
sends the whole frame as one rect). The machine is shared and noisy: compare figures
from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import TigerVNCServer, X11VNCServer  # noqa: E402

from guacr.handlers.vnc import zrle  # noqa: E402
from guacr.handlers.vnc.client import RFBClient  # noqa: E402
from guacr.handlers.vnc.constants import Encoding, build_encodings  # noqa: E402
from guacr.handlers.vnc.events import (  # noqa: E402
    Connected,
    CopyRect,
    FramebufferUpdateEnd,
    JpegRect,
    RectDecoded,
    SolidRect,
)
from guacr.handlers.vnc.tight import decode_jpeg  # noqa: E402

# (encoding names, Tight JPEG quality level or None for lossless)
CASES: dict[str, list[tuple[str, int | None]]] = {
    "tigervnc": [("raw", None), ("hextile", None), ("zrle", None), ("tight", None), ("tight", 6)],
    "x11vnc": [
        ("raw", None),
        ("hextile", None),
        ("zlib", None),
        ("zrle", None),
        ("tight", None),
        ("tight", 6),
    ],
}


@dataclass
class Capture:
    name: str
    before: bytes  # handshake and anything before the frame request
    frame: list[bytes]  # reads that made up the full frame
    pixels: int


def _xwd(img: np.ndarray) -> bytes:
    h, w = img.shape[:2]
    name = b"bench\0"
    fields = [100 + len(name), 7, 2, 24, w, h, 0, 0, 32, 0, 32, 32, w * 4, 4]
    fields += [0xFF0000, 0xFF00, 0xFF, 8, 256, 0, w, h, 0, 0, 0]
    px = np.zeros((h, w, 4), np.uint8)
    px[..., :3] = img[..., ::-1]
    return np.array(fields, ">u4").tobytes() + name + px.tobytes()


def busy_desktop(server: Any, workdir: Path) -> list[subprocess.Popen[bytes]]:
    """Text in two xterms plus a 640x300 photo-like window, none overlapping."""
    yy, xx = np.mgrid[0:300, 0:640].astype(np.float32)
    rng = np.random.default_rng(5)
    photo = np.dstack(
        [
            128 + 100 * np.sin(xx / 19) * np.cos(yy / 27),
            128 + 100 * np.sin((xx + yy) / 31),
            128 + 100 * np.cos(xx / 13 - yy / 23),
        ]
    ) + rng.normal(0, 6, (300, 640, 3))
    path = workdir / f"photo-{server.kind}.xwd"
    path.write_bytes(_xwd(np.clip(photo, 0, 255).astype(np.uint8)))
    env = server.x_env()
    text = "/usr/share/common-licenses/GPL-3"
    procs = [
        subprocess.Popen(
            ["xterm", "-geometry", "100x29+340+0", "-fa", "DejaVu Sans Mono", "-fs", "9",
             "-e", "sh", "-c", f"cat {text}; sleep 3600"],
            env=env,
        ),
        subprocess.Popen(["xwud", "-in", str(path), "-geometry", "+340+460"], env=env),
    ]  # fmt: skip
    # Wait until both windows are drawn (the photo region has thousands of colours).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shot = np.asarray(server.grab().convert("RGB"))
        region = shot[470:750, 350:970].reshape(-1, 3).astype(np.uint32)
        colours = len(np.unique((region[:, 0] << 16) | (region[:, 1] << 8) | region[:, 2]))
        if colours > 20000:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("benchmark desktop did not appear")
    time.sleep(1.0)
    return procs


async def capture(server: Any, names: str, quality: int | None) -> Capture:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    client = RFBClient(password=server.password)
    before = bytearray()
    frame: list[bytes] = []
    painted = np.zeros((1, 1), bool)
    capturing = False
    try:
        while True:
            out = client.data_to_send()
            if out:
                writer.write(out)
            data = await asyncio.wait_for(reader.read(1 << 16), 20)
            if not data:
                raise ConnectionError("server closed")
            if capturing:
                frame.append(data)
            else:
                before += data
            for e in client.receive_data(data):
                if isinstance(e, Connected):
                    painted = np.zeros((e.height, e.width), bool)
                    # Own the pointer so Xtigervnc does not paint a cursor in the frame.
                    client.pointer_event(e.width - 1, e.height - 1, 0)
                    client.set_encodings(build_encodings(names, quality_level=quality))
                    client.framebuffer_update_request(False)
                    capturing = True
                elif isinstance(e, (RectDecoded, SolidRect, JpegRect, CopyRect)):
                    painted[e.y : e.y + e.height, e.x : e.x + e.width] = True
                elif isinstance(e, FramebufferUpdateEnd):
                    if painted.all():
                        label = names + (f" q{quality}" if quality is not None else "")
                        return Capture(label, bytes(before), frame, painted.size)
                    client.framebuffer_update_request(True)
    finally:
        writer.close()


def replay(cap: Capture, password: str, jpeg: bool = False) -> tuple[float, int, int]:
    """Seconds to decode the frame, events produced, JPEG rects; ``jpeg`` also decodes
    the pass-through JPEG rects with Pillow (what a framebuffer copy would cost)."""
    client = RFBClient(password=password)
    client.receive_data(cap.before)
    start = time.perf_counter()
    events = jpegs = 0
    for chunk in cap.frame:
        for e in client.receive_data(chunk):
            events += 1
            if isinstance(e, JpegRect):
                jpegs += 1
                if jpeg:
                    decode_jpeg(e.data)
    return time.perf_counter() - start, events, jpegs


@contextmanager
def tile_decoder(decoder: zrle.TileDecoder) -> Iterator[None]:
    saved = zrle.decode_tiles
    zrle.decode_tiles = decoder
    try:
        yield
    finally:
        zrle.decode_tiles = saved


@dataclass
class ZrleRect:
    kind: str  # flat / text / photo / mixed
    payload: bytes  # inflated tile data
    w: int
    h: int
    cps: int


def zrle_rects(cap: Capture, password: str) -> list[ZrleRect]:
    """The frame's ZRLE rects as the tile decoder sees them, classified by content."""
    calls: list[tuple[bytes, int, int, int]] = []
    active = zrle.decode_tiles

    def record(buf: bytes, out: np.ndarray, w: int, h: int, cps: int) -> int:
        calls.append((buf, w, h, cps))
        return active(buf, out, w, h, cps)

    client = RFBClient(password=password)
    client.receive_data(cap.before)
    rects = []
    with tile_decoder(record):
        for chunk in cap.frame:
            for e in client.receive_data(chunk):
                if isinstance(e, RectDecoded) and e.encoding == Encoding.ZRLE:
                    px = e.pixels.reshape(-1, 3).astype(np.uint32)
                    colours = len(np.unique((px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2]))
                    kind = "flat" if colours == 1 else "text" if colours <= 1000 else "photo"
                    if e.width * e.height == cap.pixels:
                        kind = "mixed"
                    rects.append(kind)
    assert len(calls) == len(rects)
    return [ZrleRect(k, *c) for k, c in zip(rects, calls, strict=True)]


def time_tiles(rects: list[ZrleRect], decoder: zrle.TileDecoder, repeat: int) -> float:
    """Median seconds to decode all of ``rects``' tiles with ``decoder``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for r in rects:
            decoder(r.payload, np.empty((r.h, r.w, r.cps), np.uint8), r.w, r.h, r.cps)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_tile_table(rows: list[tuple[str, list[ZrleRect]]], repeat: int) -> None:
    native = zrle.decode_tiles
    if native is zrle.decode_tiles_py:
        print("\n(the C tile decoder is not available: only Python timed)")
    print(
        f"\nZRLE tile decoding alone, per rect\n{'server':9} {'content':7} {'rects':>5} "
        f"{'kpx/rect':>8} {'py ms':>8} {'C ms':>8} {'speedup':>8}"
    )
    for kind_name, rects in rows:
        for kind in ("flat", "text", "photo", "mixed"):
            group = [r for r in rects if r.kind == kind]
            if not group:
                continue
            kpx = sum(r.w * r.h for r in group) / len(group) / 1000
            py = time_tiles(group, zrle.decode_tiles_py, repeat) / len(group) * 1000
            c = time_tiles(group, native, repeat) / len(group) * 1000
            print(
                f"{kind_name:9} {kind:7} {len(group):5d} {kpx:8.1f} {py:8.3f} {c:8.3f} "
                f"{py / c:7.1f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    workdir = Path("/tmp") / "guacr-bench-rfb"
    workdir.mkdir(exist_ok=True)
    print(
        f"{'server':9} {'encoding':14} {'wire kB':>8} {'events':>7} {'jpeg':>5} "
        f"{'ms/frame':>9} {'RGB MB/s':>9}"
    )
    tile_rows: list[tuple[str, list[ZrleRect]]] = []
    for kind, server_cls in (("tigervnc", TigerVNCServer), ("x11vnc", X11VNCServer)):
        # Capture everything first, then stop the servers: x11vnc polls the screen and
        # would otherwise compete for the CPU while decoding is timed.
        with server_cls() as server:
            password = server.password
            procs = busy_desktop(server, workdir)
            try:
                captures = [
                    (asyncio.run(capture(server, names, quality)), quality)
                    for names, quality in CASES[kind]
                ]
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait(timeout=5)
        for cap, quality in captures:
            variants: list[tuple[str, bool, zrle.TileDecoder]] = [
                (" +dec" if jpeg else "", jpeg, zrle.decode_tiles)
                for jpeg in ((False, True) if quality is not None else (False,))
            ]
            if cap.name == "zrle":
                variants.append((" py", False, zrle.decode_tiles_py))
                tile_rows.append((kind, zrle_rects(cap, password)))
            for suffix, jpeg, decoder in variants:
                times = []
                events = jpegs = 0
                with tile_decoder(decoder):
                    for _ in range(args.repeat):
                        seconds, events, jpegs = replay(cap, password, jpeg)
                        times.append(seconds)
                ms = statistics.median(times) * 1000
                wire = sum(len(c) for c in cap.frame) / 1000
                rgb_mb = cap.pixels * 3 / 1e6
                label = cap.name + suffix
                print(
                    f"{kind:9} {label:14} {wire:8.0f} {events:7d} {jpegs:5d} "
                    f"{ms:9.1f} {rgb_mb / (ms / 1000):9.0f}"
                )
    print_tile_table(tile_rows, args.repeat)


if __name__ == "__main__":
    main()
