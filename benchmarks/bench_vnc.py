"""VNC through a Guacamole proxy (guacr or guacd): frame rate, bandwidth, CPU, latency.

Scene: an xterm scrolls ``ls -la /usr/bin`` in a loop on the VNC desktop while a
Guacamole client (this script) watches through the proxy, echoing every ``sync`` like
guacamole-common-js. ``--scene flood`` (default) runs the loop unthrottled: xterm then
jump-scrolls, so nearly every frame shows a screenful of new text. ``--scene paced``
feeds it 125 lines/s, a real scroll (two lines per frame). Printed:

* frames/s (``sync`` instructions) and bytes/s received by the client;
* proxy CPU seconds per second of session (utime+stime of the proxy processes, /proc);
* key-press-to-first-changed-frame latency: a key typed into a second, idle xterm,
  timed until the first frame that draws into that xterm (median and max of N);
* for reference (self-contained mode), the update rate the same server gives a bare
  RFB client (guacr's own RFB core, no Guacamole side) on the same scene.

Self-contained by default: starts Xtigervnc (1024x768, with the usual idle xterm) and
guacr on 127.0.0.1. Against anything else::

    bench_vnc.py --proxy HOST:PORT --proxy-pids PID[,PID] \\
        --vnc-host H --vnc-port P --password PW --display :N

(``--display`` must be an X display this script can open to start the scrolling
xterm; the idle xterm is expected at +10+10 as in tests/servers.py.)

Targets for the self-contained scene: >= 55 frames/s, <= 1 MB/s, <= 0.35 core.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from guacr.protocol.instruction import encode  # noqa: E402
from guacr.protocol.parser import Parser  # noqa: E402

# The idle xterm (80x24 at +10+10) minus the part the scrolling xterm covers.
TYPE_REGION = (10, 10, 740, 330)  # x0, y0, x1, y1
SCROLL_GEOMETRY = "80x24+280+340"
XK_BACKSPACE = 0xFF08
SCENES = {
    "flood": "while :; do ls -la /usr/bin; done",
    "paced": "while :; do ls -la /usr/bin; done | "
    "perl -ne '$|=1; print; select(undef, undef, undef, 0.008)'",
}


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


def bare_rfb_rate(host: str, port: int, password: str, seconds: float) -> float:
    """FramebufferUpdates/s a plain RFB client gets (requesting the next at each end)."""
    import asyncio

    from guacr.handlers.vnc.client import RFBClient
    from guacr.handlers.vnc.constants import build_encodings
    from guacr.handlers.vnc.events import Connected, FramebufferUpdateEnd

    async def run() -> float:
        reader, writer = await asyncio.open_connection(host, port)
        client = RFBClient(password=password or None)
        updates, warmup, start = 0, 5, 0.0
        while not start or time.monotonic() - start < seconds:
            for event in client.receive_data(await reader.read(1 << 18)):
                if isinstance(event, Connected):
                    client.set_encodings(build_encodings())
                    client.framebuffer_update_request(False)
                elif isinstance(event, FramebufferUpdateEnd):
                    updates += 1
                    if updates == warmup and not start:
                        start, updates = time.monotonic(), 0
                    client.framebuffer_update_request(True)
            writer.write(client.data_to_send())
        writer.close()
        return updates / (time.monotonic() - start)

    return asyncio.run(run())


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


class Viewer:
    """A minimal Guacamole client: handshake, sync echo, frame/byte counters."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = Parser()
        self.frames = 0
        self.bytes = 0
        self.errors: list[tuple[str, ...]] = []
        self.region_hit = False  # a drawing op landed in TYPE_REGION since reset

    def send(self, *parts: object) -> None:
        self.sock.sendall(encode(*parts))  # type: ignore[arg-type]

    def handshake(self, values: dict[str, str]) -> None:
        self.send("select", "vnc")
        args: tuple[str, ...] | None = None
        while args is None:
            for ins in self.parser.receive_data(self.sock.recv(65536)):
                if ins[0] == "args":
                    args = ins
        self.send("size", 1024, 768, 96)
        self.send("audio")
        self.send("video")
        self.send("image", "image/png", "image/jpeg")
        self.send("connect", "VERSION_1_5_0", *(values.get(n, "") for n in args[2:]))

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 18)
            except TimeoutError:
                return
            if not data:
                raise SystemExit(f"proxy closed the connection; errors: {self.errors}")
            self.bytes += len(data)
            for ins in self.parser.receive_data(data):
                op = ins[0]
                if op == "sync":
                    self.frames += 1
                    self.sock.sendall(encode("sync", ins[1]))
                elif op in ("img", "rect", "copy"):
                    x, y = (int(ins[5]), int(ins[6])) if op == "img" else (0, 0)
                    if op == "rect":
                        x, y = int(ins[2]), int(ins[3])
                    elif op == "copy":
                        x, y = int(ins[8]), int(ins[9])
                    layer = ins[3] if op == "img" else ins[1] if op == "rect" else ins[7]
                    x0, y0, x1, y1 = TYPE_REGION
                    if layer == "0" and x0 <= x < x1 and y0 <= y < y1:
                        self.region_hit = True
                elif op == "error":
                    self.errors.append(ins)

    def wait_region(self, timeout: float) -> float | None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.pump(0.002)
            if self.region_hit:
                return time.monotonic() - start
        return None


