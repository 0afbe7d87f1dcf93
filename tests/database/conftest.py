"""Fixtures for the database console tests: real MariaDB and PostgreSQL servers (one of
each per test session), one guacr daemon per module, and terminal clients on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from guacr_process import Guacr, run_guacr
from servers.mariadb import MariaDBServer
from servers.postgresql import PostgreSQLServer
from database.db_helpers import HANDLERS
from ssh.ssh_helpers import TermClient


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    with MariaDBServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQLServer]:
    with PostgreSQLServer() as server:
        yield server


@pytest.fixture(params=["mysql", "postgresql"])
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(engine_name: str, request: pytest.FixtureRequest) -> MariaDBServer | PostgreSQLServer:
    """The real server for ``engine_name``."""
    server = request.getfixturevalue("mariadb" if engine_name == "mysql" else "postgresql")
    assert isinstance(server, MariaDBServer | PostgreSQLServer)
    return server


@pytest.fixture(scope="module")
def guacr_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-db"), workers=1, handlers=HANDLERS) as g:
        yield g


def db_values(server: MariaDBServer | PostgreSQLServer, **extra: str) -> dict[str, str]:
    values = {
        "hostname": server.host,
        "port": str(server.port),
        "username": server.username,
        "password": server.password,
        "database": server.database,
        "ssl-mode": "disable",
    }
    values.update(extra)
    return values


@pytest.fixture
def console(guacr_db: Guacr) -> Callable[..., object]:
    """``with console(protocol, server, **params) as term:`` a terminal client."""

    @contextmanager
    def _open(
        protocol: str,
        server: MariaDBServer | PostgreSQLServer,
        size: tuple[int, int, int] = (800, 480, 96),
        name: str = "",
        version: str = "VERSION_1_5_0",
        **values: str,
    ) -> Iterator[TermClient]:
        client = guacr_db.client()
        try:
            term = TermClient(client)
            term.connection_id = client.handshake(
                protocol, db_values(server, **values), size=size, name=name, version=version
            )
            yield term
        finally:
            client.close()

    return _open
