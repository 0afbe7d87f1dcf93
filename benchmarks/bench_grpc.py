"""gRPC control API benchmarks against a guacr instance (or --local: one started here).

    python benchmarks/bench_grpc.py [--local] [--guacd HOST:PORT] [--grpc HOST:PORT]
        [--token T] [--listener-pid PID] [--sessions N] [--ssh-*] COMMAND

COMMAND is one of:

* ``list``  N (--sessions, default 1000) live sessions of --protocol (default the
            test ``echo`` handler, which needs no upstream server), then ListSessions
            p50/p99 for pages of 100 and 1000, and the listener's CPU while polled
            back to back (needs --listener-pid or --local);
* ``echo``  SSH keystroke-echo latency without and with a WatchEvents stream plus a
            10/s ListSessions poll (pages of --poll-page, 100; from a separate
            process), alternated three times in one run; prints the p50 ratio
            with/without (target <= 1.05). With ``all`` the N sessions of ``list``
            stay open meanwhile, so each poll sorts and pages all of them;
* ``all``   both.

``--local`` starts guacr (2 workers, echo and SSH handlers, gRPC with a random token)
and an OpenSSH server from the test helpers. The machine this was written on is
shared and noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import grpc  # noqa: E402
from bench_ssh import GuacClient, Target, echo_latencies, logged_in, pct, proc_cpu  # noqa: E402

from guacr.control.v1 import control_pb2 as pb  # noqa: E402
from guacr.control.v1 import control_pb2_grpc  # noqa: E402

ECHO_HANDLER = "echo=tests.echo_handler:EchoHandler"


# Sessions to list -----------------------------------------------------------------------
async def open_idle(args: argparse.Namespace, n: int) -> list[GuacClient]:
    """``n`` sessions of --protocol with no parameters, kept open."""
    host, _, port = args.guacd.rpartition(":")
    sem = asyncio.Semaphore(32)

    async def one() -> GuacClient:
        async with sem:
            c = await GuacClient.open(host or "127.0.0.1", int(port))
            c.send("select", args.protocol)
            argv = await c.expect("args")
            c.send("size", 1024, 768, 96)
            c.send("audio")
            c.send("video")
            c.send("image", "image/png")
            c.send("connect", "VERSION_1_5_0", *([""] * (len(argv) - 2)))
            await c.expect("ready")
            return c

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def keep_alive(clients: list[GuacClient], stop: asyncio.Event) -> None:
    """Answer and read like live clients (guacr drops clients silent for 15 s)."""

    async def pump(c: GuacClient) -> None:
        while not stop.is_set() and await c.read() is not None:
            pass

    async def nops() -> None:
        while not stop.is_set():
            for c in clients:
                c.send("nop")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 4.0)

    await asyncio.gather(nops(), *(pump(c) for c in clients), return_exceptions=True)


async def time_calls(
    stub: control_pb2_grpc.ControlStub, md: tuple[tuple[str, str], ...], page: int, calls: int
) -> tuple[list[float], int]:
    out: list[float] = []
    got = 0
    for _ in range(calls):
        t0 = time.perf_counter()
        r = await stub.ListSessions(pb.ListSessionsRequest(page_size=page), metadata=md)
        out.append((time.perf_counter() - t0) * 1000)
        got = len(r.sessions)
    return out, got


async def cmd_list(args: argparse.Namespace, clients: list[GuacClient]) -> None:
    md = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    async with grpc.aio.insecure_channel(args.grpc) as ch:
        stub = control_pb2_grpc.ControlStub(ch)
        deadline = time.monotonic() + 30
        total = 0
        while time.monotonic() < deadline:
            r = await stub.ListSessions(pb.ListSessionsRequest(page_size=1), metadata=md)
            total = r.total_size
            if total >= len(clients):
                break
            await asyncio.sleep(0.2)
        print(f"list: {total} live sessions listed by the listener")
        for page in (100, 1000):
            await time_calls(stub, md, page, 20)  # warm up
            cpu0, wall0 = (
                (proc_cpu([args.listener_pid]) if args.listener_pid else 0.0),
                time.monotonic(),
            )
            lat, got = await time_calls(stub, md, page, args.calls)
            wall = time.monotonic() - wall0
            cpu = proc_cpu([args.listener_pid]) - cpu0 if args.listener_pid else float("nan")
            print(
                f"ListSessions page {page:4d} ({got} sessions/answer): {args.calls} calls  "
                f"p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  "
                f"listener CPU {cpu / args.calls * 1000:.2f} ms/call "
                f"({cpu / wall * 100:.0f}% of a core while polled back to back)"
            )
        if args.listener_pid:
            cpu0 = proc_cpu([args.listener_pid])
            await asyncio.sleep(5)
            idle = (proc_cpu([args.listener_pid]) - cpu0) / 5 * 100
            print(f"listener CPU idle with {total} sessions: {idle:.1f}% of a core")


# Echo with and without control traffic ----------------------------------------------------
async def control_load(args: argparse.Namespace, stop: asyncio.Event) -> tuple[int, int]:
    """A WatchEvents stream and a 10/s ListSessions poll until ``stop``."""
    md = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    events = polls = 0
    async with grpc.aio.insecure_channel(args.grpc) as ch:
        stub = control_pb2_grpc.ControlStub(ch)
        call = stub.WatchEvents(pb.WatchEventsRequest(replay_live=True), metadata=md)

        async def watch() -> None:
            nonlocal events
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                async for _ in call:
                    events += 1

        watcher = asyncio.get_running_loop().create_task(watch())
        while not stop.is_set():
            t0 = time.monotonic()
            await stub.ListSessions(pb.ListSessionsRequest(page_size=args.poll_page), metadata=md)
            polls += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 0.1 - (time.monotonic() - t0)))
        call.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return events, polls


async def load_process(args: argparse.Namespace) -> None:
    """``load`` command: control_load until stdin closes (run as a separate process so
    its client-side work does not share the echo client's event loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    print("ready", flush=True)
    events, polls = await control_load(args, stop)
    print(f"{events} {polls}", flush=True)


async def start_load(args: argparse.Namespace) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "load", "--grpc", args.grpc, "--token", args.token,
        "--poll-page", str(args.poll_page),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    await proc.stdout.readline()  # ready
    return proc


async def stop_load(proc: asyncio.subprocess.Process) -> tuple[int, int]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    line = (await proc.stdout.readline()).decode().split()
    await proc.wait()
    return (int(line[0]), int(line[1])) if len(line) == 2 else (0, 0)


async def cmd_echo(args: argparse.Namespace) -> None:
    target = Target(args)
    c = await logged_in(target)
    await echo_latencies(c, 30)  # warm up
    plain: list[float] = []
    loaded: list[float] = []
    for rnd in range(3):
        lat = await echo_latencies(c, args.keys, 0.01)
        plain += lat
        proc = await start_load(args)
        await asyncio.sleep(0.5)  # the stream's replay is over
        lat2 = await echo_latencies(c, args.keys, 0.01)
        loaded += lat2
        events, polls = await stop_load(proc)
        print(
            f"round {rnd + 1}: echo p50 {pct(lat, 0.5):.2f} ms without, {pct(lat2, 0.5):.2f} ms "
            f"with gRPC load ({polls} polls, {events} events)"
        )
    c.close()
    ratio = pct(loaded, 0.5) / pct(plain, 0.5)
    print(
        f"echo without: p50 {pct(plain, 0.5):.2f} ms p99 {pct(plain, 0.99):.2f} ms; "
        f"with WatchEvents + 10/s ListSessions: p50 {pct(loaded, 0.5):.2f} ms "
        f"p99 {pct(loaded, 0.99):.2f} ms; p50 ratio {ratio:.3f} (target <= 1.05)"
    )


# Local servers ----------------------------------------------------------------------------
@contextlib.contextmanager
def local_servers(args: argparse.Namespace) -> Iterator[None]:
    from guacr_process import free_port, run_guacr
    from servers import SSHServer

    args.token = secrets.token_urlsafe(24)
    grpc_port = free_port()
    env = {
        "GUACR_GRPC_TOKEN": args.token,
        "GUACR_GRPC_BIND_PORT": str(grpc_port),
        "GUACR_METRICS_BIND_PORT": "0",
        "GUACR_SYSLOG_ADDRESS": "",
    }
    handlers = ECHO_HANDLER + ",ssh=guacr.handlers.ssh:SSHHandler"
    with (
        SSHServer() as sshd,
        tempfile.TemporaryDirectory() as tmp,
        run_guacr(Path(tmp), workers=2, handlers=handlers, env=env) as g,
    ):
        args.guacd = f"127.0.0.1:{g.port}"
        args.grpc = f"127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 10
        while "gRPC control listening" not in g.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        args.listener_pid = g.listener_pid()
        args.ssh_host, args.ssh_port = sshd.host, sshd.port
        args.ssh_user, args.ssh_password = sshd.username, sshd.password
        print(f"local guacr on :{g.port}, gRPC on :{grpc_port}, listener pid {args.listener_pid}")
        yield


def load_average() -> str:
    """The machine's 1/5/15-minute load (figures from a shared, busy machine mislead)."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(args: argparse.Namespace) -> None:
    print(f"start: {load_average()}")
    clients: list[GuacClient] = []
    stop = asyncio.Event()
    pumping = None
    try:
        if args.command in ("list", "all"):
            t0 = time.monotonic()
            clients = await open_idle(args, args.sessions)
            print(
                f"opened {len(clients)} {args.protocol} sessions in {time.monotonic() - t0:.1f} s"
            )
            pumping = asyncio.get_running_loop().create_task(keep_alive(clients, stop))
            await cmd_list(args, clients)
        if args.command in ("echo", "all"):
            await cmd_echo(args)
    finally:
        stop.set()
        for c in clients:
            c.close()
        if pumping is not None:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping
        print(f"end: {load_average()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["list", "echo", "all", "load"])
    p.add_argument("--local", action="store_true", help="start guacr and sshd locally")
    p.add_argument("--guacd", default="127.0.0.1:4822")
    p.add_argument("--grpc", default="127.0.0.1:50051")
    p.add_argument("--token", default=os.environ.get("GUACR_GRPC_TOKEN", ""))
    p.add_argument("--listener-pid", type=int, default=0)
    p.add_argument("--protocol", default="echo", help="list: protocol of the idle sessions")
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--calls", type=int, default=200, help="list: timed calls per page size")
    p.add_argument("--keys", type=int, default=200, help="echo: keys per block")
    p.add_argument("--poll-page", type=int, default=100, help="echo: page size polled")
    p.add_argument("--ssh-host", default="127.0.0.1")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-user", default="guest")
    p.add_argument("--ssh-password", default="guest")
    args = p.parse_args()
    if args.command == "load":  # internal: the control traffic of ``echo``
        asyncio.run(load_process(args))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # N sockets here and in guacr
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with local_servers(args) if args.local else contextlib.nullcontext():
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
