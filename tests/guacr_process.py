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

from guacr.protocol.instruction import encode
from guacr.protocol.parser import Instruction, Parser

ROOT = Path(__file__).resolve().parent.parent
ECHO = "echo=tests.echo_handler:EchoHandler"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        listener = self.listener_pid()
        return sorted(int(x) for x in out.split() if int(x) != listener)

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.port, timeout)


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

    Yields once ``workers`` workers are ready, or (``wait_ready=False``) at once.
    """
    port = free_port()
    log_path = tmp / f"guacr-{port}.log"
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["GUACR_HANDLERS"] = handlers
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
        deadline = time.monotonic() + 20
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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL) if False else proc.kill()
                proc.wait()
        for pid in g.worker_pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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
    def names_until(self, marker: str, timeout: float = 5.0) -> list[str]:
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
