"""A Guacamole client session for end-to-end tests: handshake, replay, input helpers.

Everything the daemon sends is replayed onto a :class:`Canvas`, and every ``sync`` is
echoed the way guacamole-common-js does, so the daemon sees a healthy client.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from guacr.protocol.parser import Instruction
from tests.guacr_process import Client, Guacr
from tests.render.guac_canvas import Canvas

XK_RETURN = 0xFF0D


class GuacSession:
    """One Guacamole client connected through guacr."""

    def __init__(self, guacr: Guacr, timeout: float = 15.0) -> None:
        self.client: Client = guacr.client(timeout)
        self.canvas = Canvas()
        self.errors: list[Instruction] = []
        self.instructions: list[Instruction] = []
        self.eof = False
        self.id = ""

    def connect(
        self,
        values: dict[str, str],
        *,
        protocol: str = "vnc",
        size: tuple[int, int, int] = (1024, 768, 96),
        version: str = "VERSION_1_5_0",
    ) -> str:
        self.id = self.client.handshake(protocol, values, version=version, size=size)
        return self.id

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> GuacSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def pump(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Replay instructions for up to ``seconds``; True as soon as ``until()`` holds."""
        deadline = time.monotonic() + seconds
        while True:
            if until is not None and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return False
            try:
                ins = self.client.read(min(left, 0.2))
            except TimeoutError:
                continue
            if ins is None:
                self.eof = True
                continue
            self.instructions.append(ins)
            self.canvas.feed(ins)
            if ins[0] == "sync":
                self.client.send("sync", ins[1])
            elif ins[0] == "error":
                self.errors.append(ins)

    def wait_for(self, until: Callable[[], bool], seconds: float = 10.0, what: str = "") -> None:
        if not self.pump(seconds, until):
            raise AssertionError(f"timed out waiting for {what or until}; errors={self.errors}")

    def wait_opcode(self, opcode: str, seconds: float = 10.0) -> Instruction:
        start = len(self.instructions)

        def seen() -> bool:
            return any(i[0] == opcode for i in self.instructions[start:])

        self.wait_for(seen, seconds, opcode)
        return next(i for i in self.instructions[start:] if i[0] == opcode)

    def wait_frames(self, count: int = 1, seconds: float = 10.0) -> None:
        target = self.canvas.syncs + count
        self.wait_for(lambda: self.canvas.syncs >= target, seconds, f"{count} frames")

    def screen(self) -> np.ndarray:
        return self.canvas.rgb()

    # ------------------------------------------------------------------ input
    def mouse(self, x: int, y: int, mask: int = 0) -> None:
        self.client.send("mouse", x, y, mask)

    def key(self, keysym: int, pressed: bool | None = None) -> None:
        if pressed is None:
            self.client.send("key", keysym, 1)
            self.client.send("key", keysym, 0)
        else:
            self.client.send("key", keysym, 1 if pressed else 0)

    def type_text(self, text: str) -> None:
        for ch in text:
            self.key(XK_RETURN if ch == "\n" else ord(ch))

    def send_clipboard(self, text: str, stream: int = 10) -> None:
        data = base64.b64encode(text.encode("utf-8")).decode()
        self.client.send("clipboard", stream, "text/plain")
        self.client.send("blob", stream, data)
        self.client.send("end", stream)

    def send_argv(self, name: str, value: str, stream: int = 12) -> None:
        self.client.send("argv", stream, "text/plain", name)
        self.client.send("blob", stream, base64.b64encode(value.encode()).decode())
        self.client.send("end", stream)
