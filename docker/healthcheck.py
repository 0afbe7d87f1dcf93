"""The image's HEALTHCHECK: guacr answers a Guacamole handshake, not just a TCP connect.

Sends ``select ssh`` to 127.0.0.1 (port: the first argument, else ``GUACR_BIND_PORT``,
else 4822) and expects ``args`` starting with a protocol version within the timeout;
exits 0 if so, 1 with a one-line reason otherwise. An open port alone proves little: a
daemon whose workers cannot start still accepts connections. Once guacr has its metrics
door, ``/health/live`` there is the better check.
"""

from __future__ import annotations

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


def main(argv: list[str]) -> int:
    port = int(argv[1] if len(argv) > 1 else os.environ.get("GUACR_BIND_PORT") or 4822)
    problem = check(port)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
