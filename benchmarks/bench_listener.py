"""Listener benchmarks against any guacd-compatible server (guacr or a real guacd).

    python benchmarks/bench_listener.py [--local] [--guacd HOST:PORT] [--pid PID] COMMAND

COMMAND is one of:

* ``handshakes``  ``select`` -> ``args`` round trips per second: a client connects,
                  selects --protocol, waits for ``args`` and disconnects; --concurrency
                  clients at once, --count in all. This is the path every new
                  connection takes through the listener (intake, routing, hand-off)
                  and the start of a worker's handshake.
* ``memory``      the listener's memory (RSS and private bytes from
                  ``/proc/PID/smaps_rollup``) idle, then after --count connections
                  (--concurrency at once) each sending a --select-kib KiB ``select``
                  before the server closes them, then after 2 s idle. guacd's and
                  guacr's limit is one 32 KiB instruction, so every one of these gets
                  ``error`` + close; what matters is what the listener keeps.
* ``all``         both.

``--local`` starts guacr (2 workers, the test-only ``echo`` handler) from the test
helpers; otherwise point --guacd at a running server (and --pid at the process whose
memory to read for ``memory``; guacr's listener logs its pid as ``Listener running``).
The machine this was written on is shared and noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from guacr.protocol.instruction import encode  # noqa: E402
from guacr.protocol.parser import Parser  # noqa: E402


def memory_of(pid: int) -> tuple[float, float]:
    """(RSS MB, private MB) of ``pid``."""
    rss = private = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == "Rss":
                rss = int(rest.split()[0])
            elif name in ("Private_Clean", "Private_Dirty"):
                private += int(rest.split()[0])
    return rss / 1024, private / 1024


async def one_handshake(host: str, port: int, protocol: str) -> bool:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode("select", protocol))
        parser = Parser()
        while True:
            data = await reader.read(65536)
            if not data:
                return False
            for ins in parser.receive_data(data):
                if ins[0] == "args":
                    return True
                if ins[0] == "error":
                    return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def cmd_handshakes(args: argparse.Namespace) -> None:
    host, port = args.host, args.port
    left = args.count
    failures = 0

    async def runner() -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            try:
                ok = await asyncio.wait_for(one_handshake(host, port, args.protocol), 15)
            except (OSError, TimeoutError):
                ok = False
            failures += not ok

    await one_handshake(host, port, args.protocol)  # warm
    start = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - start
    print(
        f"handshakes: {args.count} select->args with {args.concurrency} at once in "
        f"{elapsed:.2f} s = {args.count / elapsed:.0f}/s ({failures} failed)"
    )


async def big_select(host: str, port: int, size: int, hold: asyncio.Event) -> str:
    """Send a ``select`` of ``size`` bytes in elements of 8000 characters (each one
    legal, so a server must buffer until the instruction limit); returns what the
    server answered: its status code, ``closed``, ``reset`` or ``timeout``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        elements, left = [], size - 10
        while left > 0:
            n = min(8000, left - 6)
            elements.append(f"{n}." + "x" * n)
            left -= n + 6
        data = ("6.select," + ",".join(elements) + ";").encode()
        with contextlib.suppress(OSError):
            writer.write(data)
            await writer.drain()
        await hold.wait()
        try:
            reply = await asyncio.wait_for(reader.read(4096), 20)
        except TimeoutError:
            return "timeout"
        except OSError:
            return "reset"
        parsed = Parser().receive_data(reply) if reply else []
        if parsed and parsed[0][0] == "error":
            return parsed[0][2]
        return "closed" if not reply else "other"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def cmd_memory(args: argparse.Namespace) -> None:
    if not args.pid:
        print("memory: --pid (the listener's) is needed without --local")
        return
    before = memory_of(args.pid)
    print(f"memory: listener idle: RSS {before[0]:.1f} MB, private {before[1]:.1f} MB")
    size = args.select_kib * 1024
    replies: dict[str, int] = {}
    peak = before
    for start in range(0, args.count, args.concurrency):
        n = min(args.concurrency, args.count - start)
        hold = asyncio.Event()
        tasks = [
            asyncio.ensure_future(big_select(args.host, args.port, size, hold)) for _ in range(n)
        ]
        await asyncio.sleep(1.0)  # all sent: what the listener buffers now is the peak
        now = memory_of(args.pid)
        peak = max(peak, now)
        hold.set()
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            key = r if isinstance(r, str) else type(r).__name__
            replies[key] = replies.get(key, 0) + 1
    after = memory_of(args.pid)
    await asyncio.sleep(2.0)
    idle = memory_of(args.pid)
    print(
        f"memory: {args.count} connections x {args.select_kib} KiB select, "
        f"{args.concurrency} at once; replies {replies}"
    )
    print(f"memory: listener at peak:      RSS {peak[0]:.1f} MB, private {peak[1]:.1f} MB")
    print(f"memory: listener right after:  RSS {after[0]:.1f} MB, private {after[1]:.1f} MB")
    print(
        f"memory: listener 2 s later:    RSS {idle[0]:.1f} MB, private {idle[1]:.1f} MB "
        f"(growth {idle[1] - before[1]:+.1f} MB private)"
    )


@contextlib.contextmanager
def local_guacr(args: argparse.Namespace) -> Iterator[None]:
    from guacr_process import run_guacr

    with tempfile.TemporaryDirectory() as tmp, run_guacr(Path(tmp), workers=2) as g:
        args.host, args.port = "127.0.0.1", g.port
        args.pid = g.listener_pid()
        print(f"local guacr on :{g.port} (listener {args.pid}, workers {g.worker_pids()})")
        yield


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["handshakes", "memory", "all"])
    p.add_argument("--local", action="store_true", help="start guacr locally")
    p.add_argument("--guacd", default="127.0.0.1:4822")
    p.add_argument("--pid", type=int, default=0, help="memory: the process to measure")
    p.add_argument("--protocol", default="", help="handshakes: protocol (default echo/ssh)")
    p.add_argument("--count", type=int, default=0, help="connections (default 3000/1500)")
    p.add_argument("--concurrency", type=int, default=0, help="at once (default 50/500)")
    p.add_argument("--select-kib", type=int, default=40, help="memory: size of each select")
    args = p.parse_args()
    host, _, port = args.guacd.rpartition(":")
    args.host, args.port = host or "127.0.0.1", int(port)
    names = ["handshakes", "memory"] if args.command == "all" else [args.command]
    with local_guacr(args) if args.local else contextlib.nullcontext():
        args.protocol = args.protocol or ("echo" if args.local else "ssh")
        count, concurrency = args.count, args.concurrency
        for name in names:
            args.count = count or (3000 if name == "handshakes" else 1500)
            args.concurrency = concurrency or (50 if name == "handshakes" else 500)
            asyncio.run({"handshakes": cmd_handshakes, "memory": cmd_memory}[name](args))


if __name__ == "__main__":
    main()
