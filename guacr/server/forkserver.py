"""The main guacr process: a fork server whose children share its preloaded code.

Why: each worker holds about 60 MB once asyncssh, Pillow, numpy, uvloop and the
handlers are imported, most of it private to an interpreter started from scratch.
Here the main process imports all of that once, freezes the garbage collector's view
of it (``gc.freeze``: collections then never write to those objects' pages), and
forks the listener and every worker, so those pages stay shared copy-on-write.
benchmarks/bench_ssh.py ``memory`` measures the effect (see the issue notes).

The main process never runs an event loop and never touches a client socket, so a
fork from it is always clean (forking from inside a running loop is not). It:

* forks the listener (guacr.server.supervisor) with the listening sockets;
* on the listener's ``spawn,<slot>`` request (carrying the worker's channel end),
  forks a worker and answers ``spawned,<slot>,<pid>``;
* reaps children and reports ``exited,<pid>,<status>`` (status as
  ``subprocess`` gives it: negative for a signal);
* forwards SIGTERM/SIGINT to the listener, and exits with the listener's status
  after killing anything left.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from guacr import handlers
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
    """Import the worker and every known handler now, then freeze them for sharing."""
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
        module = target.partition(":")[0]
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken third-party handler must not stop guacr
            log.warning('Handler "%s" (%s) could not be preloaded: %s', name, module, exc)
    gc.collect()
    gc.freeze()


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
        self._ctl: socket.socket | None = None

    def run(self) -> int:
        """Serve until the listener exits; returns its exit status."""
        preload(self.config)
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
            status = await Supervisor(self.config, self.sockets, ctl).run()

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
        while True:
            ready, _, _ = select.select([ctl], [], [], REAP_INTERVAL)
            if ready:
                msg, fds = channel.recv(ctl)
                if msg is None:
                    log.debug("Listener closed its control channel")
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
