"""Typing latency under load: many SSH sessions typing at once, guacr against guacd.

    python benchmarks/bench_load.py [--guacd-cmd CMD | --guacd HOST:PORT] [--rounds 3]
        [--busy 10] [--target HOST:PORT] [--sessions 200] [--seconds 10] ...

One asyncio client process opens --sessions SSH sessions (password login) through each
server to the same sshd. After every session has drawn its prompt and typed a warm-up
``x`` + BackSpace, each sends one key press + release every --interval seconds (``x`` and
BackSpace alternately, so the line stays short) for --seconds, staggered evenly, and
answers every ``sync`` at once as a browser does. A key's latency runs from writing its
press to the first drawing instruction (img, copy, rect, cfill, blob) that arrives on
its session afterwards; a key still without one after --timeout seconds counts as
unanswered. Printed per run: p50/p99/max, unanswered keys, the server's CPU seconds per
1,000 echoed keys (and sshd + shells', and this client's), per-process CPU of a guacr,
the load average before and after, this client's own event-loop lag (if it lags, the
figures measure the client, not the server), and how long the server, sshd + shells and
this client were runnable but waiting for a CPU (/proc schedstat: the cost of contention).
(Only an ``img`` stream's ``blob`` counts; a session's reading starts with its handshake,
since guacd drops a client whose syncs go unanswered for 15 s.)

--trace FILE appends every timed key's (sent, answered) perf_counter times per session
and connection id, to join with timestamps taken inside a server; --guacr-root DIR runs
the local guacr from another source tree (e.g. an instrumented scratch copy);
--guacd-name NAME labels the --guacd-cmd server when it is another build to compare. To
compare two guacr trees, run one with --guacr-root and the other as
``--guacd-cmd "env -C OTHER_TREE python -m guacr"``: ``-m`` imports guacr from the
working directory first, so ``env PYTHONPATH=OTHER_TREE`` alone runs this tree twice.

Servers: a guacr with --workers workers is started here unless --target HOST:PORT aims
at a running server instead (its CPU is then found by --proc-pattern). --guacd-cmd CMD
starts a guacd (``-b 127.0.0.1 -l PORT -f`` are appended; ``DIR/lib`` goes on
LD_LIBRARY_PATH for ``DIR/sbin/guacd``), --guacd HOST:PORT uses a running one: the
servers then take turns, --rounds times each, in one run, and a table of the rounds and
the guacr/guacd ratios closes the output. Servers started here get a session of their
own (setsid, as a daemon has; --same-session keeps them in this one), which decides their
CPU share when the kernel groups by session (``sched_autogroup_enabled``, printed).

--together runs the servers' rounds at the same time instead of in turn (--sessions each,
phases started together): both then see the same machine load, which makes an A/B of
two builds (``--guacd-cmd`` running another guacr tree) meaningful on a busy machine;
for the guacr-vs-guacd table take turns (the default), as the issue asks.

--busy N adds the busy-neighbour case: in each round the typing phase runs twice on the
same sessions, first with N sessions idle (calm), then with those N running
``cat`` of a --busy-mb MB file (busy); the other sessions type in both. The ratio of the
busy to the calm p99 is printed. --cycles N alternates the two phases N times per round
(Ctrl-C ends each busy phase and the next calm one starts once the output has stopped)
and pools each kind per round: the machine's speed drifts by tens of percent within
minutes, which short alternations cancel out of the ratio. But each busy phase begins
with the commands' start, which weighs more in short phases: with --seconds 5 the ratio
read about twice the 10-s one. The busy command line is typed a second before the busy
phase and only its Return within it, as a user types a command: typed within the
phase, N x 50 keystrokes arrived at once with it.

The sshd is a throw-away OpenSSH from the test helpers (``tests/servers``, MaxStartups
raised) unless --ssh-host/--ssh-port/--ssh-user/--ssh-password name another (then
--busy needs --busy-command). 200 sessions load a 2-core machine heavily: compare
figures from one run (the ratios), and mind the printed load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from guacbench import (
    KEY_BACKSPACE,
    KEY_X,
    ROOT,
    SERVER_PATTERN,
    GuacClient,
    Target,
    loadavg,
    matching_pids,
    pct,
    proc_cpu,
    sched_times,
    tree_pids,
)

# A key counts as answered by the first of these on its session (issue 16).
ANSWER_OPS = frozenset({"img", "copy", "rect", "cfill", "blob"})
GUACR_HANDLERS = "ssh=guacr.handlers.ssh:SSHHandler"


# Servers --------------------------------------------------------------------------------
@dataclass
class Server:
    """A guacd-compatible server under test and how to find its processes."""

    name: str
    address: str
    root_pid: int | None = None  # started here: its process tree is the server
    pattern: str = SERVER_PATTERN  # otherwise: command lines matching this
    log_path: Path | None = None

    def pids(self) -> list[int]:
        if self.root_pid is not None:
            return tree_pids(self.root_pid)
        return matching_pids(self.pattern)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def _free_port() -> int:
    from servers import free_port

    return free_port()


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    from servers import wait_port

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(TimeoutError):
            wait_port("127.0.0.1", port, timeout=0.5)
            return
    raise RuntimeError(f"{what} did not listen on {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (guacr's main process stops its children), then kill its tree."""
    from servers import kill_tree

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
    kill_tree([proc.pid])
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def start_guacr(tmp: Path, args: argparse.Namespace) -> Iterator[Server]:
    port = _free_port()
    log = tmp / "guacr.log"
    (tmp / "none.conf").write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(args.guacr_root or ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["GUACR_HANDLERS"] = GUACR_HANDLERS
    cmd = [sys.executable, "-m", "guacr", "-f", "-b", "127.0.0.1", "-l", str(port)]
    cmd += ["--workers", str(args.workers), "--config", str(tmp / "none.conf")]
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=args.guacr_root,  # ``-m`` puts the working directory first on sys.path
            start_new_session=not args.same_session,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("ready (pid") < args.workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"guacr did not become ready:\n{log.read_text()}")
            time.sleep(0.05)
        yield Server("guacr", f"127.0.0.1:{port}", root_pid=proc.pid, log_path=log)
    finally:
        _stop(proc)


