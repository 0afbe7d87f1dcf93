"""Dev-time tool: record real programs' terminal output for the golden-screen tests.

Runs each program on a pseudo-terminal of a fixed size (TERM=xterm-256color,
LANG=C.UTF-8), types the scripted keys, and stores every byte the program wrote
under `captured/<name>.<part>.bin`, one file per phase (e.g. "vi open" and "vi
quit"). The expected screens (`<name>.<part>.screen.txt`) come from replaying the
same bytes in tmux, an independent emulator, and were checked by eye.

Usage: python tests/terminal/capture.py [name ...]   (not run by the test suite)
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

HERE = Path(__file__).parent / "captured"
FIXTURE = Path(tempfile.gettempdir()) / "guacr-capture"


def _fixture() -> None:
    shutil.rmtree(FIXTURE, ignore_errors=True)
    (FIXTURE / "subdir").mkdir(parents=True)
    (FIXTURE / "notes.txt").write_text("first line\nsecond line\nthird line\n")
    (FIXTURE / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (FIXTURE / "run.sh").chmod(0o755)
    (FIXTURE / "link").symlink_to("notes.txt")
    (FIXTURE / "archive.tar.gz").write_bytes(b"x")
    (FIXTURE / "long.txt").write_text(
        "".join(f"line {i:03d} of the long file\n" for i in range(200))
    )


def _drain(fd: int, quiet: float, limit: float) -> bytes:
    out = bytearray()
    start = last = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last > quiet or now - start > limit:
            return bytes(out)
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk
            last = time.monotonic()


def record(
    name: str, argv: list[str], cols: int, rows: int, script: list[tuple[str, bytes]]
) -> None:
    """Run argv on a PTY; before each (part, keys) step save output so far as `part`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(FIXTURE),
        "PATH": "/usr/bin:/bin",
        "LS_COLORS": "",
        "COLUMNS": str(cols),
        "LINES": str(rows),
    }
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=FIXTURE,
        start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    for part, keys in script:
        data = _drain(master, quiet=0.7, limit=10)
        (HERE / f"{name}.{part}.bin").write_bytes(data)
        if keys:
            os.write(master, keys)
    proc.wait(timeout=10)
    os.close(master)


CAPTURES = {
    "ls": (["ls", "-l", "--color=always", "--time-style=+X"], 80, 24, [("out", b"")]),
    "vi": (
        ["sh", "-c", "echo before vi; vi -u NONE -N notes.txt; echo after vi"],
        80,
        24,
        [("open", b":q\r"), ("quit", b"")],
    ),
    "vilong": (
        ["vi", "-u", "NONE", "-N", "long.txt"],
        80,
        24,
        [("open", b"\x05\x05\x05"), ("scrolled", b"\x19"), ("back", b":q\r"), ("quit", b"")],
    ),
    "less": (
        ["sh", "-c", "echo before less; less long.txt; echo after less"],
        80,
        24,
        [("open", b" "), ("page2", b"q"), ("quit", b"")],
    ),
    "top": (["top", "-n", "1"], 100, 30, [("out", b"")]),
    "colors": (
        [
            "printf",
            "\\033[38;5;196mA\\033[48;5;21mB\\033[0m \\033[38;2;10;20;30mC\\033[48;2;200;100;50mD"
            "\\033[0m \\033[1;3;4;5;7;9mE\\033[0m \\033[91mF\\033[0m \\033[4:3mG\\033[0m"
            " \\033[21mH\\033[0m\\n",
        ],
        40,
        5,
        [("out", b"")],
    ),
    "wide": (
        ["printf", "日本語テキスト|e\\u0301x|한국어|ａｂ|\\u00e9\\u0302z\\n"],
        30,
        5,
        [("out", b"")],
    ),
}


def main(names: list[str]) -> None:
    _fixture()
    HERE.mkdir(exist_ok=True)
    for name in names or list(CAPTURES):
        argv, cols, rows, script = CAPTURES[name]
        record(name, argv, cols, rows, script)
        print(name, "done")


if __name__ == "__main__":
    main(sys.argv[1:])
