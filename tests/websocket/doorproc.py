"""Start guacr with its WebSocket door (4823) open, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from guacr_process import ECHO, Guacr, free_port, run_guacr
from servers import _self_signed_cert

LITE_KEY = "MySuperSecretKeyForParamsToken12"
TOKEN_KEY = "websocket tests token key, not secret"
HANDLERS = (
    ECHO + ",ssh=guacr.handlers.ssh:SSHHandler" + ",vnc=guacr.handlers.vnc.handler:VNCHandler"
)


@dataclass
class Door:
    guacr: Guacr
    ws_port: int

    @property
    def tcp_port(self) -> int:
        return self.guacr.port


def start_door(
    tmp: Path, workers: int = 2, extra: list[str] | None = None, **env: str
) -> Iterator[Door]:
    ws_port = free_port()
    full = {
        "GUACR_WEBSOCKET_BIND_PORT": str(ws_port),
        "GUACR_GUACAMOLE_LITE_KEY": LITE_KEY,
        "GUACR_TOKEN_KEY": TOKEN_KEY,
        **env,
    }
    with run_guacr(tmp, workers=workers, extra=extra, env=full, handlers=HANDLERS) as g:
        yield Door(g, ws_port)


def start_wss_door(tmp: Path, workers: int = 2, **env: str) -> Iterator[Door]:
    """:func:`start_door` with TLS on the door (``wss``), on a throw-away certificate."""
    cert, key = _self_signed_cert(tmp)
    tls = {"GUACR_WEBSOCKET_TLS": "true", "GUACR_WEBSOCKET_CERT": str(cert),
           "GUACR_WEBSOCKET_KEY": str(key)}  # fmt: skip
    yield from start_door(tmp, workers=workers, **{**tls, **env})
