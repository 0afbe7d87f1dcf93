"""SSH terminal benchmarks against any guacd-compatible server (guacr or a real guacd).

    python benchmarks/bench_ssh.py [--local] [--guacd HOST:PORT] [--ssh-host H]
        [--ssh-port P] [--ssh-user U] [--ssh-password PW] COMMAND

COMMAND is one of:

* ``echo``        keystroke-to-screen latency, p50/p99 over --keys echoed keys (>= 200)
                  in one session (target p50 <= 2 ms, p99 <= 10 ms);
* ``bulk``        ``seq 1 2000000; exit`` typed: wall time until the session ends and
                  bytes received by the client (target <= 5 s, <= 700 KB);
* ``memory``      PSS and RSS of all server processes with N idle sessions, N = 50 and
                  200 (--sessions), total/N and growth/N (target <= 2 MB PSS/session);
* ``concurrent``  200 sessions (--sessions) each typing ~8 keys/s for 10 s: echo p50/p99
                  (target p99 <= 50 ms);
* ``emulation``   terminal MB/s: the emulator alone (benchmarks/bench_terminal.py) and
                  the whole guacr pipeline (emulator + view + encoding to wire bytes);
* ``render``      the renderer's two drawing strategies compared (bytes, CPU) for
                  keystrokes, full-screen redraws, bulk and 1-line scrolling;
* ``all``         everything above.

``--local`` starts guacr (2 workers) and a throw-away OpenSSH server from the test
helpers, so the benchmark is self-contained; otherwise point --guacd and --ssh-* at
running servers. Keys are echoed by an interactive shell: the prompt must accept
typed characters (bash does). The machine this was written on is shared and noisy:
compare figures from one run, and repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from guacbench import (
    KEY_BACKSPACE,
    KEY_X,
    ROOT,
    GuacClient,
    Target,
    open_sessions,
    pct,
    proc_cpu,
    server_pids,
)


async def logged_in(target: Target) -> GuacClient:
    c = await target.session()
    await c.frame()  # the prompt
    await c.quiet(0.5)
    return c


async def echo_latencies(c: GuacClient, keys: int, interval: float = 0.0) -> list[float]:
    """Type x / BackSpace alternately; time each key until its echo frame ends."""
    loop = asyncio.get_running_loop()
    out: list[float] = []
    for i in range(keys):
        c.key(KEY_X if i % 2 == 0 else KEY_BACKSPACE)
        t0 = loop.time()
        await c.frame()
        out.append((loop.time() - t0) * 1000)
        if interval:
            await asyncio.sleep(max(0.0, interval - (loop.time() - t0)))
    return out


# Commands ------------------------------------------------------------------------------
async def cmd_echo(target: Target, args: argparse.Namespace) -> None:
    c = await logged_in(target)
    await echo_latencies(c, 20)  # warm up: glyphs reach the client's cache
    lat = await echo_latencies(c, args.keys)
    c.close()
    print(
        f"echo: {len(lat)} keys  p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  "
        f"max {max(lat):.2f} ms   (target p50 <= 2, p99 <= 10)"
    )


async def cmd_bulk(target: Target, args: argparse.Namespace) -> None:
    c = await logged_in(target)
    before = c.bytes_in
    c.type(f"seq 1 {args.lines}; exit\n")
    t0 = time.monotonic()
    while True:
        ins = await c.read()
        if ins is None or ins[0] in ("disconnect", "error"):
            break
    elapsed = time.monotonic() - t0
    c.close()
    kb = (c.bytes_in - before) / 1000
    print(
        f"bulk: seq 1 {args.lines}: {elapsed:.2f} s until the session ended, {kb:.0f} KB sent "
        f"to the client   (target <= 5 s, <= 700 KB)"
    )


def process_memory(pid: int) -> tuple[int, int] | None:
    """(PSS kB, RSS kB) of one process, None if it is gone."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    pss = rss = 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def unique_memory(pids: list[int]) -> int | None:
    """kB of distinct physical pages mapped by ``pids`` (None without root: the page
    frame numbers in /proc/PID/pagemap read as 0 otherwise).

    PSS divides a page by every process on the machine mapping it, so on a shared
    machine (other guacr instances, other Pythons with the same libraries) it moves
    with what else runs; this counts each page of the server once, as PSS would on
    a machine of its own.
    """
    frames: set[int] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            pagemap = open(f"/proc/{pid}/pagemap", "rb")  # noqa: SIM115
        except OSError:
            continue
        with pagemap:
            for line in maps:
                fields = line.split()
                if len(fields) > 5 and fields[5] == "[vsyscall]":
                    continue
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                try:
                    pagemap.seek(lo // 4096 * 8)
                    data = pagemap.read((hi - lo) // 4096 * 8)
                except OSError:
                    continue
                for (entry,) in struct.iter_unpack("<Q", data):
                    if entry >> 63:  # present
                        frame = entry & ((1 << 55) - 1)
                        if not frame:
                            return None
                        frames.add(frame)
    return len(frames) * 4


def server_memory(args: argparse.Namespace) -> tuple[int, int, int, list[int]]:
    """(PSS kB, RSS kB, processes, PSS kB per process) summed over the server's processes."""
    pss = rss = 0
    each: list[int] = []
    for pid in server_pids(args):
        mem = process_memory(pid)
        if mem is None:
            continue
        pss += mem[0]
        rss += mem[1]
        each.append(mem[0])
    return pss, rss, len(each), each


async def drain_all(clients: list[GuacClient], stop: asyncio.Event) -> None:
    async def drain(c: GuacClient) -> None:
        while not stop.is_set() and await c.read() is not None:
            pass

    await asyncio.gather(*(drain(c) for c in clients), return_exceptions=True)


async def cmd_memory(target: Target, args: argparse.Namespace) -> None:
    for n in args.memory_sessions:
        base_pss, base_rss, procs, _ = server_memory(args)
        clients = await open_sessions(target, n)
        stop = asyncio.Event()
        drainer = asyncio.ensure_future(drain_all(clients, stop))
        await asyncio.sleep(3)  # idle: prompts drawn, only 1 Hz syncs
        pss, rss, procs, each = server_memory(args)
        unique = unique_memory(server_pids(args))
        stop.set()
        for c in clients:
            c.close()
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
        print(
            f"memory: {n} idle sessions, {procs} server processes: total PSS {pss / 1024:.1f} MB "
            f"RSS {rss / 1024:.1f} MB; per session: total/N PSS {pss / n / 1024:.2f} MB "
            f"RSS {rss / n / 1024:.2f} MB; growth/N PSS {(pss - base_pss) / n / 1024:.2f} MB "
            f"RSS {(rss - base_rss) / n / 1024:.2f} MB   (target <= 2 MB PSS)"
        )
        print(
            f"  idle before: PSS {base_pss / 1024:.1f} MB; PSS per process (MB): "
            + " ".join(f"{kb / 1024:.1f}" for kb in each)
        )
        if unique is not None:
            print(
                f"  unique pages of the server's processes (PSS on a machine of its own): "
                f"{unique / 1024:.1f} MB, {unique / n / 1024:.2f} MB per session"
            )
        await asyncio.sleep(2)  # let the server tear the sessions down


async def cmd_concurrent(target: Target, args: argparse.Namespace) -> None:
    n = args.sessions
    clients = await open_sessions(target, n)
    await asyncio.gather(*(c.quiet(0.5) for c in clients))
    keys = int(args.seconds * args.rate)

    async def typist(c: GuacClient, delay: float) -> list[float]:
        await asyncio.sleep(delay)
        return await echo_latencies(c, keys, 1 / args.rate)

    t0 = time.monotonic()
    pids = server_pids(args)
    cpu0 = (proc_cpu(pids), proc_cpu(r"sshd|bash"), time.process_time())
    results = await asyncio.gather(*(typist(c, i / n / args.rate) for i, c in enumerate(clients)))
    elapsed = time.monotonic() - t0
    cpu1 = (proc_cpu(pids), proc_cpu(r"sshd|bash"), time.process_time())
    used = [(b - a) / elapsed * 100 for a, b in zip(cpu0, cpu1, strict=True)]
    for c in clients:
        c.close()
    lat = [v for r in results for v in r]
    print(
        f"concurrent: {n} sessions x {args.rate:g} keys/s for {elapsed:.1f} s: {len(lat)} echoes  "
        f"p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  max {max(lat):.1f} ms   "
        f"(target p99 <= 50)\n  CPU during the run: server {used[0]:.0f}%, "
        f"sshd+bash {used[1]:.0f}%, this client {used[2]:.0f}% (of {os.cpu_count()} cores x 100%)"
    )


def cmd_emulation(args: argparse.Namespace) -> None:
    script = ROOT / "benchmarks" / "bench_terminal.py"
    if script.exists():
        subprocess.run([sys.executable, str(script), "--mb", "5"], check=False)
    asyncio.run(_pipeline(args))


async def _pipeline(args: argparse.Namespace) -> None:
    """Host output through the whole guacr terminal pipeline to wire bytes."""
    from ssh.fakes import FakeConn, FakeUser

    from guacr.frontend import session as session_mod
    from guacr.frontend.session import TerminalConfig, TerminalSession

    listing = subprocess.run(
        ["ls", "-laR", "--color=always", "/usr"], capture_output=True, check=False
    ).stdout.replace(b"\n", b"\r\n")
    data = (listing * (10_000_000 // len(listing) + 1))[:10_000_000]
    for width, height in ((800, 480), (2000, 1000)):
        conn = FakeConn(FakeUser(width=width, height=height))
        s = TerminalSession(conn, TerminalConfig(), send_input=lambda _: None)  # type: ignore[arg-type]
        await s.start()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for i in range(0, len(data), 4096):
            s.write_output(data[i : i + 4096])
            if s.backlog > session_mod.BACKLOG_HIGH:
                while s.backlog > session_mod.BACKLOG_LOW:
                    await asyncio.sleep(0.001)
        await s.drain(60)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        sent = sum(len(b) for b in conn.broadcasts)
        print(
            f"pipeline {s.term.cols}x{s.term.rows}: {len(data) / wall / 1e6:.1f} MB/s wall, "
            f"{len(data) / cpu / 1e6:.1f} MB/s per CPU second, {len(conn.frames)} frames, "
            f"{sent / 1e6:.2f} MB to the client"
        )
        await s.close()


def cmd_render(args: argparse.Namespace) -> None:
    asyncio.run(_render())


async def _render() -> None:
    from ssh.fakes import FakeConn

    from guacr.render.glyphs import get_fontset
    from guacr.render.terminal_view import Cursor, TerminalView

    def row(text: str, cols: int) -> list[tuple[str, int, int, int]]:
        return [((ch if ch != " " else ""), 0x999999, 0, 0) for ch in text[:cols].ljust(cols)]

    lines = subprocess.run(["ls", "-la", "/usr/bin"], capture_output=True, text=True).stdout
    lines_l = lines.splitlines()
    fonts = get_fontset("monospace", 16)
    for strategy in ("glyphs", "images", "auto"):
        v = TerminalView(FakeConn(), fonts, 1024, 768, 96, 0, strategy)  # type: ignore[arg-type]
        cols, rows = v.cols, v.rows
        await v.update([row("", cols)] * rows, Cursor(0, 0))
        results: dict[str, tuple[float, float]] = {}

        async def timed(
            name: str,
            screen: list[list[tuple[str, int, int, int]]],
            cursor: Cursor,
            v: TerminalView = v,
            results: dict[str, tuple[float, float]] = results,
        ) -> None:
            t = time.perf_counter()
            out = await v.update(screen, cursor)
            dt = (time.perf_counter() - t) * 1000
            b, ms = results.get(name, (0.0, 0.0))
            results[name] = (b + len(out), ms + dt)

        prompt = "guest@host:~$ "
        typed = "echo hello world"
        base = [row("", cols) for _ in range(rows)]
        for rep in range(2):  # first pass fills the client's glyph cache
            for i in range(len(typed) + 1):
                base[5] = row(prompt + typed[:i], cols)
                if rep:
                    await timed("keystroke", base, Cursor(5, len(prompt) + i))
                else:
                    await v.update(base, Cursor(5, len(prompt) + i))
        for page in range(4):
            screen = [row(t, cols) for t in lines_l[page * rows : (page + 1) * rows]]
            await timed("full screen", screen, Cursor(rows - 1, 0))
        n = 1
        for _ in range(20):
            n += rows * 7
            v.scroll(0, rows, rows * 7)
            await timed("bulk frame", [row(str(n + i), cols) for i in range(rows)], Cursor(0, 0))
        for f in range(20):
            v.scroll(0, rows, 1)
            screen = [row(t, cols) for t in lines_l[f + 1 : f + 1 + rows]]
            await timed("1-line scroll", screen, Cursor(rows - 1, 0))
        counts = {
            "keystroke": len(typed) + 1,
            "full screen": 4,
            "bulk frame": 20,
            "1-line scroll": 20,
        }
        print(
            f"render {strategy:6} {cols}x{rows}: "
            + "; ".join(
                f"{k} {b / counts[k]:.0f} B {ms / counts[k]:.2f} ms"
                for k, (b, ms) in results.items()
            )
        )


# Local servers --------------------------------------------------------------------------
@contextlib.contextmanager
def local_servers(args: argparse.Namespace) -> Iterator[None]:
    from guacr_process import run_guacr
    from servers import SSHServer

    handlers = "ssh=guacr.handlers.ssh:SSHHandler"
    with (
        SSHServer() as sshd,
        tempfile.TemporaryDirectory() as tmp,
        run_guacr(Path(tmp), workers=2, handlers=handlers) as g,
    ):
        args.guacd = f"127.0.0.1:{g.port}"
        args.server_root_pid = g.proc.pid
        args.ssh_host, args.ssh_port = sshd.host, sshd.port
        args.ssh_user, args.ssh_password = sshd.username, sshd.password
        print(f"local guacr on :{g.port} (workers {g.worker_pids()}), sshd on :{sshd.port}")
        yield
        per_worker: dict[str, int] = {}
        for m in re.finditer(r"guacr\[(\d+)\]: INFO:\s+Creating new client", g.log()):
            per_worker[m.group(1)] = per_worker.get(m.group(1), 0) + 1
        print(f"connections per worker process: {per_worker}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["echo", "bulk", "memory", "concurrent", "emulation",
                                       "render", "all"])  # fmt: skip
    p.add_argument("--local", action="store_true", help="start guacr and sshd locally")
    p.add_argument("--guacd", default="127.0.0.1:4822")
    p.add_argument("--ssh-host", default="127.0.0.1")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-user", default="guest")
    p.add_argument("--ssh-password", default="guest")
    p.add_argument("--keys", type=int, default=400, help="echo: keys to time")
    p.add_argument("--lines", type=int, default=2000000, help="bulk: seq count")
    p.add_argument("--sessions", type=int, default=200, help="concurrent: sessions")
    p.add_argument("--memory-sessions", type=int, nargs="+", default=[50, 200])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=8.0, help="concurrent: keys/s per session")
    p.add_argument("--proc-pattern", default=r"python[\d.]* -m guacr[ .]|(^|/)guacd( |$)",
                   help="memory: regex for server process command lines")  # fmt: skip
    args = p.parse_args()
    if args.command in ("emulation", "render"):
        {"emulation": cmd_emulation, "render": cmd_render}[args.command](args)
        return
    commands = {
        "echo": cmd_echo,
        "bulk": cmd_bulk,
        "memory": cmd_memory,
        "concurrent": cmd_concurrent,
    }
    names = list(commands) if args.command == "all" else [args.command]
    with local_servers(args) if args.local else contextlib.nullcontext():
        target = Target(args)
        for name in names:
            asyncio.run(commands[name](target, args))
    if args.command == "all":
        cmd_emulation(args)
        cmd_render(args)


if __name__ == "__main__":
    main()
