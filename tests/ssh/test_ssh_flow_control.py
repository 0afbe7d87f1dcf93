"""How far an SSH host may run ahead of a terminal session that stopped reading.

The session pauses reading when its backlog is full (guacr.frontend.session); what the
host can still produce is bounded by the channel's receive window. A handler against
the real sshd, in-process, with a stand-in connection (no client needed).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from servers import SSHServer
from ssh.fakes import FakeConn
from ssh.ssh_helpers import ssh_values

from guacr.contract.params import Params
from guacr.handlers.ssh.handler import TERMINAL_WINDOW, SSHHandler

TOTAL = 8_000_000  # bytes the command writes, far more than any window


async def _size_settles(path: Path, at_least: int = 1, quiet: float = 1.5) -> int:
    """The file's size once it has stopped growing for ``quiet`` seconds."""
    deadline = time.monotonic() + 30
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif size >= at_least and time.monotonic() - since >= quiet:
            return size
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} still growing after 30 s ({last} bytes)")


async def _grows_to(path: Path, size: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} stopped at {path.stat().st_size} of {size} bytes")


async def test_a_paused_session_holds_the_host_to_its_small_window(
    sshd: SSHServer, shared_dir: Path
) -> None:
    """``tee`` records what the host produced: while the session reads nothing, that
    stops near the window (plus the pty's and pipes' buffers), far below asyncssh's
    2 MB default; once reading resumes, everything arrives."""
    handler = SSHHandler(FakeConn(), Params(SSHHandler.PARAMS, ssh_values(sshd)))
    task = asyncio.ensure_future(handler.run())
    try:
        deadline = time.monotonic() + 30
        while handler._chan is None:
            assert time.monotonic() < deadline and not task.done(), "no terminal channel"
            await asyncio.sleep(0.05)
        assert handler._chan.get_recv_window() == TERMINAL_WINDOW
        handler._pause()  # what the session does when its backlog is full
        out = shared_dir / "produced"
        handler._write(f"head -c {TOTAL} /dev/zero | tr '\\0' a | tee {out}\n".encode())
        produced = await _size_settles(out)
        # Without the small window the host gets >= 2 MB ahead (asyncssh's default).
        assert produced < 1_000_000, produced
        handler._resume()
        await _grows_to(out, TOTAL)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await handler.close()
