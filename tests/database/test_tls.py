"""TLS to the database servers (``ssl-mode``, ``ssl-ca``), end to end through a real guacr
daemon against MariaDB and PostgreSQL serving TLS with a throwaway CA. Each session asks
its own server whether it is encrypted, so a silent plain-text fallback fails the test."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from database.db_helpers import DbTerm
from guacr.handlers.database.engine import ConnectOptions, ssl_context
from servers.certs import make_ca
from servers.mariadb import MariaDBServer
from servers.postgresql import PostgreSQLServer

PROMPT = {"mysql": "MariaDB [testdb]>", "postgresql": "testdb=>"}
# The session's own view of its transport; the typed text never contains the answer.
TLS_PROBE = {
    "mysql": "SELECT CONCAT('tls-', IF(VARIABLE_VALUE <> '', 'on', 'off')) AS t "
    "FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher';",
    "postgresql": "SELECT CONCAT('tls-', CASE WHEN ssl THEN 'on' ELSE 'off' END) AS t "
    "FROM pg_stat_ssl WHERE pid = pg_backend_pid();",
}


@pytest.fixture(scope="module")
def mariadb_tls() -> Iterator[MariaDBServer]:
    with MariaDBServer(tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def postgresql_tls() -> Iterator[PostgreSQLServer]:
    """TLS only: ``pg_hba.conf`` accepts TCP logins over TLS (``hostssl``) and nothing else."""
    with PostgreSQLServer(tls_only=True) as server:
        yield server


@pytest.fixture
def tls_db(engine_name: str, request: pytest.FixtureRequest) -> MariaDBServer | PostgreSQLServer:
    server = request.getfixturevalue("mariadb_tls" if engine_name == "mysql" else "postgresql_tls")
    assert isinstance(server, MariaDBServer | PostgreSQLServer)
    return server


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing the servers present."""
    path, _key = make_ca(tmp_path_factory.mktemp("wrong-ca"), "unrelated CA")
    return path


def transport(console, engine: str, server, **values: str) -> str:
    """Open a console with ``values`` and return 'tls-on' or 'tls-off' as the server says."""
    with console(engine, server, **values) as raw:
        term = DbTerm(raw)
        term.wait_text(PROMPT[engine], timeout=15)
        term.type(TLS_PROBE[engine], enter=True)
        term.wait_text("1 row in set")
        text = term.text()
        assert ("tls-on" in text) != ("tls-off" in text), text
        return "tls-on" if "tls-on" in text else "tls-off"


def failure(console, engine: str, server, **values: str) -> tuple[str, str]:
    """Open a console that must fail: the ``error`` instruction's (message, status)."""
    with console(engine, server, **values) as raw:
        term = DbTerm(raw)
        err = term.wait_for("error", timeout=15)
        assert PROMPT[engine] not in term.text()
        return str(err[1]), str(err[2])


def test_require_connects_over_tls(console, tls_db, engine_name) -> None:
    assert transport(console, engine_name, tls_db, **{"ssl-mode": "require"}) == "tls-on"


def test_prefer_uses_tls_when_the_server_offers_it(console, tls_db, engine_name) -> None:
    assert transport(console, engine_name, tls_db, **{"ssl-mode": "prefer"}) == "tls-on"


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verify_with_the_right_ca_connects(console, tls_db, engine_name, mode) -> None:
    assert tls_db.tls is not None
    values = {"ssl-mode": mode, "ssl-ca": str(tls_db.tls.ca)}
    assert transport(console, engine_name, tls_db, **values) == "tls-on"


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verify_with_a_wrong_ca_fails_519(
    console, tls_db, engine_name, mode, wrong_ca, guacr_db
) -> None:
    values = {"ssl-mode": mode, "ssl-ca": str(wrong_ca)}
    message, status = failure(console, engine_name, tls_db, **values)
    assert status == "519", (message, status)
    assert "TLS" in message and "certificate verify failed" in message, message
    assert f"session refused (ssl-mode {mode}): TLS connection to" in guacr_db.log()


@pytest.mark.parametrize("engine_name", ["postgresql"])
def test_ssl_context_follows_libpq_sslmode(tls_db) -> None:
    """verify-full checks the name, verify-ca only the chain, require nothing (no CA)."""
    assert tls_db.tls is not None
    ca = str(tls_db.tls.ca)

    def ctx(mode: str, cafile: str | None) -> ssl.SSLContext | None:
        return ssl_context(ConnectOptions("127.0.0.1", 1, "u", "p", ssl_mode=mode, ssl_ca=cafile))

    assert ctx("disable", ca) is None
    full, verify_ca, require = ctx("verify-full", ca), ctx("verify-ca", ca), ctx("require", None)
    assert full is not None and full.check_hostname and full.verify_mode == ssl.CERT_REQUIRED
    assert verify_ca is not None and not verify_ca.check_hostname
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED
    assert require is not None and require.verify_mode == ssl.CERT_NONE


def test_disable_against_a_tls_only_server_fails_clearly(console, postgresql_tls) -> None:
    message, status = failure(console, "postgresql", postgresql_tls, **{"ssl-mode": "disable"})
    assert status == "515", (message, status)
    assert "no encryption" in message, message


def test_prefer_against_a_plain_server_connects_plain(console, db, engine_name) -> None:
    assert transport(console, engine_name, db, **{"ssl-mode": "prefer"}) == "tls-off"


def test_require_against_a_plain_server_fails_519(console, db, engine_name) -> None:
    message, status = failure(console, engine_name, db, **{"ssl-mode": "require"})
    assert status == "519", (message, status)
    assert "TLS" in message, message
