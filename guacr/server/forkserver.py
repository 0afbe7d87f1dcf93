"""The main guacr process: a fork server whose children share its preloaded code.

Why: each worker holds about 60 MB once asyncssh, Pillow, numpy, uvloop and the
handlers are imported, most of it private to an interpreter started from scratch.
Here the main process imports all of that once, freezes the garbage collector's view
of it (``gc.freeze``: collections then never write to those objects' pages), and
forks the listener and every worker, so those pages stay shared copy-on-write.
benchmarks/bench_ssh.py ``memory`` measures the effect (see the issue notes).

What a child writes is copied for it alone, and on Python 3.11 every object a
session touches is written (its reference count). So before forking, the main
process also (figures: 50 idle SSH sessions over 2 workers, pages of all processes
counted once, 127 MB before and 101 MB after; each item left out in turn, see
``benchmarks/bench_ssh.py memory``):

* runs one SSH session through the worker's own code against an SSH server of its
  own on loopback (:func:`warm_up`), so what a first session builds lazily (fonts,
  glyph tiles, asyncssh and OpenSSL state, specialised bytecode) is built once and
  shared instead of built in every worker (-11.5 MB);
* drops its own mappings of library code only its imports ran
  (:func:`drop_file_pages`, -16 MB);
* gives free heap pages back (:func:`trim_heap`, -0.6 MB).

The main process never touches a client socket, and runs an event loop only for
the warm-up, closed before anything is forked, so a fork from it is always clean
(forking from inside a running loop is not). It:

* holds the listening sockets (guacr.server.doors) for its whole life, and forks the
  listener (guacr.server.supervisor) with them;
* on the listener's :class:`~channel.Spawn` request (carrying the worker's channel
  end), forks a worker and answers :class:`~channel.Spawned`; it keeps a channel of
  its own to each worker;
* reaps children and reports :class:`~channel.Exited` (status as ``subprocess``
  gives it: negative for a signal);
* when the listener dies abnormally (a signal, an uncaught error), forks a new one at
  once (within its 0.5 s reap interval), giving it a fresh channel to every live
  worker and each worker the other end (:class:`~channel.Attach`): workers keep their
  sessions and re-register them, clients that connected meanwhile wait in the
  backlog. More than :data:`MAX_RESTARTS` deaths within :data:`RESTART_WINDOW` s,
  or a listener giving up (no worker can boot), end guacr;
* forwards SIGTERM/SIGINT to the listener (its exit is then final), and exits with
  the listener's status after killing anything left.

If the main process itself dies (``kill -9``), nothing can fork a listener or a worker
again: the listener sees its channel to the main process close and shuts down as on
SIGTERM (users get ``error "Server is shutting down." 513``), workers exit, and a
service manager has to start guacr again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import importlib
import logging
import mmap
import os
import secrets
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guacr import handlers
from guacr import log as glog
from guacr.config import Config
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Instruction, Parser
from guacr.server import channel
from guacr.server.doors import Door
from guacr.server.supervisor import EXIT_GIVE_UP, Adopted

log = logging.getLogger("guacr.forkserver")

REAP_INTERVAL = 0.5
# A listener that dies more often than this is not restarted again.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0

# What workers import on their first session (found by listing ``sys.modules`` in a
# worker after one SSH session): preloaded here so the pages stay shared.
_ALWAYS_PRELOADED = (
    "guacr.server.worker",
    "guacr.server.supervisor",
    "guacr.server.tls",
    "guacr.server.connection",
    "guacr.server.recording",
    "decimal",
    "fractions",
    "pwd",
)
_PRELOADED_IF_INSTALLED = ("uvloop",)


def preload(config: Config) -> None:
    """Import the worker and every known handler now, warm them up, then freeze them
    for sharing."""
    for name, target in config.extra_handlers().items():
        handlers.register(name, target)
    for module in _ALWAYS_PRELOADED:
        importlib.import_module(module)
    for module in _PRELOADED_IF_INSTALLED:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    if config.grpc_bind_port and (config.grpc_token or config.grpc_client_ca):
        # The listener will serve gRPC: import it here so the listener shares these
        # pages (measured: ~16 MB less private memory). Importing only is safe for
        # children; a live grpc.aio server is what a forking process must not hold.
        importlib.import_module("guacr.control.server")
    from PIL import Image

    Image.init()  # registers every image plugin; workers would import them lazily
    for name, target in sorted(handlers.available().items()):
        try:
            handlers.load(name)  # imported and looked up once: workers then never scan
        except Exception as exc:  # a broken third-party handler must not stop guacr
            log.warning('Handler "%s" (%s) could not be preloaded: %s', name, target, exc)
    warm_up(config)
    gc.collect()
    trim_heap()
    gc.freeze()
    drop_file_pages()


# Memory ------------------------------------------------------------------------------
def trim_heap() -> None:
    """Give the C heap's free pages back to the kernel (glibc only).

    A child allocating from a free chunk the main process still holds copies that
    page; a page given back is simply not there.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def drop_file_pages() -> None:
    """Unmap this process's resident pages of read-only file mappings (library code
    and data used once by its imports and the warm-up: 16 MB with the built-in
    handlers).

    Only the children's sessions need library code after this, and they fault in
    what they run (from the page cache). Mappings holding anonymous pages (data
    relocated at load time) are left alone: dropping those would lose the
    relocations, while a clean file page reads back identical.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        with open("/proc/self/smaps") as f:
            smaps = f.read()
    except (OSError, AttributeError):
        return
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    candidates: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        fields = line.split()
        if len(fields) >= 5 and "-" in fields[0] and ":" in fields[3]:  # a mapping's header
            current = None
            perms, path = fields[1], fields[5] if len(fields) > 5 else ""
            if path.startswith("/") and "w" not in perms and "s" not in perms:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                current = (lo, hi)
        elif fields and fields[0] == "Anonymous:" and current is not None:
            if fields[1] == "0":
                candidates.append(current)
            current = None
    for lo, hi in candidates:
        madvise(lo, hi - lo, mmap.MADV_DONTNEED)


# Warm-up -------------------------------------------------------------------------------
WARM_UP_TIMEOUT = 5.0
_WARM_UP_USER = "guacr"
_PRINTABLE = "".join(map(chr, range(33, 127)))
# What the warm-up host prints, one chunk per key the client types: a coloured prompt
# with a window title, then every printable ASCII character in regular and in bold
# (their glyph tiles are then shared), 24 per line. One chunk per frame keeps each
# image small enough to be encoded on the loop: no encoder thread may exist at fork.
_WARM_UP_OUTPUT = (
    b"\x1b]0;guacr@warm-up: ~\x07\x1b[01;32mguacr@warm-up\x1b[00m:\x1b[01;34m~\x1b[00m$ ",
    *(
        f"\r\n{sgr}{_PRINTABLE[i : i + 24]}\x1b[0m".encode()
        for sgr in ("", "\x1b[1m")
        for i in range(0, len(_PRINTABLE), 24)
    ),
)


def warm_up(config: Config) -> bool:
    """Run one SSH session through the worker's code here, before anything is forked.

    Against an SSH server of our own on loopback (asyncssh, a fresh key and password),
    a Guacamole client of our own types a key per chunk of :data:`_WARM_UP_OUTPUT`
    and waits for each frame. What a first session builds lazily is then built once
    and shared by every worker; unlike a list of things to initialise, it follows the
    code as it changes. It runs on asyncio's loop, not uvloop's: libuv's resolver
    threads would outlive it, and the main process forks. Its log lines are muted
    (no admin needs to see them); a failure costs memory only, never the service.
    Returns True if the session ran to its end and left no thread behind.
    """
    if "ssh" not in handlers.available():
        return False
    threads = threading.active_count()
    logging.disable(logging.CRITICAL)
    try:
        asyncio.run(asyncio.wait_for(_warm_up_session(config), WARM_UP_TIMEOUT))
        failure: Exception | None = None
    except Exception as exc:  # anything: the workers will warm themselves
        failure = exc
    finally:
        logging.disable(logging.NOTSET)
    if failure is not None:
        log.info("Warm-up session failed (no harm done): %r", failure)
    left = threading.active_count() - threads
    if left > 0:  # a thread pool: a forked worker would queue work for no thread
        log.error("The warm-up left %d threads running in the main process", left)
    return failure is None and left <= 0


async def _warm_up_session(config: Config) -> None:
    import asyncssh

    from guacr.server.worker import Worker

    password = secrets.token_urlsafe(16)
    shown = asyncio.Event()

    class Host(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, given: str) -> bool:
            return username == _WARM_UP_USER and secrets.compare_digest(given, password)

    async def shell(process: asyncssh.SSHServerProcess[bytes]) -> None:
        for chunk in _WARM_UP_OUTPUT:
            process.stdout.write(chunk)
            shown.set()
            if not await process.stdin.read(1):
                break
        process.exit(0)

    host = await asyncssh.create_server(
        Host,
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        process_factory=shell,
        encoding=None,
        line_editor=False,
        config=None,
    )
    reports, sink = channel.pair()  # the worker's reports to a listener: ignored
    client, server_end = socket.socketpair()
    try:
        worker = Worker(reports, config)
        worker.adopt(server_end, "ssh", b"")
        reader, writer = await asyncio.open_connection(sock=client)
        guac = _WarmUpClient(reader, writer)
        args = await guac.expect("args")
        port = host.sockets[0].getsockname()[1]
        values = {
            "hostname": "127.0.0.1",
            "port": str(port),
            "username": _WARM_UP_USER,
            "password": password,
        }
        guac.send("size", 1024, 768, 96)
        guac.send("audio")
        guac.send("video")
        guac.send("image", "image/png", "image/jpeg", "image/webp")
        guac.send("timezone", "UTC")
        guac.send("connect", args[1], *(values.get(name, "") for name in args[2:]))
        await guac.expect("ready")
        for _ in _WARM_UP_OUTPUT:
            await shown.wait()
            shown.clear()
            await guac.frame()
            guac.send("key", ord("x"), 1)
            guac.send("key", ord("x"), 0)
        guac.send("disconnect")
        await guac.until_closed()
        writer.close()
        while worker.tasks:  # the connection's own clean-up
            await asyncio.wait(list(worker.tasks))
    finally:
        client.close()
        server_end.close()
        reports.close()
        sink.close()
        host.close()
        await host.wait_closed()


class _WarmUpClient:
    """Just enough of a Guacamole client for :func:`warm_up` (answers ``sync``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser()
        self.queue: list[Instruction] = []

    def send(self, opcode: str, *args: object) -> None:
        self.writer.write(encode(opcode, *args))

    async def read(self) -> Instruction | None:
        while not self.queue:
            data = await self.reader.read(1 << 16)
            if not data:
                return None
            self.queue.extend(self.parser.receive_data(data))
        ins = self.queue.pop(0)
        if ins[0] == "sync":
            self.send("sync", ins[1])
        return ins

    async def _next(self, waiting_for: str) -> Instruction:
        ins = await self.read()
        if ins is None or ins[0] in ("error", "disconnect"):
            raise RuntimeError(f"warm-up session ended before {waiting_for}: {ins!r}")
        return ins

    async def expect(self, opcode: str) -> Instruction:
        while (ins := await self._next(opcode))[0] != opcode:
            pass
        return ins

    async def frame(self) -> None:
        """Until the end (``sync``) of a frame that drew something."""
        drew = False
        while True:
            ins = await self._next("a frame")
            if ins[0] == "sync" and drew:
                return
            drew = drew or ins[0] not in ("sync", "nop")

    async def until_closed(self) -> None:
        while await self.read() is not None:
            pass


def fork(target: Callable[[], int | None]) -> int:
    """Fork; the child runs ``target`` and exits with its status, never returning."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        code = target() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@dataclass
class _WorkerProcess:
    """A live worker as the main process knows it."""

    slot: int
    chan: socket.socket  # main process <-> worker (for :class:`channel.Attach`)


class ForkServer:
    """The main process."""

    def __init__(self, config: Config, doors: list[Door]) -> None:
        self.config = config
        self.doors = doors  # held open for the whole life of guacr
        self.listener_pid = 0
        self.workers: dict[int, _WorkerProcess] = {}
        self.protocols: frozenset[str] = frozenset()
        self._ctl: socket.socket | None = None  # to the current listener
        self.stopping = False  # a stop signal was forwarded: the listener's exit is final
        self.draining = False  # outlives listeners: a new one starts draining too
        self.totals: dict[str, Any] = {}  # metric totals a listener left (channel.Totals)
        self._generation = 0  # listeners forked so far
        self._restarts: list[float] = []

    def run(self) -> int:
        """Serve until the listener exits for good; returns its exit status."""
        preload(self.config)
        self.protocols = frozenset(handlers.available())  # the listener need not scan
        self._start_listener([])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        try:
            return self._serve()
        finally:
            self._kill_leftovers()

    def _forward(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.listener_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.listener_pid, signum)

    def _start_listener(self, adopted: list[Adopted]) -> None:
        ours, theirs = channel.pair()
        if self._ctl is not None:
            self._ctl.close()
        self._ctl = ours
        generation, self._generation = self._generation, self._generation + 1
        self.listener_pid = fork(lambda: self._listener(theirs, adopted, generation))
        theirs.close()
        for a in adopted:
            a.chan.close()

    def _close_inherited(self) -> None:
        """In a child: drop the main process's own channel ends."""
        if self._ctl is not None:
            self._ctl.close()
        for w in self.workers.values():
            w.chan.close()

    def _listener(self, ctl: socket.socket, adopted: list[Adopted], generation: int = 0) -> int:
        self._close_inherited()
        glog.set_role("listener")
        from guacr.server.supervisor import Supervisor
        from guacr.server.worker import run_loop

        status = 0

        async def run() -> None:
            nonlocal status
            supervisor = Supervisor(
                self.config,
                self.doors,
                ctl,
                self.protocols,
                adopted,
                draining=self.draining,
                totals=self.totals,
                generation=generation,
            )
            status = await supervisor.run()

        run_loop(run(), self.config.uvloop)
        return status

    def _worker(self, chan: socket.socket, main: socket.socket, slot: int = 0) -> int:
        # Its own session: with the kernel's autogroup scheduling each worker then gets
        # its own CPU share instead of all of guacr splitting one (issue 16: typing
        # latency under load halved). Stopping is unchanged: workers ignore SIGINT and
        # are stopped by the listener with SIGTERM, or exit when the main process's
        # channel closes.
        os.setsid()
        self._close_inherited()
        glog.set_role(f"worker-{slot}")
        for door in self.doors:
            door.sock.close()
        from guacr.server.worker import run_forked

        run_forked(chan, self.config, main)
        return 0

    def _serve(self) -> int:
        while True:
            watched = [self._ctl] if self._ctl is not None else []
            try:
                ready, _, _ = select.select(watched, [], [], REAP_INTERVAL)
            except InterruptedError:
                ready = []
            if ready:
                self._on_listener()
            status = self._reap()
            if status is not None:
                return status

    def _on_listener(self) -> None:
        assert self._ctl is not None
        try:
            msg, fds = channel.recv(self._ctl)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            log.exception("Channel to the listener failed")
            msg, fds = None, []
        if msg is None:
            log.debug("Listener closed its control channel")
            self._ctl.close()
            self._ctl = None  # its exit status follows
            return
        if isinstance(msg, channel.Spawn) and len(fds) == 1:
            chan = socket.socket(fileno=fds[0])
            ours, theirs = channel.pair()
            pid = fork(functools.partial(self._worker, chan, theirs, msg.slot))
            chan.close()
            theirs.close()
            self.workers[pid] = _WorkerProcess(msg.slot, ours)
            with contextlib.suppress(OSError):
                channel.send(self._ctl, channel.Spawned(msg.slot, pid))
            return
        if isinstance(msg, channel.Draining):
            self.draining = msg.on
        elif isinstance(msg, channel.Totals):
            self.totals = msg.figures
        for fd in fds:
            os.close(fd)

    def _reap(self) -> int | None:
        """Collect exited children; the listener's final exit ends the main process."""
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            code = os.waitstatus_to_exitcode(raw)
            if pid == self.listener_pid:
                self.listener_pid = 0
                final = self._listener_exited(code)
                if final is not None:
                    return final
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                worker.chan.close()
            if self._ctl is not None:
                with contextlib.suppress(OSError):  # the listener may be gone
                    channel.send(self._ctl, channel.Exited(pid, code))

    def _listener_exited(self, code: int) -> int | None:
        """The exit status to end with, or None once a new listener was forked."""
        if self.stopping or code == 0:
            return code if code >= 0 else 1
        if code == EXIT_GIVE_UP:
            return 1
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
        if len(self._restarts) >= MAX_RESTARTS:
            log.error("The listener died %d times within %.0f s; exiting", MAX_RESTARTS + 1,
                      RESTART_WINDOW)  # fmt: skip
            return 1
        self._restarts.append(now)
        log.error("Listener exited with status %d; starting a new one", code)
        adopted: list[Adopted] = []
        for pid, worker in self.workers.items():
            theirs, ours = channel.pair()
            try:
                channel.send(worker.chan, channel.Attach(), [theirs.fileno()])
            except OSError:
                ours.close()
                continue
            finally:
                theirs.close()
            adopted.append(Adopted(worker.slot, pid, ours))
        self._start_listener(adopted)
        return None

    def _kill_leftovers(self) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
