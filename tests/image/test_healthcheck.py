"""docker/healthcheck.py on the host: ``/health/live`` decides, 4822 only when the
metrics door is off."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from guacr_process import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "docker" / "healthcheck.py"


@contextmanager
def http_server(live_status: int) -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(live_status if self.path == "/health/live" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=full, capture_output=True, text=True, timeout=30
    )


def test_health_live_200_is_healthy() -> None:
    with http_server(200) as (port, paths):
        done = run({"GUACR_METRICS_BIND_PORT": str(port)})
    assert done.returncode == 0, done.stderr
    assert paths == ["/health/live"]


def test_health_live_failing_is_unhealthy() -> None:
    with http_server(503) as (port, _paths):
        done = run({"GUACR_METRICS_BIND_PORT": str(port)})
    assert done.returncode == 1
    assert done.stderr.strip() == f"unhealthy: 127.0.0.1:{port}/health/live answered HTTP 503"
    closed = free_port()
    done = run({"GUACR_METRICS_BIND_PORT": str(closed)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: 127.0.0.1:{closed}/health/live:")


def test_metrics_door_off_falls_back_to_the_guacamole_handshake() -> None:
    closed = free_port()
    done = run({"GUACR_METRICS_BIND_PORT": "0", "GUACR_BIND_PORT": str(closed)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: 127.0.0.1:{closed}")
