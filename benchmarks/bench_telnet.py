"""Telnet terminal benchmarks against any guacd-compatible server (guacr or a real guacd).

    python benchmarks/bench_telnet.py [--local] [--guacd HOST:PORT] [--telnet-host H]
        [--telnet-port P] [--user U] [--password PW] [--runs N] [--keys K] COMMAND

COMMAND is one of:

* ``connect``  select -> login prompt visible (no credentials given), and select ->
               shell prompt visible with automatic login (guacd's default regexes),
               median and worst over --runs sessions. "Visible" means: the first
               ``sync`` after which the replayed display shows the text (read back with
               the test suite's glyph matcher, offline, so reading costs no time);
* ``echo``     keystroke-to-screen latency, p50/p99 over --keys echoed keys (>= 200),
               the method of ``bench_ssh.py echo`` (x / BackSpace alternately, time
               from key to the end of the frame that drew the echo);
* ``all``      both.

``--local`` starts guacr (2 workers) and inetutils telnetd behind socat from the test
helpers (Debian packages from scripts/install-test-deps.sh), so the benchmark is
self-contained. The client side is ``bench_ssh.py``'s, imported. The machine this was
written on is shared and noisy: compare figures from one run, and repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bench_ssh import GuacClient, echo_latencies, pct  # noqa: E402
from ssh.term_screen import Display, TextReader  # noqa: E402

HANDLERS = "telnet=guacr.handlers.telnet.handler:TelnetHandler"
LOGIN_PROMPT = re.compile(r"[Ll]ogin:")
SHELL_PROMPT = re.compile(r"[$#]$")  # a screen row ending with the shell's prompt


class TelnetClient(GuacClient):
    """bench_ssh's client, selecting ``telnet``; records when each instruction arrived."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.recording: list[tuple[float, tuple[str, ...]]] | None = None

    async def handshake(self, values: dict[str, str], size: tuple[int, int, int]) -> str:
        self.send("select", "telnet")
        args = await self.expect("args")
        self.send("size", *size)
        self.send("audio")
        self.send("video")
        self.send("image", "image/png", "image/jpeg", "image/webp")
        self.send("timezone", "UTC")
        self.send("connect", "VERSION_1_5_0", *(values.get(n, "") for n in args[2:]))
        return (await self.expect("ready"))[1]

    async def read(self) -> tuple[str, ...] | None:
        ins = await super().read()
        if ins is not None and self.recording is not None:
            self.recording.append((asyncio.get_running_loop().time(), ins))
        return ins


class Target:
    def __init__(self, args: argparse.Namespace) -> None:
        host, _, port = args.guacd.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.values = {
            "hostname": args.telnet_host,
            "port": str(args.telnet_port),
            "username": args.user,
            "password": args.password,
        }

    async def session(
        self, login: bool = True, size: tuple[int, int, int] = (1024, 768, 96)
    ) -> TelnetClient:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        c = TelnetClient(reader, writer)
        values = dict(self.values)
        if not login:
            values.pop("username")
            values.pop("password")
        await c.handshake(values, size)
        return c


_reader: TextReader | None = None


def first_visible(
    recording: list[tuple[float, tuple[str, ...]]], pattern: re.Pattern[str]
) -> float | None:
    """Arrival time of the first ``sync`` after which a screen row matches ``pattern``."""
    global _reader
    if _reader is None:
        _reader = TextReader()
    display = Display()
    for t, ins in recording:
        display.feed(ins)
        if ins[0] == "sync" and any(pattern.search(r) for r in _reader.screen(display)):
            return t
    return None


async def time_to_prompt(target: Target, login: bool, pattern: re.Pattern[str]) -> float:
    """Seconds from sending ``select`` until ``pattern`` is on the screen."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    c = await target.session(login=login)
    c.recording = []
    try:
        # Everything up to 1 s of drawing-free quiet (or 10 s) is recorded, then replayed.
        async with asyncio.timeout(10):
            await c.frame()
            await c.quiet(1.0)
    except TimeoutError:
        pass
    finally:
        c.close()
    t = first_visible(c.recording, pattern)
    if t is None:
        raise RuntimeError(f"{pattern.pattern!r} never appeared on the screen")
    return t - t0


async def cmd_connect(target: Target, args: argparse.Namespace) -> None:
    for label, login, pattern in (
        ("login prompt (no credentials)", False, LOGIN_PROMPT),
        ("shell prompt (automatic login)", True, SHELL_PROMPT),
    ):
        times = [await time_to_prompt(target, login, pattern) * 1000 for _ in range(args.runs)]
        print(
            f"connect: select -> {label}: median {statistics.median(times):.0f} ms, "
            f"min {min(times):.0f} ms, max {max(times):.0f} ms over {len(times)} sessions"
        )


async def cmd_echo(target: Target, args: argparse.Namespace) -> None:
    c = await target.session()
    await c.frame()  # the login prompt
    await c.quiet(1.0)  # automatic login, then the shell prompt
    await echo_latencies(c, 20)  # warm up: glyphs reach the client's cache
    lat = await echo_latencies(c, args.keys)
    c.close()
    print(
        f"echo: {len(lat)} keys  p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  "
        f"max {max(lat):.2f} ms   (SSH targets: p50 <= 2, p99 <= 10)"
    )


@contextlib.contextmanager
def local_servers(args: argparse.Namespace) -> Iterator[None]:
    from guacr_process import run_guacr
    from servers import TelnetServer

    with (
        TelnetServer() as telnetd,
        tempfile.TemporaryDirectory() as tmp,
        run_guacr(Path(tmp), workers=2, handlers=HANDLERS) as g,
    ):
        args.guacd = f"127.0.0.1:{g.port}"
        args.telnet_host, args.telnet_port = telnetd.host, telnetd.port
        args.user, args.password = telnetd.username, telnetd.password
        print(f"local guacr on :{g.port} (workers {g.worker_pids()}), telnetd on :{telnetd.port}")
        yield


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["connect", "echo", "all"])
    p.add_argument("--local", action="store_true", help="start guacr and telnetd locally")
    p.add_argument("--guacd", default="127.0.0.1:4822")
    p.add_argument("--telnet-host", default="127.0.0.1")
    p.add_argument("--telnet-port", type=int, default=23)
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    p.add_argument("--runs", type=int, default=10, help="connect: sessions to time")
    p.add_argument("--keys", type=int, default=400, help="echo: keys to time")
    args = p.parse_args()
    commands = {"connect": cmd_connect, "echo": cmd_echo}
    names = list(commands) if args.command == "all" else [args.command]
    with local_servers(args) if args.local else contextlib.nullcontext():
        target = Target(args)
        for name in names:
            asyncio.run(commands[name](target, args))


if __name__ == "__main__":
    main()
