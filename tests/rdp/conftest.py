"""Fixtures for the RDP tests: one xrdp + xorgxrdp server per test module.

xrdp-sesman must use the fixed port 3350, so only one server runs on a machine at a
time: module scope frees it as soon as a module's tests are done (a concurrent test
run waits for it).

xrdp reconnects every login as guest to the same Xorg display, so the RDP tests share
one desktop and run one after another (never in parallel); tests that change it
(resize, root colour) put it back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers.xrdp import XrdpServer


@pytest.fixture(scope="module")
def xrdp() -> Iterator[XrdpServer]:
    with XrdpServer() as server:
        yield server
