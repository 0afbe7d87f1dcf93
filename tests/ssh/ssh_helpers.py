"""A Guacamole terminal client for tests: keeps a replayed display, answers ``sync``,
types text as key events, and waits for text on screen or files on disk."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

from guacr_process import Client
from ssh.term_screen import Display, TextReader

from guacr.protocol.parser import Instruction

HANDLERS = "ssh=guacr.handlers.ssh:SSHHandler"
RETURN = 0xFF0D
_reader: TextReader | None = None


def reader() -> TextReader:
    global _reader
    if _reader is None:
        _reader = TextReader()
    return _reader


def ssh_values(sshd: object, **extra: str) -> dict[str, str]:
    """Connection parameters for the test sshd (password auth unless overridden)."""
    values = {
        "hostname": sshd.host,  # type: ignore[attr-defined]
        "port": str(sshd.port),  # type: ignore[attr-defined]
        "username": sshd.username,  # type: ignore[attr-defined]
        "password": sshd.password,  # type: ignore[attr-defined]
    }
    values.update(extra)
    return {k: v for k, v in values.items() if v is not None}


class TermClient:
    """A test client on one terminal connection."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.display = Display()
        self.log: list[Instruction] = []
        self.errors: list[Instruction] = []
        self.eof = False
        self.connection_id = ""

    # Low level ---------------------------------------------------------------------
    def pump(self, timeout: float = 0.05) -> bool:
        """Read what is available (up to ``timeout`` for the first); False at EOF."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            try:
                ins = self.client.read(max(0.001, left))
            except TimeoutError:
                return True
            if ins is None:
                self.eof = True
                return False
            self.log.append(ins)
            if ins[0] == "sync":
                self.client.send("sync", ins[1])
            elif ins[0] == "error":
                self.errors.append(ins)
            self.received(ins)
            self.display.feed(ins)
            if time.monotonic() >= deadline and not self.client.queue:
                return True
        return False

    def received(self, ins: Instruction) -> None:
        """Each instruction as it arrives, for subclasses that answer more of them."""

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}:\n{self.dump()}")
            if not self.pump(0.05) and not predicate():
                raise AssertionError(f"connection ended waiting for {what}: {self.errors}")

    def wait_for(self, opcode: str, timeout: float = 10.0) -> Instruction:
        start = len(self.log)
        self.wait(lambda: any(i[0] == opcode for i in self.log[start:]), timeout, opcode)
        return next(i for i in self.log[start:] if i[0] == opcode)

    # Screen ------------------------------------------------------------------------
    def screen(self) -> list[str]:
        return reader().screen(self.display)

    def text(self) -> str:
        return "\n".join(self.screen())

    def wait_text(self, needle: str, timeout: float = 10.0) -> None:
        self.wait(lambda: needle in self.text(), timeout, repr(needle))

    def dump(self) -> str:
        return "screen:\n" + "\n".join(f"|{row}" for row in self.screen() if row)

    # Input -------------------------------------------------------------------------
    def key(self, keysym: int) -> None:
        self.client.send("key", keysym, 1)
        self.client.send("key", keysym, 0)

    def type(self, text: str, enter: bool = False) -> None:
        for ch in text:
            self.key(RETURN if ch == "\n" else ord(ch))
        if enter:
            self.key(RETURN)

    def run(self, command: str) -> None:
        """Type a shell command and Return."""
        self.type(command, enter=True)

    def mouse(self, x: int, y: int, mask: int) -> None:
        self.client.send("mouse", x, y, mask)

    def send_clipboard(self, text: str, stream: int = 10) -> None:
        self.client.send("clipboard", stream, "text/plain")
        self.client.send("blob", stream, base64.b64encode(text.encode()).decode())
        self.client.send("end", stream)


def wait_file(path: Path, timeout: float = 10.0, term: TermClient | None = None) -> str:
    """Wait until ``path`` exists with a complete line; return its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.endswith("\n"):
                return text
        if term is not None:
            term.pump(0.05)
        else:
            time.sleep(0.05)
    raise AssertionError(f"{path} not written in {timeout}s" + (f"\n{term.dump()}" if term else ""))
