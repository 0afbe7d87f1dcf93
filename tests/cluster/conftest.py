"""Several guacr instances sharing one real ``redis-server`` on loopback.

Leases are short here (``LEASE`` s) so expiry is seen quickly; every wait is for a
condition with a generous timeout, never a fixed sleep, so a loaded machine is fine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from guacr_process import ECHO, Guacr, free_port, run_guacr
from servers.redis import RedisServer

LEASE = 2.0
TOKEN_KEY = "cluster-test-token-key-0123456789"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def instance(
    tmp: Path,
    redis: RedisServer,
    websocket: bool = False,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    handlers: str = ECHO,
) -> Iterator[Guacr]:
    """One guacr instance (one worker) on the shared registry."""
    full = {
        "GUACR_REGISTRY_URL": redis.url,
        "GUACR_REGISTRY_LEASE_S": str(LEASE),
        "GUACR_METRICS_BIND_PORT": "0",
        "GUACR_GRPC_BIND_PORT": "0",
        "GUACR_WEBSOCKET_BIND_PORT": "0",
    }
    if websocket:
        full["GUACR_WEBSOCKET_BIND_PORT"] = str(free_port())
        full["GUACR_TOKEN_KEY"] = TOKEN_KEY
    full.update(env or {})
    with run_guacr(tmp, workers=1, env=full, extra=extra, handlers=handlers) as g:
        g.ws_port = int(full["GUACR_WEBSOCKET_BIND_PORT"])  # type: ignore[attr-defined]
        yield g


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Guacr]]:
    """Instances A, B and C."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(instance(tmp_path / name, redis_server, websocket=True))
            for name in "abc"
            if (tmp_path / name).mkdir() is None
        ]