@contextlib.contextmanager
def start_guacd(tmp: Path, args: argparse.Namespace) -> Iterator[Server]:
    port = _free_port()
    log = tmp / "guacd.log"
    cmd = [*shlex.split(args.guacd_cmd), "-b", "127.0.0.1", "-l", str(port), "-f"]
    env = dict(os.environ)
    lib = Path(cmd[0]).resolve().parent.parent / "lib"
    if lib.is_dir() and any(lib.glob("libguac.so*")):
        env["LD_LIBRARY_PATH"] = str(lib) + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
            start_new_session=not args.same_session,
        )  # fmt: skip
    try:
        _wait_port(port, proc, "guacd", log)
        yield Server(args.guacd_name, f"127.0.0.1:{port}", root_pid=proc.pid, log_path=log)
    finally:
        _stop(proc)


@contextlib.contextmanager
def start_sshd(args: argparse.Namespace) -> Iterator[int | None]:
    """The local sshd (its PID) unless --ssh-host names another (None)."""
    if args.ssh_host:
        yield None
        return
    from servers import SSHServer

    with SSHServer() as sshd:
        args.ssh_host, args.ssh_port = sshd.host, sshd.port
        args.ssh_user, args.ssh_password = sshd.username, sshd.password
        yield sshd.pid


