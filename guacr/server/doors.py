"""Front doors: the listening sockets guacr opens, one per :class:`ListenerSpec`.

The main process binds them (guacr.cli) and keeps them for its whole life, so a
listener that dies and is forked again finds them open, with the clients that
connected meanwhile waiting in the backlog. Each door's ``kind`` decides where the
client's ``select`` is read (:data:`SELECT_READ_BY`):

* ``tcp``: by the listener itself (guacr.server.intake), which then routes the client;
* ``tls``: by a worker, after it terminated TLS (a TLS session cannot move between
  processes), see guacr.server.tls;
* ``ws``: never: the listener reads the WebSocket upgrade and routes from its token
  (guacr.server.ws_door);
* ``wss``: never either, but the upgrade and token are read by a worker, after it
  terminated TLS (guacr.server.wss).

A kind not listed here is refused at start-up with one clear line.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

from guacr.config import ListenerSpec

BACKLOG = 1024  # clients queued while a listener is busy or being restarted (>= 512)

SELECT_READ_BY: dict[str, Literal["listener", "worker"]] = {
    "tcp": "listener",
    "tls": "worker",
    "ws": "listener",  # no select: the token routes (guacr.server.ws_door)
    "wss": "worker",  # no select: TLS, upgrade and token in a worker (guacr.server.wss)
}

_SETTING = {
    "tcp": "bind_port",
    "tls": "bind_port",
    "ws": "websocket_bind_port",
    "wss": "websocket_bind_port",
}


def unsupported(specs: list[ListenerSpec]) -> str:
    """An error line for the first spec whose kind this build cannot serve, else ''."""
    for spec in specs:
        if spec.kind not in SELECT_READ_BY:
            setting = _SETTING.get(spec.kind, "websocket_bind_port")
            return f"{setting}: the {spec.kind} door is not available in this version of guacr"
    return ""


@dataclass
class Door:
    """A bound, listening socket and the spec it was opened for."""

    spec: ListenerSpec
    sock: socket.socket

    @classmethod
    def bind(cls, spec: ListenerSpec) -> Door:
        """Bind the first resolved address that works, like guacd."""
        last: OSError | None = None
        for family, type_, proto, _name, addr in socket.getaddrinfo(
            spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        ):
            sock = socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
                sock.listen(BACKLOG)
                return cls(spec, sock)
            except OSError as exc:
                last = exc
                sock.close()
        raise OSError(f"Unable to bind {spec.host}:{spec.port}: {last}")
