"""guacd's daemon conventions: detaching without -f, the PID file, bad flags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from guacr_process import ECHO, ROOT, Client, free_port


def daemon_pids(marker: str) -> list[int]:
    """PIDs of guacr processes whose command line holds ``marker`` (our unique config)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd and " -m guacr" in cmd:
                pids.append(int(entry.name))
    return pids


def test_background_daemon_writes_pidfile_and_serves(tmp_path: Path) -> None:
    port = free_port()
    pidfile = tmp_path / "guacr.pid"
    conf = tmp_path / "guacd.conf"
    conf.write_text(
        f"[server]\nbind_host = 127.0.0.1\nbind_port = {port}\n"
        f"[guacr]\nworkers = 1\nmetrics_bind_port = {free_port()}\n"  # 9464 may be taken
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), GUACR_HANDLERS=ECHO)
    try:
        started = subprocess.run(
            [sys.executable, "-m", "guacr", "--config", str(conf), "-p", str(pidfile)],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr  # returns once detached
        deadline = time.monotonic() + 60  # generous: start-up on a loaded machine
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = pidfile.read_text()
        assert text.endswith("\n"), "PID file must be complete as soon as it exists"
        pid = int(text)
        os.kill(pid, 0)
        last: Exception | None = None
        while time.monotonic() < deadline:  # the worker may still be booting
            try:
                with Client(port) as c:
                    assert c.handshake("echo", {}).startswith("$")
                break
            except (EOFError, AssertionError, OSError) as exc:  # refused, reset, timed out
                last = exc
                time.sleep(0.1)
        else:
            raise AssertionError(f"daemon never served a handshake: {last!r}")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while daemon_pids(str(conf)):
            assert time.monotonic() < deadline, "daemon did not stop on SIGTERM"
            time.sleep(0.05)
        assert not pidfile.exists()  # removed on clean exit
    finally:
        for leftover in daemon_pids(str(conf)):  # never leave a daemon behind
            os.kill(leftover, signal.SIGKILL)


def test_invalid_log_level_exits_1() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "guacr", "-L", "loud", "-f"], capture_output=True, text=True
    )
    assert out.returncode == 1 and "log level" in out.stderr
