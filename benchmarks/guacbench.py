"""Shared pieces of the terminal benchmarks: a Guacamole client, targets, process CPU.

``bench_ssh.py`` and ``bench_load.py`` both drive a server as a browser would (the guacd
handshake, ``sync`` answered) and both measure the server's processes from /proc, so a
guacr started here, a guacd started here or any server found by command line can be
compared with the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from guacr.protocol.instruction import encode  # noqa: E402
from guacr.protocol.parser import Parser  # noqa: E402

DRAW_OPS = frozenset({"img", "copy", "rect", "cfill", "move", "shade", "size", "transfer"})
KEY_X, KEY_BACKSPACE, KEY_RETURN = ord("x"), 0xFF08, 0xFF0D
# Default regex for server process command lines when the server was not started here.
SERVER_PATTERN = r"python[\d.]* -m guacr[ .]|(^|/)guacd( |$)"


# Client ------------------------------------------------------------------------------
class GuacClient:
    """A minimal asyncio Guacamole client that answers ``sync`` like a browser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser()
        self.queue: list[tuple[str, ...]] = []
        self.bytes_in = 0
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> GuacClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        return cls(reader, writer)

    def send(self, opcode: str, *args: object) -> None:
        self.writer.write(encode(opcode, *args))

    async def read(self) -> tuple[str, ...] | None:
        while not self.queue:
            data = await self.reader.read(1 << 16)
            if not data:
                self.closed = True
                return None
            self.bytes_in += len(data)
            self.queue.extend(self.parser.receive_data(data))
        ins = self.queue.pop(0)
        if ins[0] == "sync":
            self.send("sync", ins[1])
        return ins

    async def handshake(self, values: dict[str, str], size: tuple[int, int, int]) -> str:
        self.send("select", "ssh")
        args = await self.expect("args")
        self.send("size", *size)
        self.send("audio")
        self.send("video")
        self.send("image", "image/png", "image/jpeg", "image/webp")
        self.send("timezone", "UTC")
        self.send("connect", "VERSION_1_5_0", *(values.get(n, "") for n in args[2:]))
        return (await self.expect("ready"))[1]

    async def expect(self, opcode: str) -> tuple[str, ...]:
        while True:
            ins = await self.read()
            if ins is None:
                raise EOFError(f"connection closed waiting for {opcode}")
            if ins[0] == "error":
                raise RuntimeError(f"server error: {ins[1:]}")
            if ins[0] == opcode:
                return ins

    async def frame(self) -> None:
        """Wait for the end (``sync``) of a frame that drew something."""
        drew = False
        while True:
            ins = await self.read()
            if ins is None:
                raise EOFError("connection closed")
            if ins[0] == "error":
                raise RuntimeError(f"server error: {ins[1:]}")
            if ins[0] in DRAW_OPS:
                drew = True
            elif ins[0] == "sync" and drew:
                return

    async def quiet(self, seconds: float = 0.5) -> None:
        """Read until nothing but idle syncs arrived for ``seconds``."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while loop.time() - last < seconds:
            try:
                ins = await asyncio.wait_for(self.read(), seconds)
            except TimeoutError:
                return
            if ins is None:
                return
            if ins[0] in DRAW_OPS:
                last = loop.time()

    def key(self, keysym: int) -> None:
        self.send("key", keysym, 1)
        self.send("key", keysym, 0)

    def type(self, text: str) -> None:
        for ch in text:
            self.key(KEY_RETURN if ch == "\n" else ord(ch))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("disconnect")
            self.writer.close()


class Target:
    """A guacd-compatible server (``host:port``) and the SSH server it should open."""

    def __init__(self, args: argparse.Namespace) -> None:
        host, _, port = args.guacd.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.values = {
            "hostname": args.ssh_host,
            "port": str(args.ssh_port),
            "username": args.ssh_user,
            "password": args.ssh_password,
        }

    async def session(self, size: tuple[int, int, int] = (1024, 768, 96)) -> GuacClient:
        c = await GuacClient.open(self.host, self.port)
        await c.handshake(self.values, size)
        return c


async def open_sessions(target: Target, n: int, parallel: int = 16) -> list[GuacClient]:
    """``n`` SSH sessions, each past its first drawn frame (the prompt)."""
    sem = asyncio.Semaphore(parallel)

    async def one() -> GuacClient:
        async with sem:
            c = await target.session()
            await c.frame()
            return c

    return list(await asyncio.gather(*(one() for _ in range(n))))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# Processes ------------------------------------------------------------------------------
def _parents() -> dict[int, int]:
    """pid -> ppid of every process."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    parents = _parents()
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sorted(pid for pid in tree if pid in parents)


def matching_pids(pattern: str) -> list[int]:
    """Processes whose command line matches ``pattern`` (never a benchmark itself)."""
    me = os.getpid()
    rx = re.compile(pattern)
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            cmd = raw.replace(b"\0", b" ").decode()
            if rx.search(cmd) and "benchmarks/bench_" not in cmd and "bench_ssh" not in cmd:
                out.append(int(entry.name))
    return sorted(out)


def server_pids(args: argparse.Namespace) -> list[int]:
    """The server's processes: the tree of ``args.server_root_pid`` when this benchmark
    started the server (other instances may run on a shared machine), else command lines
    matching ``args.proc_pattern``."""
    root = getattr(args, "server_root_pid", None)
    if root is None:
        return matching_pids(args.proc_pattern)
    return tree_pids(root)


def proc_cpu(pids: list[int] | str) -> float:
    """CPU seconds used so far by ``pids`` (or processes whose command line matches)."""
    if isinstance(pids, str):
        pids = matching_pids(pids)
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """The 1/5/15-minute load averages, as /proc/loadavg prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def sched_times(pids: list[int]) -> tuple[float, float]:
    """(seconds run on a CPU, seconds spent runnable but waiting for one) summed over
    every thread of ``pids`` (/proc/PID/task/TID/schedstat, nanoseconds, exact where
    /proc/PID/stat counts whole clock ticks). Waiting is what CPU contention costs."""
    ran = waited = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError):
                    fields = Path(f"{task.path}/schedstat").read_text().split()
                    ran += int(fields[0])
                    waited += int(fields[1])
    return ran / 1e9, waited / 1e9
