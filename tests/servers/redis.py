"""A real ``redis-server`` on 127.0.0.1 for the shared-registry (several instances) tests.

No configuration file, no persistence (``--save ''``, ``--appendonly no``), a password
(``requirepass``) so the tests also show it never reaches guacr's logs. ``stop()`` and
``start()`` may be called again on the same object: the server comes back on the same
port, empty, as a Redis without persistence does after a restart.
"""

from __future__ import annotations

import secrets
import socket
import time

from servers import HOST, ServerError, _Server, free_port, kill_tree


class RedisServer(_Server):
    """``redis-server`` on a free loopback port, with a password."""

    kind = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.password = "pw-" + secrets.token_hex(8)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def _start(self) -> None:
        for _attempt in range(3):
            self.port = self.port or free_port()
            argv = [
                "redis-server",
                "--bind", HOST,
                "--port", str(self.port),
                "--requirepass", self.password,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--protected-mode", "no",
            ]  # fmt: skip
            proc = self._spawn(argv, "redis.log")
            try:
                self._wait_pong(proc.pid)
                return
            except (TimeoutError, ServerError):
                kill_tree([proc.pid])
                self.procs.remove(proc)
                self.port = 0
        raise self._fail("did not answer PING")

    def _wait_pong(self, pid: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(p.pid == pid and p.poll() is None for p in self.procs):
                raise ServerError("redis-server exited")
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("redis-server did not answer")

    def command(self, *args: str) -> object:
        """Run one command (authenticated) and return its decoded reply."""
        with socket.create_connection((self.host, self.port), timeout=5.0) as s:
            s.sendall(_encode("AUTH", self.password) + _encode(*args))
            f = s.makefile("rb")
            auth = _reply(f)
            if auth != "OK":
                raise OSError(f"AUTH failed: {auth!r}")
            return _reply(f)

    def find_keys(self, pattern: str = "*") -> list[str]:
        reply = self.command("KEYS", pattern)
        return sorted(str(k) for k in reply) if isinstance(reply, list) else []

    def restart_stopped(self) -> None:
        """Stop the server, keeping its scratch directory and port for :meth:`resume`."""
        kill_tree([p.pid for p in self.procs])
        for p in self.procs:
            p.wait(timeout=5)
        self.procs.clear()

    def resume(self) -> None:
        """Start again (empty) on the same port after :meth:`restart_stopped`."""
        self._start()


def _encode(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        raw = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _reply(f: socket.SocketIO | object) -> object:
    line = f.readline()  # type: ignore[attr-defined]
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        return OSError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)  # type: ignore[attr-defined]
        return data[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return [_reply(f) for _ in range(max(0, n))]
    raise OSError(f"unexpected reply {line!r}")
