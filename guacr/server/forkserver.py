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

* forks the listener (guacr.server.supervisor) with the listening sockets;
* on the listener's ``spawn,<slot>`` request (carrying the worker's channel end),
  forks a worker and answers ``spawned,<slot>,<pid>``;
* reaps children and reports ``exited,<pid>,<status>`` (status as
  ``subprocess`` gives it: negative for a signal);
* forwards SIGTERM/SIGINT to the listener, and exits with the listener's status
  after killing anything left.
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
import traceback
from collections.abc import Callable
from typing import Any

from guacr import handlers
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Instruction, Parser
from guacr.server import channel

log = logging.getLogger("guacr.forkserver")

REAP_INTERVAL = 0.5

# What workers import on their first session (found by listing ``sys.modules`` in a
# worker after one SSH session): preloaded here so the pages stay shared.
_ALWAYS_PRELOADED = (
    "guacr.server.worker",
    "guacr.server.supervisor",
    "guacr.server.connection",
    "guacr.server.recording",
    "decimal",
    "fractions",
    "pwd",
)
_PRELOADED_IF_INSTALLED = ("uvloop",)


def preload(config: dict[str, Any]) -> None:
    """Import the worker and every known handler now, warm them up, then freeze them
    for sharing."""
    for name, target in config.get("extra_handlers", {}).items():
        handlers.register(name, target)
    for module in _ALWAYS_PRELOADED:
        importlib.import_module(module)
    for module in _PRELOADED_IF_INSTALLED:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
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


def warm_up(config: dict[str, Any]) -> bool:
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


async def _warm_up_session(config: dict[str, Any]) -> None:
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


class ForkServer:
    """The main process."""

    def __init__(self, config: dict[str, Any], sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.listener_pid = 0
        self.workers: set[int] = set()
        self.protocols: frozenset[str] = frozenset()
        self._ctl: socket.socket | None = None

    def run(self) -> int:
        """Serve until the listener exits; returns its exit status."""
        preload(self.config)
        self.protocols = frozenset(handlers.available())  # the listener need not scan
        ours, theirs = channel.pair()
        self._ctl = ours
        self.listener_pid = fork(lambda: self._listener(theirs))
        theirs.close()
        for s in self.sockets:
            s.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        try:
            return self._serve(ours)
        finally:
            self._kill_leftovers()

    def _forward(self, signum: int, _frame: object) -> None:
        if self.listener_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.listener_pid, signum)

    def _listener(self, ctl: socket.socket) -> int:
        assert self._ctl is not None
        self._ctl.close()
        from guacr.server.supervisor import Supervisor
        from guacr.server.worker import run_loop

        status = 0

        async def run() -> None:
            nonlocal status
            status = await Supervisor(self.config, self.sockets, ctl, self.protocols).run()

        run_loop(run(), self.config.get("uvloop", True))
        return status

    def _worker(self, chan: socket.socket) -> int:
        assert self._ctl is not None
        self._ctl.close()
        for s in self.sockets:
            s.close()
        from guacr.server.worker import run_forked

        run_forked(chan, self.config)
        return 0

    def _serve(self, ctl: socket.socket) -> int:
        watched = [ctl]
        while True:
            ready, _, _ = select.select(watched, [], [], REAP_INTERVAL)
            if ready:
                msg, fds = channel.recv(ctl)
                if msg is None:
                    log.debug("Listener closed its control channel")
                    watched = []  # readable for ever now: just reap until it exits
                elif msg[0] == "spawn" and len(fds) == 1 and len(msg) == 2:
                    chan = socket.socket(fileno=fds[0])
                    pid = fork(functools.partial(self._worker, chan))
                    chan.close()
                    self.workers.add(pid)
                    channel.send(ctl, "spawned", msg[1], pid)
                else:
                    for fd in fds:
                        os.close(fd)
            status = self._reap(ctl)
            if status is not None:
                return status

    def _reap(self, ctl: socket.socket) -> int | None:
        """Collect exited children; the listener's exit status ends the main process."""
        listener_status: int | None = None
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return listener_status
            if pid == 0:
                return listener_status
            code = os.waitstatus_to_exitcode(raw)
            if pid == self.listener_pid:
                listener_status = code if code >= 0 else 1
                continue
            self.workers.discard(pid)
            with contextlib.suppress(OSError):  # the listener may be gone: nobody to tell
                channel.send(ctl, "exited", pid, code)

    def _kill_leftovers(self) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
