"""Fixtures for the RDP tests: one xrdp + xorgxrdp server per test module.

Each server has its own ports and mount namespace (tests/servers/xrdp.py), so servers
of concurrent runs do not collide; helpers working in parallel still serialise their
RDP test runs (``flock /work/wt/xrdp.lock``), as they share guest's home directory.

xrdp reconnects every login as guest to the same Xorg display, so the RDP tests share
one desktop and run one after another (never in parallel); tests that change it
(resize, root colour) put it back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.xrdp import XrdpServer, _set


# A static channel the tests use (tests/rdp/test_rdp_handler.py): xrdp blocks every
# channel its xrdp.ini does not list, as an administrator would have to allow it.
TEST_CHANNEL = "gtest"


class TestXrdpServer(XrdpServer):
    """The tests' xrdp, allowing :data:`TEST_CHANNEL`."""

    def _write_config(self) -> tuple[Path, Path]:
        xrdp_ini, sesman_ini = super()._write_config()
        xrdp_ini.write_text(_set(xrdp_ini.read_text(), "Channels", TEST_CHANNEL, "true"))
        return xrdp_ini, sesman_ini


@pytest.fixture(scope="module")
def xrdp() -> Iterator[XrdpServer]:
    with TestXrdpServer() as server:
        yield server


class FreshXrdpServer(XrdpServer):
    """xrdp + sesman without guest's session: the first RDP login creates it, so what
    only a new session honours (the alternate shell, ``initial-program``) shows."""

    def _create_session(self) -> None:
        pass

    def wait_xterm(self, timeout: float = 20.0) -> None:
        pass

    def stop(self) -> None:
        # The session an RDP login created: its display, for XrdpServer's clean-up.
        found = re.findall(r"display[ =:]+:?(\d+)", self.log("sesman.log"))
        if found and not self.display:
            self.display = f":{found[-1]}"
        super().stop()


@pytest.fixture(scope="module")
def fresh_xrdp() -> Iterator[XrdpServer]:
    with FreshXrdpServer() as server:
        yield server
