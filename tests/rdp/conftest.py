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

import pytest
from servers.xrdp import XrdpServer


@pytest.fixture(scope="module")
def xrdp() -> Iterator[XrdpServer]:
    with XrdpServer() as server:
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
