"""Start the real ``guacr`` daemon on a free loopback port, and a client to drive it.

Tests talk to it over TCP exactly as a Guacamole client would.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from servers import free_port as free_port  # one port allocator for all tests

from guacr.protocol.instruction import encode
from guacr.protocol.parser import Instruction, Parser

ROOT = Path(__file__).resolve().parent.parent
ECHO = "echo=tests.echo_handler:EchoHandler"
READY_TIMEOUT = 90.0  # start-up on a loaded machine (load 20+) can take half a minute


class Guacr:
    """A running guacr daemon."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def listener_pid(self) -> int:
        """The current listener, forked by the main process (it logs its pid)."""
        found = re.findall(r"Listener running \(pid (\d+)\)", self.log())
        assert found, "listener pid not logged"
        return int(found[-1])

    def worker_pids(self) -> list[int]:
        """Live workers: children of the main process other than the listener."""
        listener = self.listener_pid()
        return [pid for pid in self.child_pids() if pid != listener]

    def child_pids(self) -> list[int]:
        """Live children of the main process (listener and workers)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return sorted(int(x) for x in out.split())

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.port, timeout)

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        """Until ``text`` is logged (generous: a loaded machine is slow, a pass is not)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log()[-3000:]}"
            time.sleep(0.05)


@contextmanager
def run_guacr(
    tmp: Path,
    workers: int = 2,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    handlers: str = ECHO,
    wait_ready: bool = True,
) -> Iterator[Guacr]:
    """Start guacr in the foreground; stop it (by PID) afterwards.

    Yields once ``workers`` workers are ready, or (``wait_ready=False``) at once. The
    metrics door gets a free port unless ``env`` names one: its default (9464) may be
    held by another guacr (another test run, a daemon) on this machine.
    """
    port = free_port()
    log_path = tmp / f"guacr-{port}.log"
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["GUACR_HANDLERS"] = handlers
    full_env.setdefault("GUACR_METRICS_BIND_PORT", str(free_port()))
    full_env.update(env or {})
    cmd = [
        sys.executable,
        "-m",
        "guacr",
        "-f",
        "-b",
        "127.0.0.1",
        "-l",
        str(port),
        "--workers",
        str(workers),
        "--config",
        str(tmp / "none.conf"),
        *(extra or []),
    ]
    (tmp / "none.conf").write_text("")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=full_env)
    g = Guacr(proc, port, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while wait_ready and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"guacr exited early:\n{g.log()}")
            if g.log().count("ready (pid") >= workers:
                break
            time.sleep(0.05)
        else:
            if wait_ready:
                raise RuntimeError(f"guacr did not become ready:\n{g.log()}")
        yield g
    finally:
        # Its children, noted while they are still its own (once it exits they are
        # re-parented and pgrep -P no longer finds them).
        children = g.child_pids()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in children:  # a listener or worker that outlived its main process
            if _runs(pid, cmd):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _runs(pid: int, cmd: list[str]) -> bool:
    """Whether ``pid`` still runs ``cmd`` (forked children keep their parent's command
    line), so that a recycled pid is never killed."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [
            os.fsencode(a) for a in cmd
        ]
    except OSError:
        return False


class Client:
    """A blocking Guacamole client for tests."""

    def __init__(self, port: int, timeout: float = 10.0, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.parser = Parser()
        self.queue: list[Instruction] = []

    def send(self, opcode: str, *args: object) -> None:
        self.sock.sendall(encode(opcode, *args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float | None = None) -> Instruction | None:
        """Next instruction, or None at EOF."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.queue.extend(self.parser.receive_data(data))
        return self.queue.pop(0)

    def expect(
        self,
        opcode: str,
        timeout: float = 10.0,
        skip: tuple[str, ...] = ("sync", "nop", "size", "name"),
    ) -> Instruction:
        """Read until ``opcode`` arrives, skipping the given opcodes."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {opcode!r} within {timeout}s")
            ins = self.read(left)
            if ins is None:
                raise EOFError(f"EOF while waiting for {opcode!r}")
            if ins[0] == opcode:
                return ins
            if ins[0] not in skip:
                raise AssertionError(f"expected {opcode!r}, got {ins!r}")

    def read_until_eof(self, timeout: float = 10.0) -> list[Instruction]:
        out: list[Instruction] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no EOF within {timeout}s; got {out[-5:]!r}")
            ins = self.read(left)
            if ins is None:
                return out
            out.append(ins)

    def handshake(
        self,
        protocol: str,
        values: dict[str, str] | None = None,
        version: str = "VERSION_1_5_0",
        size: tuple[int, int, int] = (1024, 768, 96),
        name: str = "",
    ) -> str:
        """Full handshake; returns the connection id from ``ready``."""
        self.send("select", protocol)
        args = self.expect("args")
        assert args[1] == "VERSION_1_5_0"
        names = args[2:]
        vals = values or {}
        self.send("size", *size)
        self.send("audio")
        self.send("video")
        self.send("image", "image/png", "image/jpeg")
        self.send("timezone", "UTC")
        if name:
            self.send("name", name)
        self.send("connect", version, *(vals.get(n, "") for n in names))
        ready = self.expect("ready")
        return ready[1]

    def close(self) -> None:
        self.sock.close()

    # The test-only echo handler (tests/echo_handler.py) -----------------------------
    def names_until(self, marker: str, timeout: float = 15.0) -> list[str]:
        """Collect ``name`` texts until ``marker`` arrives (other opcodes skipped)."""
        names: list[str] = []
        deadline = time.monotonic() + timeout
        while not names or names[-1] != marker:
            ins = self.read(max(0.01, deadline - time.monotonic()))
            assert ins is not None, f"EOF before {marker!r}; got {names}"
            if ins[0] == "name":
                names.append(ins[1])
        return names

    def owner_pid(self) -> int:
        """The pid of the worker serving this echo connection (its first ``name``)."""
        ins = self.expect("name", skip=("sync", "nop", "size"))
        assert ins[1].startswith("joined pid=")
        return int(ins[1].split()[1].split("=")[1])

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tracebacks(log: str, before: int = 5, most: int = 80) -> str:
    """Every traceback in a daemon's log with the ``before`` lines that led to it, up to
    the next log record (``guacr[pid]: ...``), for a failure message: a whole log is
    long, and it is gone with its temporary directory once the run ends."""
    lines = log.splitlines()
    shown: list[str] = []
    upto = 0
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" not in line or i < upto:
            continue
        end = i + 1
        while end < len(lines) and end - i < most and not lines[end].startswith("guacr["):
            end += 1
        shown.append("\n".join(lines[max(upto, i - before) : end]))
        upto = end
    return "\n---\n".join(shown)


def assert_no_traceback(log: str, what: str = "guacr's log") -> None:
    """Fail, showing the tracebacks themselves (not a truncated log), if ``log`` has any."""
    assert "Traceback" not in log, f"{what} holds a traceback:\n{tracebacks(log)}"