@contextlib.contextmanager
def self_contained() -> Iterator[tuple[str, int, list[int], dict[str, str], str]]:
    from guacr_process import run_guacr
    from servers import TigerVNCServer

    with (
        TigerVNCServer() as server,
        tempfile.TemporaryDirectory() as tmp,
        run_guacr(Path(tmp), workers=1, handlers="vnc=guacr.handlers.vnc.handler:VNCHandler") as g,
    ):
        values = {"hostname": server.host, "port": str(server.port), "password": server.password}
        yield "127.0.0.1", g.port, [g.proc.pid, *g.worker_pids()], values, server.display


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy", help="HOST:PORT of a running guacr/guacd (default: start guacr)")
    ap.add_argument("--proxy-pids", default="", help="comma-separated proxy PIDs (+children)")
    ap.add_argument("--vnc-host", default="127.0.0.1")
    ap.add_argument("--vnc-port", type=int, default=5901)
    ap.add_argument("--password", default="")
    ap.add_argument("--display", default=":1")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--samples", type=int, default=10, help="key latency samples")
    ap.add_argument("--param", action="append", default=[], help="extra NAME=VALUE")
    ap.add_argument("--scene", choices=sorted(SCENES), default="flood")
    args = ap.parse_args()

    with contextlib.ExitStack() as stack:
        if args.proxy:
            host, _, port = args.proxy.rpartition(":")
            pids = [int(p) for p in args.proxy_pids.split(",") if p]
            pids += [c for p in pids for c in children(p)]
            values = {
                "hostname": args.vnc_host,
                "port": str(args.vnc_port),
                "password": args.password,
            }
            proxy = (host, int(port))
            display = args.display
        else:
            h, p, pids, values, display = stack.enter_context(self_contained())
            proxy = (h, p)
        values.update(dict(kv.split("=", 1) for kv in args.param))
        env = {"DISPLAY": display, "PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
        scroller = subprocess.Popen(
            ["xterm", "-geometry", SCROLL_GEOMETRY, "-fa", "DejaVu Sans Mono", "-fs", "14",
             "-bg", "white", "-fg", "black",
             "-e", "sh", "-c", SCENES[args.scene]],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        stack.callback(lambda: (os.killpg(scroller.pid, signal.SIGKILL), scroller.wait()))

        bare = None
        if not args.proxy:
            time.sleep(1.0)
            bare = bare_rfb_rate(values["hostname"], int(values["port"]), values["password"], 5)
        viewer = Viewer(*proxy)
        viewer.handshake(values)
        viewer.pump(1.0)
        viewer.send("mouse", 200, 100, 0)  # focus follows the pointer: the idle xterm
        viewer.pump(2.0)  # warm-up
        if viewer.errors:
            raise SystemExit(f"proxy error: {viewer.errors}")

        frames0, bytes0, cpu0, t0 = viewer.frames, viewer.bytes, cpu_seconds(pids), time.monotonic()
        viewer.pump(args.seconds)
        elapsed = time.monotonic() - t0
        fps = (viewer.frames - frames0) / elapsed
        rate = (viewer.bytes - bytes0) / elapsed
        cpu = (cpu_seconds(pids) - cpu0) / elapsed

        latencies = []
        for i in range(args.samples):
            keysym = ord("a") + i % 26
            viewer.pump(0.15)
            viewer.region_hit = False
            viewer.send("key", keysym, 1)
            viewer.send("key", keysym, 0)
            lat = viewer.wait_region(2.0)
            if lat is not None:
                latencies.append(lat * 1000)
            viewer.send("key", XK_BACKSPACE, 1)
            viewer.send("key", XK_BACKSPACE, 0)
        viewer.pump(0.3)

    print(f"session: {elapsed:.1f} s, scene {args.scene}, proxy {proxy[0]}:{proxy[1]}")
    if bare is not None:
        print(f"bare RFB client {bare:8.1f} updates/s from the same server and scene")
    print(f"frames/s        {fps:8.1f}   (target >= 55)")
    print(f"bytes/s         {rate / 1e6:8.3f} MB (target <= 1)")
    print(f"proxy CPU       {cpu:8.3f} core (target <= 0.35; pids {pids})")
    if latencies:
        print(
            f"key latency     {statistics.median(latencies):8.1f} ms median, "
            f"{max(latencies):.1f} ms max ({len(latencies)}/{args.samples} samples)"
        )
    else:
        print("key latency     no typed character was seen")


if __name__ == "__main__":
    main()