def make_busy_file(tmp: Path, mb: int) -> Path:
    """A world-readable text file of ``mb`` MB of 79-column lines, for ``cat``."""
    d = tmp / "busy"
    d.mkdir()
    tmp.chmod(0o755)
    d.chmod(0o755)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]
    lines = []
    for i in range(10_000):
        text = " ".join(words[(i + k) % len(words)] for k in range(12))
        lines.append(f"{i:07d} {text}"[:79].ljust(79))
    block = ("\n".join(lines) + "\n").encode()
    path = d / "busy.txt"
    with open(path, "wb") as f:
        for _ in range(mb * 1_000_000 // len(block) + 1):
            f.write(block)
    path.chmod(0o644)
    return path


# Sessions ---------------------------------------------------------------------------------
@dataclass
class Session:
    """One client session: its keys in flight and the latencies measured so far."""

    c: GuacClient
    pending: list[float] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    late: int = 0  # answered, but after --timeout
    sent: int = 0
    last_draw: float = 0.0
    drew: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Future[None] | None = None
    images: set[str] = field(default_factory=set)  # open img streams
    id: str = ""  # the connection id from ``ready``
    ended: str = "EOF"  # why reading stopped
    trace: list[tuple[float, float]] | None = None  # (sent, answered) per key, --trace


def _received(s: Session, ins: tuple[str, ...], now: float, timeout: float) -> None:
    op = ins[0]
    if op == "sync":
        s.c.send("sync", ins[1])
        return
    if op == "img":
        s.images.add(ins[1])
    elif op == "end":
        s.images.discard(ins[1])
    elif op == "blob" and ins[1] not in s.images:
        return  # a blob of another stream (argv, clipboard): not drawing
    if op in ANSWER_OPS:
        s.last_draw = now
        s.drew.set()
        if s.pending:
            for t in s.pending:
                if now - t > timeout:
                    s.late += 1
                else:
                    s.lat.append((now - t) * 1000)
                if s.trace is not None:
                    s.trace.append((t, now))
            s.pending.clear()
    elif op == "error":
        print(f"    server error on a session: {ins[1:]}")


async def listen(s: Session, timeout: float) -> None:
    """Read one session from its handshake on: answer ``sync`` at once (a server drops a
    client that leaves syncs unanswered for 15 s), and let a drawing instruction answer
    every key in flight. Arrival is stamped when the bytes are read, before parsing
    (perf_counter: uvloop's clock has only millisecond steps)."""
    c = s.c
    backlog, c.queue = c.queue, []
    for ins in backlog:  # read with ``ready``
        _received(s, ins, time.perf_counter(), timeout)
    try:
        while True:
            data = await c.reader.read(1 << 16)
            if not data:
                return
            now = time.perf_counter()
            c.bytes_in += len(data)
            for ins in c.parser.receive_data(data):
                _received(s, ins, now, timeout)
    except (ConnectionError, OSError) as exc:
        s.ended = repr(exc)
    except Exception as exc:  # e.g. the parser refusing what the server sent
        s.ended = repr(exc)
    finally:
        c.closed = True
        s.drew.set()


async def settle(s: Session, quiet: float = 0.3) -> None:
    """Wait until the session has drawn nothing for ``quiet`` seconds."""
    while not s.c.closed:
        gap = time.perf_counter() - s.last_draw
        if gap >= quiet:
            return
        await asyncio.sleep(quiet - gap)


async def open_session(target: Target, timeout: float, sem: asyncio.Semaphore) -> Session:
    """Handshake, then read from the start; return once the shell echoed an ``x`` and a
    BackSpace (glyphs reach the client's cache) and drawing stopped. A key typed before
    the shell reads may be lost (guacr drops it, and a redraw of the screen may pass for
    its echo): then BackSpace draws nothing and the pair is typed again. A line may keep
    a stray ``x``, which does not matter."""
    async with sem:
        c = await GuacClient.open(target.host, target.port)
        s = Session(c)
        try:
            s.id = await c.handshake(target.values, (1024, 768, 96))
            s.task = asyncio.ensure_future(listen(s, timeout))
            await asyncio.wait_for(s.drew.wait(), 30)
        except BaseException:
            await _discard(s)
            raise
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and not c.closed:
        echoed = 0
        for key in (KEY_X, KEY_BACKSPACE):
            await settle(s)
            s.drew.clear()
            c.key(key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(s.drew.wait(), 3)
                echoed += 1
        if echoed == 2:
            await settle(s)
            return s
    await _discard(s)
    raise EOFError(f"closed ({s.ended})" if c.closed else "no echo of x + BackSpace in 60 s")


async def _discard(s: Session) -> None:
    s.c.close()
    if s.task is not None:
        s.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await s.task


async def typist(s: Session, start: float, keys: int, interval: float) -> None:
    """Press and release a key every ``interval`` s from ``start`` (perf_counter), on a fixed
    schedule so that a late client does not type slower."""
    for i in range(keys):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if s.c.closed:
            s.sent += 1  # the server closed it: the key counts as unanswered
            s.late += 1
            continue
        s.pending.append(time.perf_counter())
        try:
            s.c.key(KEY_X if i % 2 == 0 else KEY_BACKSPACE)
        except (RuntimeError, ConnectionError):  # closed under us (uvloop: RuntimeError)
            s.c.closed = True
        s.sent += 1


async def loop_lag(stop: asyncio.Event, out: list[float], period: float = 0.005) -> None:
    """This client's own event-loop lag: how late a ``period`` sleep wakes up (ms)."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(period)
        out.append((time.perf_counter() - t - period) * 1000)


@dataclass
class Phase:
    """The figures of one typing phase on one server."""

    server: str
    label: str
    lat: list[float]
    sent: int
    unanswered: int
    wall: float
    cpu: float
    cpu_ssh: float
    cpu_client: float
    per_proc: list[tuple[int, float]]
    load_before: str
    load_after: str
    client_lag: list[float]
    timeout: float
    waits: tuple[float, float, float] = (0.0, 0.0, 0.0)  # server, sshd+shells, client

    def line(self) -> str:
        lat = self.lat or [float("nan")]
        echoed = len(self.lat)
        per_k = self.cpu / echoed * 1000 if echoed else float("nan")
        lag = self.client_lag or [0.0]
        out = (
            f"{self.server:6} {self.label:5}: {self.sent} keys, {echoed} echoed  "
            f"p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  max {max(lat):.1f} ms  "
            f"unanswered within {self.timeout:g} s: {self.unanswered}\n"
            f"    CPU over {self.wall:.1f} s: server {self.cpu:.1f} s = {per_k:.2f} s per 1,000 "
            f"echoed keys ({self.cpu / self.wall * 100:.0f}% of a core); sshd+shells "
            f"{self.cpu_ssh / self.wall * 100:.0f}%, this client "
            f"{self.cpu_client / self.wall * 100:.0f}%\n"
            f"    load average {self.load_before} -> {self.load_after}; client loop lag "
            f"p99 {pct(lag, 0.99):.1f} ms max {max(lag):.1f} ms\n"
            f"    waited for a CPU (runnable, not running): server {self.waits[0]:.1f} s "
            f"({self.waits[0] / max(1, echoed) * 1000:.2f} ms per echoed key), sshd+shells "
            f"{self.waits[1]:.1f} s, this client {self.waits[2]:.1f} s"
        )
        if 1 < len(self.per_proc) <= 8:
            out += "\n    per process CPU s: " + ", ".join(
                f"{pid}: {cpu:.1f}" for pid, cpu in self.per_proc
            )
        return out


def _ssh_cpu(ssh_pids: list[int]) -> float:
    """CPU seconds of the sshd and its sessions (schedstat: exact, where /proc/PID/stat
    counts clock ticks and misses most of the short bursts an echo costs)."""
    if not ssh_pids:
        return proc_cpu(r"sshd|bash")
    return sched_times(ssh_pids)[0]


def _cpu_each(pids: list[int]) -> dict[int, float]:
    return {pid: proc_cpu([pid]) for pid in pids}


async def run_phase(
    server: Server,
    label: str,
    typing: list[Session],
    args: argparse.Namespace,
    sshd_pid: int | None,
    before_start: list[GuacClient] | None = None,
) -> Phase:
    for s in typing:
        s.pending.clear()
        s.lat = []
        s.late = s.sent = 0
        s.trace = [] if args.trace else None
    keys = round(args.seconds / args.interval)
    keys += keys % 2  # x, BackSpace pairs: each session's line ends as it began
    lag: list[float] = []
    stop = asyncio.Event()
    lagger = asyncio.ensure_future(loop_lag(stop, lag))
    load_before = loadavg()
    pids = server.pids()
    ssh_pids = tree_pids(sshd_pid) if sshd_pid else []
    each0 = _cpu_each(pids)
    cpu0 = (_ssh_cpu(ssh_pids), time.process_time())
    wait0 = [sched_times(x)[1] for x in (pids, ssh_pids, [os.getpid()])]
    t0 = time.perf_counter()
    for c in before_start or []:
        c.type("\n")  # the command line was typed before the phase (see run_round)
    start = t0 + 0.05
    n = len(typing)
    gap = args.interval / max(1, n)
    await asyncio.gather(
        *(typist(s, start + i * gap, keys, args.interval) for i, s in enumerate(typing))
    )
    # Wait for the last answers (at most --timeout).
    deadline = time.perf_counter() + args.timeout
    while any(s.pending for s in typing) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - t0
    pids = server.pids()
    each1 = _cpu_each(pids)
    ssh_pids = tree_pids(sshd_pid) if sshd_pid else []
    cpu1 = (_ssh_cpu(ssh_pids), time.process_time())
    wait1 = [sched_times(x)[1] for x in (pids, ssh_pids, [os.getpid()])]
    load_after = loadavg()
    stop.set()
    await lagger
    per_proc = sorted(
        ((pid, each1[pid] - each0.get(pid, 0.0)) for pid in each1), key=lambda x: -x[1]
    )
    unanswered = sum(len(s.pending) + s.late for s in typing)
    closed = Counter(s.ended for s in typing if s.c.closed)
    if closed:
        print(f"    {sum(closed.values())} sessions closed during the phase: {dict(closed)}")
    if args.trace:
        with open(args.trace, "a") as f:
            for s in typing:
                rec = {"server": server.name, "phase": label, "id": s.id, "keys": s.trace}
                f.write(json.dumps(rec) + "\n")
    return Phase(
        server=server.name,
        label=label,
        lat=[v for s in typing for v in s.lat],
        sent=sum(s.sent for s in typing),
        unanswered=unanswered,
        wall=wall,
        cpu=sum(cpu for _, cpu in per_proc),
        cpu_ssh=cpu1[0] - cpu0[0],
        cpu_client=cpu1[1] - cpu0[1],
        per_proc=per_proc,
        load_before=load_before,
        load_after=load_after,
        client_lag=lag,
        timeout=args.timeout,
        waits=(wait1[0] - wait0[0], wait1[1] - wait0[1], wait1[2] - wait0[2]),
    )


KEY_CONTROL_L, KEY_C = 0xFFE3, ord("c")


async def interrupt(busy: list[Session], timeout: float = 30.0) -> None:
    """Ctrl-C in every busy session, then wait until each has stopped drawing (--cycles:
    the next calm phase starts without a neighbour's output in flight)."""
    for s in busy:
        s.c.send("key", KEY_CONTROL_L, 1)
        s.c.key(KEY_C)
        s.c.send("key", KEY_CONTROL_L, 0)
    await asyncio.sleep(0.1)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(settle(s, 0.5) for s in busy)), timeout)


def merge(phases: list[Phase]) -> Phase:
    """The phases of one label in one round (--cycles) as one."""
    if len(phases) == 1:
        return phases[0]
    per_proc: dict[int, float] = {}
    for p in phases:
        for pid, cpu in p.per_proc:
            per_proc[pid] = per_proc.get(pid, 0.0) + cpu
    return Phase(
        server=phases[0].server,
        label=phases[0].label,
        lat=[v for p in phases for v in p.lat],
        sent=sum(p.sent for p in phases),
        unanswered=sum(p.unanswered for p in phases),
        wall=sum(p.wall for p in phases),
        cpu=sum(p.cpu for p in phases),
        cpu_ssh=sum(p.cpu_ssh for p in phases),
        cpu_client=sum(p.cpu_client for p in phases),
        per_proc=sorted(per_proc.items(), key=lambda x: -x[1]),
        load_before=phases[0].load_before,
        load_after=phases[-1].load_after,
        client_lag=[v for p in phases for v in p.client_lag],
        timeout=phases[0].timeout,
        waits=(
            sum(p.waits[0] for p in phases),
            sum(p.waits[1] for p in phases),
            sum(p.waits[2] for p in phases),
        ),
    )


async def teardown_wait(sshd_pid: int | None, timeout: float = 60.0) -> None:
    """Wait until the sshd has no session processes left (the next round starts clean)."""
    if not sshd_pid:
        await asyncio.sleep(3)
        return
    deadline = time.monotonic() + timeout
    while len(tree_pids(sshd_pid)) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


def produced(sshd_pid: int | None, command: str) -> float | None:
    """MB written so far by the busy commands still running under the sshd (their
    /proc/PID/io ``wchar``): how far the host got ahead of what the client was shown,
    i.e. how much the server let it produce (None: not readable here)."""
    if not sshd_pid:
        return None
    name = shlex.split(command)[0].rsplit("/", 1)[-1][:15]
    total, seen = 0, False
    for pid in tree_pids(sshd_pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if Path(f"/proc/{pid}/comm").read_text().strip() != name:
                continue
            io = Path(f"/proc/{pid}/io").read_text().split("wchar:")[1].split()[0]
            total += int(io)
            seen = True
    return total / 1e6 if seen else None


def autogroups(pids: list[int]) -> str:
    """How the kernel groups ``pids`` for CPU sharing (/proc/PID/autogroup)."""
    groups: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            g = Path(f"/proc/{pid}/autogroup").read_text().split()[0]
            groups[g] = groups.get(g, 0) + 1
    return ", ".join(f"{g} x{n}" for g, n in sorted(groups.items(), key=lambda x: -x[1])[:4]) + (
        f" ... ({len(groups)} groups)" if len(groups) > 4 else ""
    )


async def run_round(
    server: Server,
    args: argparse.Namespace,
    sshd_pid: int | None,
    rnd: int,
    barrier: asyncio.Barrier | None = None,
) -> list[Phase]:
    target_args = argparse.Namespace(**vars(args))
    target_args.guacd = server.address
    target = Target(target_args)
    t = time.monotonic()
    sem = asyncio.Semaphore(16)
    opened = await asyncio.gather(
        *(open_session(target, args.timeout, sem) for _ in range(args.sessions)),
        return_exceptions=True,
    )
    sessions = [s for s in opened if isinstance(s, Session)]
    failed = [repr(e) for e in opened if not isinstance(e, Session)]
    if failed:
        reasons = ", ".join(f"{n} x {r}" for r, n in Counter(failed).most_common(3))
        tail = "\n      ".join(server.log().splitlines()[-8:])
        print(f"    {len(failed)} sessions failed to open: {reasons}\n      {tail}")
    clients = [s.c for s in sessions]
    print(
        f"[{server.name} round {rnd}] {len(clients)} sessions open and warm in "
        f"{time.monotonic() - t:.1f} s; load average {loadavg()}"
    )
    if rnd == 1:
        ssh = tree_pids(sshd_pid) if sshd_pid else []
        print(
            f"    autogroups: server {autogroups(server.pids())}; this client "
            f"{autogroups([os.getpid()])}; sshd+shells {autogroups(ssh)}"
        )
    busy = sessions[len(sessions) - args.busy :] if args.busy else []
    typing = sessions[: len(sessions) - len(busy)]
    if barrier is not None:
        await barrier.wait()  # --together: every server's phase starts at once
    calm: list[Phase] = []
    hot: list[Phase] = []
    got = 0.0
    for cycle in range(args.cycles if busy else 1):
        calm.append(await run_phase(server, "calm" if busy else "", typing, args, sshd_pid))
        if not busy:
            break
        # The busy command line is typed before the phase and only its Return within
        # it: the phase measures a neighbour's output, not 10 x 50 keystrokes at once.
        for s in busy:
            s.c.type(args.busy_command)
        await asyncio.sleep(1.0)
        before = sum(s.c.bytes_in for s in busy)
        if barrier is not None:
            await barrier.wait()
        hot.append(
            await run_phase(
                server, "busy", typing, args, sshd_pid, before_start=[s.c for s in busy]
            )
        )
        got += (sum(s.c.bytes_in for s in busy) - before) / 1e6
        if cycle < args.cycles - 1:
            await interrupt(busy)
            if barrier is not None:
                await barrier.wait()
    phases = [merge(calm)] + ([merge(hot)] if hot else [])
    if busy:
        made = produced(sshd_pid, args.busy_command)
        cycles = f" ({args.cycles} cycles pooled)" if args.cycles > 1 else ""
        print(
            f"    busy neighbours received {got:.1f} MB during the busy phase{cycles}"
            + (f"; the last ones wrote {made:.1f} MB" if made is not None else "")
        )
    for p in phases:
        print("  " + p.line())
    if barrier is not None:
        await barrier.wait()
    for c in clients:
        c.close()
    listeners = [s.task for s in sessions if s.task]
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    await teardown_wait(sshd_pid)
    return phases


def summary(results: list[Phase], args: argparse.Namespace) -> None:
    """The table of all rounds; with two servers, the first's figures over the second's."""
    servers = list(dict.fromkeys(p.server for p in results))
    labels = list(dict.fromkeys(p.label for p in results))
    one, two = [*servers, ""][:2]
    print("\nsummary (p50 / p99 / max ms, unanswered, server CPU s per 1,000 echoed keys):")
    for label in labels:
        rows = [p for p in results if p.label == label]
        if label:
            print(f"  {label}:")
        header = "  | run | " + " | ".join(servers) + " |"
        print(header + (f"  ratio {one}/{two} p50, p99" if two else ""))
        for r in range(args.rounds):
            cells = []
            by = {}
            for name in servers:
                ps = [p for p in rows if p.server == name]
                if r < len(ps) and ps[r].lat:
                    p = ps[r]
                    by[name] = p
                    per_k = p.cpu / len(p.lat) * 1000
                    cells.append(
                        f"{pct(p.lat, 0.5):.1f} / {pct(p.lat, 0.99):.1f} / {max(p.lat):.0f}, "
                        f"{p.unanswered}, {per_k:.2f}"
                    )
                else:
                    cells.append("-")
            extra = ""
            if one in by and two in by:
                a, b = by[one].lat, by[two].lat
                extra = f"  {pct(a, 0.5) / pct(b, 0.5):.2f}x, {pct(a, 0.99) / pct(b, 0.99):.2f}x"
            print(f"  | {r + 1} | " + " | ".join(cells) + " |" + extra)
        for name in servers:
            ps = [p for p in rows if p.server == name]
            lat = [v for p in ps for v in p.lat]
            if lat:
                cpu = sum(p.cpu for p in ps) / len(lat) * 1000
                print(
                    f"  pooled {name}: p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms  "
                    f"max {max(lat):.1f} ms  unanswered {sum(p.unanswered for p in ps)} of "
                    f"{sum(p.sent for p in ps)}  CPU {cpu:.2f} s per 1,000 echoed keys  "
                    f"(load average {ps[0].load_before} .. {ps[-1].load_after})"
                )
        a = [v for p in rows if p.server == one for v in p.lat]
        b = [v for p in rows if p.server == two for v in p.lat]
        lost = sum(p.unanswered for p in rows if p.server == one)
        if a and b:
            r50, r99 = pct(a, 0.5) / pct(b, 0.5), pct(a, 0.99) / pct(b, 0.99)
            ok = r50 <= 1.05 and r99 <= 0.8 and lost == 0
            print(
                f"  all rounds pooled: {one} p50 {r50:.2f}x {two}'s (target <= 1.05), p99 "
                f"{r99:.2f}x (target <= 0.8), {one} keys unanswered {lost} -> "
                f"{'MET' if ok else 'not met'}"
            )
        elif a:
            print(
                f"  all rounds pooled: p50 {pct(a, 0.5):.2f} ms (fallback target <= 2.0), "
                f"p99 {pct(a, 0.99):.2f} ms (<= 40), unanswered {lost}"
            )
    if "busy" in labels:
        for name in servers:
            calm = [v for p in results if p.server == name and p.label == "calm" for v in p.lat]
            busy = [v for p in results if p.server == name and p.label == "busy" for v in p.lat]
            if calm and busy:
                ratio = pct(busy, 0.99) / pct(calm, 0.99)
                print(
                    f"  busy neighbour, {name}: typing p99 {pct(calm, 0.99):.1f} ms calm -> "
                    f"{pct(busy, 0.99):.1f} ms busy = {ratio:.2f}x (target <= 1.5)"
                )


async def run_all(servers: list[Server], args: argparse.Namespace, sshd_pid: int | None) -> None:
    results: list[Phase] = []
    for rnd in range(1, args.rounds + 1):
        if args.together:
            barrier = asyncio.Barrier(len(servers))
            rounds = await asyncio.gather(
                *(run_round(server, args, sshd_pid, rnd, barrier) for server in servers)
            )
            results += [p for phases in rounds for p in phases]
            continue
        for server in servers:
            results += await run_round(server, args, sshd_pid, rnd)
    summary(results, args)


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", help="HOST:PORT of a running server instead of a local guacr")
    p.add_argument("--proc-pattern", default=SERVER_PATTERN,
                   help="--target: regex for its processes' command lines (CPU)")  # fmt: skip
    p.add_argument("--guacd-cmd", help="start this guacd and compare (e.g. /opt/guacd/sbin/guacd)")
    p.add_argument("--guacd", help="HOST:PORT of a running guacd to compare with")
    p.add_argument("--guacd-name", default="guacd",
                   help="label of the --guacd-cmd server (if not a guacd)")  # fmt: skip
    p.add_argument("--guacr-root", help="import guacr from this source tree (e.g. a scratch copy)")
    p.add_argument("--trace", help="append (sent, answered) perf_counter times of every key, "
                   "per session and connection id, to this JSON-lines file")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="local guacr's worker processes")
    p.add_argument("--same-session", action="store_true",
                   help="servers started here stay in this session (autogroup)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, help="runs per server, taking turns")
    p.add_argument("--together", action="store_true",
                   help="servers run each round at the same time (same load; an A/B of two "
                   "builds on a busy machine), --sessions each")  # fmt: skip
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0, help="typing time per phase")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between keys")
    p.add_argument("--timeout", type=float, default=2.0, help="a key unanswered after this")
    p.add_argument("--busy", type=int, default=0, help="sessions that cat a big file (e.g. 10)")
    p.add_argument("--busy-mb", type=int, default=50)
    p.add_argument("--cycles", type=int, default=1,
                   help="with --busy: calm and busy phases alternate this many times per "
                   "round (Ctrl-C ends each busy one), pooled per round")  # fmt: skip
    p.add_argument("--busy-command", help="what busy sessions type (default: cat FILE)")
    p.add_argument("--ssh-host", help="SSH server (default: a throw-away local sshd)")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-user", default="guest")
    p.add_argument("--ssh-password", default="guest")
    args = p.parse_args()
    if args.busy and args.ssh_host and not args.busy_command:
        p.error("--busy with --ssh-host needs --busy-command")
    _use_uvloop()
    # Killed by a timeout (SIGTERM): unwind like Ctrl-C, so the servers started here stop.
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"bench_load: {args.sessions} sessions, a key every {args.interval * 1000:g} ms for "
        f"{args.seconds:g} s, busy {args.busy}; {os.cpu_count()} CPUs, "
        f"sched_autogroup_enabled={_autogroup_enabled()}, load average {loadavg()}"
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
        sshd_pid = stack.enter_context(start_sshd(args))
        if args.busy and not args.busy_command:
            args.busy_command = f"cat {make_busy_file(tmp, args.busy_mb)}"
        servers: list[Server] = []
        if args.target:
            servers.append(Server("target", args.target, pattern=args.proc_pattern))
        else:
            servers.append(stack.enter_context(start_guacr(tmp, args)))
        if args.guacd_cmd:
            servers.append(stack.enter_context(start_guacd(tmp, args)))
        elif args.guacd:
            servers.append(Server("guacd", args.guacd, pattern=r"(^|/)guacd( |$)"))
        for s in servers:
            print(f"{s.name} at {s.address}" + (f" (pid {s.root_pid})" if s.root_pid else ""))
        asyncio.run(run_all(servers, args, sshd_pid))
        for s in servers:
            if s.name == "guacr" and s.log_path:
                per_worker: dict[str, int] = {}
                for m in re.finditer(r"guacr\[(\d+)\]: INFO:\s+Creating new client", s.log()):
                    per_worker[m.group(1)] = per_worker.get(m.group(1), 0) + 1
                print(f"guacr connections per worker process: {per_worker}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _autogroup_enabled() -> str:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
