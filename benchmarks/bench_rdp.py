"""RDP through a Guacamole proxy (guacr or guacd): frame rate, bandwidth, CPU, connect time.

Scene (issue 13): on the xrdp + xorgxrdp desktop (1024x768), a 100x40 xterm scrolls
``ls -la /usr/bin`` in a loop while a Guacamole client (this script) watches through
the proxy, echoing every ``sync`` like guacamole-common-js. For each colour depth
(default 32 and 16 bpp) it prints:

* connect-to-first-frame: ``connect`` sent until the first image drawn on the
  display layer, i.e. the remote desktop (median of N);
* frames/s (``sync`` instructions) and bytes/s received by the client;
* proxy CPU seconds per second of session (utime+stime of the proxy processes);
* for reference (self-contained mode), what guacr's RDP client alone (aardwolf plus
  guacr's decoding, no display engine, no Guacamole side) costs in CPU on the same
  scene: "aardwolf's part" of guacr's CPU; with ``--compare-parsers`` also its CPU
  per rectangle with aardwolf's own PDU parsing (asn1tools) against guacr's
  (``guacr/handlers/rdp/pdu.py``), alternated in one run;
* event-loop lag during full-screen 32/16 bpp refreshes (``xrefresh`` over the scene,
  ``--lag-refreshes``): the RDP client and guacr's display engine in one asyncio loop
  as in a worker, a 1 ms probe task's lateness (p50/p99/max, target p99 < 10 ms) and
  the part of it the loop thread spent on CPU (the rest is waiting for a core).

Self-contained by default: starts xrdp (tests/servers/xrdp.py) and guacr on 127.0.0.1.
Against anything else (guacd, for a side-by-side run)::

    bench_rdp.py --proxy HOST:PORT --proxy-pids PID[,PID] --rdp-host H --rdp-port P \\
        --display :10 --xauthority /home/guest/.Xauthority

(the display is where the scrolling xterm is started). Reference, Apache guacd 1.6.1 on
the same scene at 32 bpp: 24-25 frames/s, 1.9-2.0 MB/s, 0.39-0.41 core.

Also printed: CPU per frame, and the RDP bytes/s the proxy received from the server
(``ss``'s tcp_info: guacr reads no more than its display draws, guacd all xrdp sends).
``--profile DIR`` samples guacr's worker with py-spy (``pip install py-spy``) during the
measurement and prints where its time went.

Measured on the 2-core development machine under load (load average 8), both in one
run (``--guacd /opt/guacd/sbin/guacd``): 32 bpp guacr 28.1 frames/s, 0.32 MB/s, 0.47
core (16.7 ms per frame) vs guacd 11.2 frames/s, 1.47 MB/s, 0.39 core (35 ms); 16 bpp
guacr 27.9 frames/s, 0.44 MB/s, 0.47 core vs guacd 11.9, 1.55 MB/s, 0.44 core. Before
the frame cap and the reading pace guacr ran 49-69 frames/s at 1.2-2x guacd's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from guacr.protocol.instruction import encode  # noqa: E402
from guacr.protocol.parser import Parser  # noqa: E402

SCENE = "while :; do ls -la /usr/bin; done"
SCROLL_GEOMETRY = "100x40+0+0"


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes, in seconds (from /proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{pid}/stat").read_bytes()
            fields = raw[raw.rindex(b")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def received_from(port: int) -> int:
    """Bytes received so far on the established loopback connections to ``port`` (the
    RDP server): ``ss``'s tcp_info ``bytes_received``, summed."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( dport = :{port} )"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    return sum(int(m) for m in re.findall(r"bytes_received:(\d+)", out))


def descendants(pids: list[int]) -> list[int]:
    """The processes and all their descendants (guacd forks one per connection)."""
    found, todo = list(pids), list(pids)
    while todo:
        out = subprocess.run(
            ["pgrep", "-P", str(todo.pop())], capture_output=True, text=True
        ).stdout
        kids = [int(x) for x in out.split()]
        found += kids
        todo += kids
    return found


