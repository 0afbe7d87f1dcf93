"""Fixtures for the WebSocket door's end-to-end tests: guacr with 4823 open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websocket.doorproc import Door, start_door


# One daemon for every module here (test_door, test_ssh_door): their tests use their
# own tokens and connections and never reconfigure it, so they cannot interfere.
@pytest.fixture(scope="session")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    yield from start_door(tmp_path_factory.mktemp("ws-door"))
