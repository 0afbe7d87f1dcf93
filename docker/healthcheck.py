"""The image's HEALTHCHECK: ``GET /health/live`` on guacr's metrics door.

Asks ``http://127.0.0.1:PORT/health/live`` (PORT: ``GUACR_METRICS_BIND_PORT``, else
9464) and exits 0 on HTTP 200, 1 with a one-line reason otherwise; the same endpoint
Kubernetes' liveness probe uses (deploy/kubernetes). The listener answers it from its
own event loop, so a listener that is hung or gone is unhealthy, not just a closed port.

With the metrics door off (``GUACR_METRICS_BIND_PORT=0``) it falls back to a Guacamole
handshake on 4822 (port: the first argument, else ``GUACR_BIND_PORT``, else 4822):
``select ssh`` must get ``args`` with a protocol version.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

from guacr.errors import ProtocolError
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Parser

TIMEOUT = 4.0  # seconds; Docker's --timeout is 5


def check(port: int, host: str = "127.0.0.1") -> str | None:
    """None when the handshake starts as it should, else what went wrong."""
    parser = Parser()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
            sock.sendall(encode("select", "ssh"))
            while True:
                data = sock.recv(65536)
                if not data:
                    return f"{host}:{port} closed the connection without answering"
                for ins in parser.receive_data(data):
                    if ins[0] == "args" and len(ins) > 1 and ins[1].startswith("VERSION_"):
                        return None
                    return f"{host}:{port} answered {ins[0]!r} instead of 'args'"
    except (OSError, ProtocolError) as exc:
        return f"{host}:{port}: {exc}"


def check_live(port: int, host: str = "127.0.0.1") -> str | None:
    """None when ``/health/live`` answers 200, else what went wrong."""
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/health/live")
        response = conn.getresponse()
        if response.status != 200:
            return f"{host}:{port}/health/live answered HTTP {response.status}"
        return None
    except (OSError, http.client.HTTPException) as exc:
        return f"{host}:{port}/health/live: {exc}"
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    metrics = int(os.environ.get("GUACR_METRICS_BIND_PORT") or 9464)
    if metrics:
        problem = check_live(metrics)
    else:
        port = int(argv[1] if len(argv) > 1 else os.environ.get("GUACR_BIND_PORT") or 4822)
        problem = check(port)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
