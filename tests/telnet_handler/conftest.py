"""Fixtures for the Telnet handler tests: one guacr daemon per module, loading the handler."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from guacr_process import Guacr, run_guacr
from servers import TelnetServer
from telnet_handler.telnet_helpers import HANDLERS, Connect, TelnetTerm, telnet_values


@pytest.fixture(scope="module")
def guacr_telnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-telnet"), workers=1, handlers=HANDLERS) as g:
        yield g


@pytest.fixture
def connect(guacr_telnet: Guacr, telnetd: TelnetServer) -> Connect:
    """``with connect(**params) as term:`` a terminal client on a telnet connection."""

    @contextmanager
    def _connect(
        size: tuple[int, int, int] = (800, 480, 96), **values: str
    ) -> Iterator[TelnetTerm]:
        client = guacr_telnet.client()
        try:
            term = TelnetTerm(client)
            term.connection_id = client.handshake(
                "telnet", telnet_values(telnetd, **values), size=size
            )
            yield term
        finally:
            client.close()

    return _connect