class Viewer:
    """A minimal Guacamole client: handshake, sync echo, frame/byte counters."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=15)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = Parser()
        self.frames = 0
        self.bytes = 0
        self.errors: list[tuple[str, ...]] = []
        self.first_image: float | None = None  # first image drawn on the display layer

    def close(self) -> None:
        self.sock.close()

    def send(self, *parts: object) -> None:
        self.sock.sendall(encode(*parts))  # type: ignore[arg-type]

    def handshake(self, values: dict[str, str]) -> float:
        """Handshake; returns the time the ``connect`` instruction went out."""
        self.send("select", "rdp")
        args: tuple[str, ...] | None = None
        while args is None:
            for ins in self.parser.receive_data(self.sock.recv(65536)):
                if ins[0] == "args":
                    args = ins
        self.send("size", 1024, 768, 96)
        self.send("audio")
        self.send("video")
        self.send("image", "image/png", "image/jpeg", "image/webp")
        sent = time.monotonic()
        self.send("connect", "VERSION_1_5_0", *(values.get(n, "") for n in args[2:]))
        return sent

    def pump(self, seconds: float, until_image: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if until_image and self.first_image is not None:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 18)
            except TimeoutError:
                return
            if not data:
                raise SystemExit(f"proxy closed the connection; errors: {self.errors}")
            self.bytes += len(data)
            for ins in self.parser.receive_data(data):
                if ins[0] == "sync":
                    self.frames += 1
                    self.sock.sendall(encode("sync", ins[1]))
                elif ins[0] == "img" and ins[3] == "0" and self.first_image is None:
                    self.first_image = time.monotonic()
                elif ins[0] == "error":
                    self.errors.append(ins)
                    raise SystemExit(f"proxy error: {ins}")


class NullSink:
    """An RDP sink that drops everything (the RDP client's own cost, reading all the
    server sends: with guacr's display, xrdp sends less, see RECEIVE_BUFFER)."""

    def bitmap(self, x: int, y: int, pixels: object) -> None:
        pass

    def update_end(self) -> None:
        pass

    def error_info(self, code: int) -> None:
        pass

    def keyboard_indicators(self, flags: int) -> None:
        pass

    def desktop_resized(self, width: int, height: int) -> None:
        pass

    def server_clipboard(self, text: str) -> None:
        pass

    def cursor(self, cursor: object) -> None:
        pass

    async def more_updates(self) -> None:
        await asyncio.sleep(0)


def client_only_cpu(
    host: str, port: int, depth: int, seconds: float, own_parsers: bool = True
) -> tuple[float, float]:
    """CPU s/s and rects/s of guacr's RDP client alone (aardwolf + decode) on the scene,
    with guacr's own PDU parsers (the default) or aardwolf's (asn1tools)."""
    from guacr.handlers.rdp import compat
    from guacr.handlers.rdp.client import RDPClient, RDPConfig

    compat.preload()
    saved = dict(compat.OWN_PARSERS)
    compat.OWN_PARSERS.update(dict.fromkeys(saved, own_parsers))

    async def run() -> tuple[float, float]:
        config = RDPConfig(host, port, "guest", "guest", None, 1024, 768, depth, "tls", 10.0)
        client = RDPClient(config, NullSink())
        await client.connect()
        await asyncio.sleep(1.0)
        rects0, cpu0, t0 = client.rects, time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu = (time.process_time() - cpu0) / elapsed
        rects = (client.rects - rects0) / elapsed
        await client.close()
        return cpu, rects

    try:
        return asyncio.run(run())
    finally:
        compat.OWN_PARSERS.update(saved)


class _User:
    def __init__(self) -> None:
        from guacr.protocol.handshake import ClientInfo

        self.info = ClientInfo(image=["image/png", "image/jpeg", "image/webp"])


class _Conn:
    """The few Connection members the display engine uses; counts bytes, sends nothing."""

    def __init__(self) -> None:
        from guacr.server.pool import IndexPool

        self.users = [_User()]
        self.buffers = IndexPool(-1, -1)
        self._streams = IndexPool(1, 2)
        self.lag = 0
        self.congested = False
        self.sent = 0
        self.frames = 0

    def alloc_stream(self) -> int:
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        self._streams.free(index)

    def end_frame(self, frames: int = 0, extra: bytes = b"") -> None:
        self.sent += len(extra)
        self.frames += 1

    def end(self) -> None:
        pass


class DisplaySink(NullSink):
    """Bitmaps into guacr's display engine, batched into frames as the RDP handler does
    (drawn a few ms after the last bitmap of a burst, once the display is ready; no
    reading meanwhile)."""

    def __init__(self, display: object) -> None:
        from guacr.handlers.rdp.handler import FRAME_DELAY

        self.display: Any = display
        self.delay = FRAME_DELAY
        self.pending: list[tuple[int, int, object]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.waiting = False
        self.free = asyncio.Event()
        self.free.set()

    async def more_updates(self) -> None:
        await asyncio.sleep(0)
        await self.free.wait()

    def bitmap(self, x: int, y: int, pixels: object) -> None:
        self.pending.append((x, y, pixels))

    def update_end(self) -> None:
        if self.timer is None and not self.waiting:
            self.timer = asyncio.get_running_loop().call_later(self.delay, self.end_frame)

    def end_frame(self) -> None:
        self.timer = None
        if not self.display.ready:
            if not self.waiting:
                self.waiting = True
                self.free.clear()
                self.display.when_ready(self.ready)
            return
        pending, self.pending = self.pending, []
        for x, y, pixels in pending:
            self.display.blit(x, y, pixels)
        self.display.end_frame()

    def ready(self) -> None:
        self.waiting = False
        self.free.set()
        self.end_frame()


class LagProbe:
    """A task that sleeps 1 ms at a time and records how late it wakes, and how much
    of that the loop thread spent on CPU (the rest: waiting for a core)."""

    def __init__(self) -> None:
        self.woken: list[float] = []
        self.lags: list[float] = []
        self.busy: list[float] = []
        self.stopped = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.stopped:
            before, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.woken.append(now)
            self.lags.append(now - before - 0.001)
            self.busy.append(time.thread_time() - cpu)

    async def stop(self) -> None:
        self.stopped = True
        await self.task

    def figures(self, windows: list[tuple[float, float]] | None = None) -> dict[str, float]:
        """p50/p99/max of the lag (and p99/max on CPU) for wake-ups inside ``windows``."""
        keep = [windows is None or any(a <= t <= b for a, b in windows) for t in self.woken]
        lags = sorted(x for x, k in zip(self.lags, keep, strict=True) if k)
        busy = sorted(x for x, k in zip(self.busy, keep, strict=True) if k)
        n = len(lags)
        if not n:
            return dict.fromkeys(("p50", "p99", "max", "cpu_p99", "cpu_max", "samples"), 0.0)
        p99 = min(n - 1, int(n * 0.99))
        return {
            "p50": lags[n // 2],
            "p99": lags[p99],
            "max": lags[-1],
            "cpu_p99": busy[p99],
            "cpu_max": busy[-1],
            "samples": n,
        }


def loop_lag(
    host: str, port: int, depth: int, env: dict[str, str], refreshes: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Event-loop lag while the whole 1024x768 screen is repainted (``xrefresh``).

    One loop (uvloop, as in a worker) runs what a guacr worker runs for an RDP session:
    the RDP client (aardwolf, guacr's parsers and decoding) and the display engine
    (planning on the loop, encoding in its threads), with the Guacamole output counted
    instead of sent. A :class:`LagProbe` measures over the 400 ms after each of
    ``refreshes`` full-screen refreshes (on top of the scrolling scene). Returns those
    figures and, for scale, the same probe's on this machine with no session (2 s
    before connecting): on a loaded machine most lag is waiting for a core.
    """
    from guacr.handlers.rdp import compat
    from guacr.handlers.rdp.client import RDPClient, RDPConfig
    from guacr.handlers.rdp.handler import MAX_FPS
    from guacr.render.display import Display

    compat.preload()

    async def run() -> tuple[dict[str, float], dict[str, float]]:
        idle = LagProbe()
        await asyncio.sleep(2.0)
        await idle.stop()
        conn = _Conn()
        display = Display(conn, max_fps=MAX_FPS)  # type: ignore[arg-type]
        display.resize(1024, 768)
        sink = DisplaySink(display)
        config = RDPConfig(host, port, "guest", "guest", None, 1024, 768, depth, "tls", 10.0)
        client = RDPClient(config, sink)
        await client.connect()
        await asyncio.sleep(1.5)
        probe = LagProbe()
        windows: list[tuple[float, float]] = []
        rects0 = client.rects
        for _ in range(refreshes):
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec("xrefresh", env=env)
            await proc.wait()
            await asyncio.sleep(0.4)
            windows.append((start, time.perf_counter()))
            await asyncio.sleep(0.2)
        await probe.stop()
        figures = probe.figures(windows)
        figures["rects"] = client.rects - rects0
        figures["frames"] = conn.frames
        await client.close()
        await display.close()
        return figures, idle.figures()

    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run())


@contextlib.contextmanager
def self_contained() -> Iterator[tuple[tuple[str, int], list[int], dict[str, str], dict[str, str]]]:
    from guacr_process import run_guacr
    from servers.xrdp import XrdpServer

    with (
        XrdpServer() as server,
        tempfile.TemporaryDirectory() as tmp,
        run_guacr(Path(tmp), workers=1, handlers="rdp=guacr.handlers.rdp.handler:RDPHandler") as g,
    ):
        values = {"hostname": server.host, "port": str(server.port)}
        yield ("127.0.0.1", g.port), [g.proc.pid, *g.worker_pids()], values, server.x_env()


@contextlib.contextmanager
def start_guacd(binary: str) -> Iterator[tuple[tuple[str, int], list[int]]]:
    """Apache guacd in the foreground on a free loopback port (stopped by PID)."""
    from guacr_process import free_port

    port = free_port()
    lib = str(Path(binary).resolve().parent.parent / "lib")
    env = {**os.environ, "LD_LIBRARY_PATH": lib}
    proc = subprocess.Popen(
        [binary, "-b", "127.0.0.1", "-l", str(port), "-f", "-L", "error"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("guacd did not listen")
            time.sleep(0.05)
        yield ("127.0.0.1", port), [proc.pid]
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _frame_name(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``func (file.py)``: one entry per function."""
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rstrip(')').rsplit('/', 1)[-1]})" if where else func


def profile_summary(path: Path, top: int = 30) -> str:
    """A py-spy raw (collapsed stacks) profile -> the functions with the most samples,
    by own time and by time including callees."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return "no samples"
    lines = [f"{total} samples"]
    for title, table in (("own", own), ("inclusive", inclusive)):
        lines.append(f"  by {title} samples:")
        for name, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {n / total:6.1%}  {name}")
    return "\n".join(lines)


def start_profile(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes]:
    """py-spy (PyPI ``py-spy``) sampling ``pid``'s busy threads without pausing it.

    Time in C (numpy, Pillow, zlib, the Rust decoder) counts for the Python function
    that called it (``--native`` would name it, but needs pausing the process, which
    skews the figures measured meanwhile, and counts idle threads as busy).
    """
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(spy), "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "100",
         "--nonblocking", "-f", "raw", "-o", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def measure(
    proxy: tuple[str, int],
    pids: list[int],
    values: dict[str, str],
    seconds: float,
    samples: int,
    profile: tuple[int, Path] | None = None,
) -> dict[str, float]:
    connects = []
    for _ in range(samples):
        viewer = Viewer(*proxy)
        sent = viewer.handshake(values)
        viewer.pump(15.0, until_image=True)
        if viewer.first_image is not None:
            connects.append(viewer.first_image - sent)
        viewer.close()
        time.sleep(0.3)
    viewer = Viewer(*proxy)
    viewer.handshake(values)
    viewer.pump(2.0)  # warm-up
    pids = descendants(pids)  # now including guacd's process for this connection
    rdp_port = int(values["port"])
    rdp0 = received_from(rdp_port)
    frames0, bytes0, cpu0, t0 = viewer.frames, viewer.bytes, cpu_seconds(pids), time.monotonic()
    spy = start_profile(profile[0], seconds, profile[1]) if profile else None
    viewer.pump(seconds)
    elapsed = time.monotonic() - t0
    if spy is not None:
        spy.wait()
    result = {
        "fps": (viewer.frames - frames0) / elapsed,
        "bytes": (viewer.bytes - bytes0) / elapsed,
        "cpu": (cpu_seconds(pids) - cpu0) / elapsed,
        "rdp_bytes": (received_from(rdp_port) - rdp0) / elapsed,
        "connect": statistics.median(connects) if connects else float("nan"),
    }
    viewer.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy", help="HOST:PORT of a running guacr/guacd (default: start guacr)")
    ap.add_argument("--proxy-pids", default="", help="comma-separated proxy PIDs (+children)")
    ap.add_argument("--rdp-host", default="127.0.0.1")
    ap.add_argument("--rdp-port", type=int, default=3389)
    ap.add_argument("--username", default="guest")
    ap.add_argument("--password", default="guest")
    ap.add_argument("--display", default=":10")
    ap.add_argument("--xauthority", default="/home/guest/.Xauthority")
    ap.add_argument("--depths", default="32,16")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--samples", type=int, default=5, help="connect-time samples")
    ap.add_argument("--param", action="append", default=[], help="extra NAME=VALUE")
    ap.add_argument(
        "--guacd",
        default="",
        help="also measure this guacd binary against the same xrdp (self-contained mode)",
    )
    ap.add_argument(
        "--compare-parsers",
        action="store_true",
        help="also measure the RDP client with aardwolf's own PDU parsing (asn1tools)",
    )
    ap.add_argument(
        "--profile",
        metavar="DIR",
        help="record guacr's worker with py-spy during the measurement (pip install py-spy) "
        "into DIR/guacr-BPP.txt and print a summary",
    )
    ap.add_argument(
        "--lag-refreshes",
        type=int,
        default=10,
        help="full-screen refreshes for the event-loop lag probe (0: skip)",
    )
    args = ap.parse_args()

    with contextlib.ExitStack() as stack:
        if args.proxy:
            host, _, port = args.proxy.rpartition(":")
            proxy = (host, int(port))
            pids = [int(p) for p in args.proxy_pids.split(",") if p]
            values = {"hostname": args.rdp_host, "port": str(args.rdp_port)}
            env = {"DISPLAY": args.display, "XAUTHORITY": args.xauthority, "PATH": "/usr/bin:/bin"}
        else:
            proxy, pids, values, env = stack.enter_context(self_contained())
        values.update({"username": args.username, "password": args.password, "ignore-cert": "true"})
        values.update(dict(kv.split("=", 1) for kv in args.param))
        scroller = subprocess.Popen(
            ["xterm", "-geometry", SCROLL_GEOMETRY, "-fa", "DejaVu Sans Mono", "-fs", "10",
             "-bg", "white", "-fg", "black", "-e", "sh", "-c", SCENE],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        stack.callback(lambda: (os.killpg(scroller.pid, signal.SIGKILL), scroller.wait()))
        time.sleep(1.0)
        proxies = [("guacr" if not args.proxy else "proxy", proxy, pids)]
        if args.guacd and not args.proxy:
            proxies.append(("guacd", *stack.enter_context(start_guacd(args.guacd))))
        print(f"{args.seconds:.0f} s per depth and proxy, scene: {SCENE}")
        for (name, proxy, pids), depth in (
            (p, int(d)) for d in args.depths.split(",") for p in proxies
        ):
            profile = None
            if args.profile and name == "guacr" and not args.proxy:
                profile = (pids[-1], Path(args.profile) / f"guacr-{depth}.txt")
                profile[1].parent.mkdir(parents=True, exist_ok=True)
            r = measure(
                proxy,
                pids,
                {**values, "color-depth": str(depth)},
                args.seconds,
                args.samples,
                profile,
            )
            print(f"--- {name} {proxy[0]}:{proxy[1]}, {depth} bpp")
            print(f"connect->frame  {r['connect'] * 1000:8.0f} ms (median of {args.samples})")
            print(f"frames/s        {r['fps']:8.1f}   (guacd 24-25 at 32 bpp; target >= 25)")
            print(f"bytes/s         {r['bytes'] / 1e6:8.3f} MB (guacd 1.9-2.0; target <= 1.9)")
            print(f"proxy CPU       {r['cpu']:8.3f} core (guacd 0.39-0.41; target <= 0.40)")
            if r["fps"]:
                print(f"CPU per frame   {r['cpu'] / r['fps'] * 1000:8.1f} ms")
            print(f"from the server {r['rdp_bytes'] / 1e6:8.3f} MB/s of RDP (TLS)")
            if profile is not None:
                print(profile_summary(profile[1]))
            if name == "guacr" and not args.proxy:
                rdp = (values["hostname"], int(values["port"]), depth)
                cpu, rects = client_only_cpu(*rdp, args.seconds / 2)
                share = cpu / r["cpu"] if r["cpu"] else float("nan")
                print(
                    f"RDP client only {cpu:8.3f} core, {rects:.0f} rects/s "
                    f"(aardwolf + decode: {share:.0%} of guacr's CPU)"
                )
                if args.compare_parsers:
                    # Alternated, so a change in the machine's load hits both alike.
                    per_rect: dict[bool, list[float]] = {True: [], False: []}
                    for own in (False, True, False, True):
                        c, n = client_only_cpu(*rdp, args.seconds / 2, own_parsers=own)
                        per_rect[own].append(c / n * 1e6 if n else float("nan"))
                    old, new = (statistics.median(per_rect[k]) for k in (False, True))
                    print(
                        f"  CPU per rect  {old:8.1f} us with aardwolf's parsers (asn1tools), "
                        f"{new:.1f} us with guacr's: {old / new:.2f}x"
                    )
                if args.lag_refreshes:
                    lag, idle = loop_lag(*rdp, env, args.lag_refreshes)
                    print(
                        f"loop lag        p99 {lag['p99'] * 1000:.1f} ms, p50 "
                        f"{lag['p50'] * 1000:.1f}, max {lag['max'] * 1000:.1f} "
                        f"(target p99 < 10 ms; {args.lag_refreshes} full-screen refreshes, "
                        f"{lag['samples']:.0f} samples, {lag['rects']:.0f} rects)"
                    )
                    print(
                        f"  of it on CPU  p99 {lag['cpu_p99'] * 1000:.1f} ms, max "
                        f"{lag['cpu_max'] * 1000:.1f} (the loop thread's own work between two "
                        f"probe wake-ups; the rest is waiting for a core on a loaded machine)"
                    )
                    print(
                        f"  no session    p99 {idle['p99'] * 1000:.1f} ms, p50 "
                        f"{idle['p50'] * 1000:.1f}, max {idle['max'] * 1000:.1f} (the same "
                        f"probe alone, just before: this machine's scheduling noise)"
                    )


if __name__ == "__main__":
    main()
