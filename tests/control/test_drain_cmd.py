"""``guacr drain`` as a separate process against a served control API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from control.conftest import TOKEN
from control.fake_backend import FakeBackend
from guacr.control.server import ControlServer

ROOT = Path(__file__).resolve().parents[2]


def _run(port: int, tmp: Path, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    (tmp / "empty.conf").write_text("")
    env = dict(os.environ, GUACR_GRPC_TOKEN=token, PYTHONPATH=str(ROOT))
    code = "import sys; from guacr.control.drain_cmd import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "--address", f"127.0.0.1:{port}",
         "--config", str(tmp / "empty.conf"), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


async def test_drain_wait_and_resume(backend: FakeBackend, control: ControlServer, tmp_path: Path) -> None:
    backend.add("$a")

    async def end_session_soon() -> None:
        await asyncio.sleep(1.5)
        backend.sessions.clear()

    ender = asyncio.create_task(end_session_soon())
    r = await asyncio.to_thread(_run, control.port, tmp_path, "--wait", "20")
    await ender
    assert r.returncode == 0, r.stderr
    assert backend.draining
    assert r.stdout.splitlines() == [
        "draining: 1 session(s), 1 user(s), 2/2 workers ready",
        "draining: 0 session(s), 0 user(s), 2/2 workers ready",
    ]
    backend.add("$b")
    r = await asyncio.to_thread(_run, control.port, tmp_path, "--wait", "0.5")
    assert r.returncode == 2 and "1 session(s)" in r.stdout  # still live after the wait
    r = await asyncio.to_thread(_run, control.port, tmp_path, "--resume")
    assert r.returncode == 0 and r.stdout.startswith("serving") and not backend.draining
    r = await asyncio.to_thread(_run, control.port, tmp_path, "--status", token="wrong-token-0123456789")
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr
