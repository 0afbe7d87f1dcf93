"""Fixtures for the RDP tests: one xrdp + xorgxrdp server for the whole run.

xrdp reconnects every login as guest to the same Xorg display, so the RDP tests share
one desktop and run one after another (never in parallel); tests that change it
(resize, root colour) put it back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers.xrdp import XrdpServer


@pytest.fixture(scope="session")
def xrdp() -> Iterator[XrdpServer]:
    with XrdpServer() as server:
        yield server
