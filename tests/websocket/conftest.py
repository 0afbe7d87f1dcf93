"""Fixtures for the WebSocket door's end-to-end tests: guacr with 4823 open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websocket.doorproc import Door, start_door


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    yield from start_door(tmp_path_factory.mktemp("ws-door"))
