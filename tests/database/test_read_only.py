"""Read-only mode against a hostile user, on the real servers: every trick fails and the
table is unchanged. Each statement goes the way the console sends it (guacr's refusal
first, then the server); where guacr refuses, the test also sends it straight to the
engine to show the server would have stopped it anyway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from servers.mariadb import MariaDBServer
from servers.postgresql import PostgreSQLServer

from guacr.handlers.database.engine import ConnectOptions, DatabaseError, Engine
from guacr.handlers.database.mysql import MySQLEngine
from guacr.handlers.database.postgresql import PostgreSQLEngine

MYSQL_SETUP = """
DELIMITER //
CREATE OR REPLACE FUNCTION testdb.sneaky() RETURNS INT MODIFIES SQL DATA
BEGIN INSERT INTO testdb.items VALUES (99, 'evil', 1, 1); RETURN 1; END//
CREATE OR REPLACE FUNCTION testdb.flip() RETURNS INT MODIFIES SQL DATA
BEGIN SET SESSION tx_read_only = 0; RETURN 1; END//
CREATE OR REPLACE PROCEDURE testdb.evil_proc() MODIFIES SQL DATA
BEGIN INSERT INTO testdb.items VALUES (98, 'proc', 1, 1); END//
DELIMITER ;
GRANT EXECUTE ON testdb.* TO 'guest'@'127.0.0.1';
"""

PG_SETUP = """
SET ROLE guest;
CREATE OR REPLACE FUNCTION sneaky() RETURNS int LANGUAGE sql
  AS $$ INSERT INTO items VALUES (99, 'evil', 1, 1) RETURNING 1 $$;
CREATE SEQUENCE IF NOT EXISTS seq;
"""

MYSQL_HOSTILE = [
    "SET SESSION tx_read_only=0",
    "SET SESSION TRANSACTION READ WRITE",
    "/*!50000 SET */ SESSION tx_read_only=0",
    "PREPARE s FROM 'INSERT INTO items VALUES (97, \\'prep\\', 1, 1)'",
    "EXECUTE s",
    "SELECT sneaky()",
    "CALL evil_proc()",
    "DROP TABLE items",
    "INSERT INTO items VALUES (96, 'plain', 1, 1)",
    "DELETE FROM items",
    "UPDATE items SET qty = 0",
    "SELECT 1; DROP TABLE items",
    "COMMIT",
    "START TRANSACTION READ WRITE",
    "LOCK TABLES items WRITE",
    "HANDLER items OPEN",
    "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE items",
    "SELECT * FROM items INTO OUTFILE '/tmp/guacr-ro-test.csv'",
    "CREATE TABLE t2 (a int)",
    "SELECT flip()",  # allowed: the function only flips the session setting ...
    "INSERT INTO items VALUES (95, 'after-flip', 1, 1)",  # ... which guacr re-asserts
    "DROP TABLE items",
]

PG_HOSTILE = [
    "SELECT set_config('default_transaction_read_only','off',false)",
    "INSERT INTO items VALUES (96, 'plain', 1, 1)",
    "WITH d AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM d",
    "BEGIN READ WRITE",
    "COMMIT",
    "ROLLBACK",
    "START TRANSACTION READ WRITE",
    "SELECT sneaky()",
    "SELECT set_config('transaction_read_only','off',true), sneaky()",
    "SELECT nextval('seq')",
    "DROP TABLE items",
    "TRUNCATE items",
    "UPDATE items SET qty = 0",
    "SELECT 1; DELETE FROM items",
    "COPY items FROM STDIN",
    "CREATE TABLE t2 (a int)",
    "SET transaction_read_only = off",  # harmless alone: guacr's ROLLBACK ends it ...
    "DELETE FROM items",  # ... and the next statement is read-only again
]


def _opts(server: MariaDBServer | PostgreSQLServer, read_only: bool = True) -> ConnectOptions:
    return ConnectOptions(
        host=server.host,
        port=server.port,
        user=server.username,
        password=server.password,
        database=server.database,
        ssl_mode="disable",
        read_only=read_only,
    )


@pytest.fixture
async def ro_engine(
    engine_name: str, db: MariaDBServer | PostgreSQLServer
) -> AsyncIterator[Engine]:
    if engine_name == "mysql":
        assert isinstance(db, MariaDBServer)
        db.admin(MYSQL_SETUP)
        engine: Engine = MySQLEngine(_opts(db))
    else:
        assert isinstance(db, PostgreSQLServer)
        db.admin(PG_SETUP, "testdb")
        engine = PostgreSQLEngine(_opts(db))
    await engine.connect()
    yield engine
    await engine.close()


def _snapshot(db: MariaDBServer | PostgreSQLServer) -> str:
    if isinstance(db, MariaDBServer):
        return db.admin("SELECT id, name, qty, price FROM testdb.items ORDER BY id")
    return db.admin("SELECT id, name, qty, price FROM items ORDER BY id", "testdb")


async def test_every_hostile_statement_fails_and_the_table_is_unchanged(
    ro_engine: Engine, engine_name: str, db: MariaDBServer | PostgreSQLServer
) -> None:
    before = _snapshot(db)
    assert before.count("\n") == 5
    hostile = MYSQL_HOSTILE if engine_name == "mysql" else PG_HOSTILE
    # These run (their effect dies with guacr's transaction or is re-asserted); the
    # writes that follow them must fail all the same.
    allowed = {
        "SELECT flip()",
        "SET transaction_read_only = off",
        "SELECT set_config('default_transaction_read_only','off',false)",
    }
    for stmt in hostile:
        refusal = ro_engine.refusal(stmt)
        if refusal is not None:
            assert stmt not in allowed
            continue
        if stmt in allowed:
            await ro_engine.execute(stmt, 10)
            continue
        with pytest.raises(DatabaseError):
            await ro_engine.execute(stmt, 10)
            pytest.fail(f"not refused: {stmt}")
    assert _snapshot(db) == before
    # reads still work
    result = await ro_engine.execute("SELECT count(*) FROM items", 10)
    assert result.rows[0][0] == 5


async def test_the_server_holds_even_for_statements_guacr_refuses(
    ro_engine: Engine, engine_name: str, db: MariaDBServer | PostgreSQLServer
) -> None:
    """Bypass guacr's refusal: the server-side wrapping alone keeps the data safe."""
    before = _snapshot(db)
    if engine_name == "mysql":
        sequence = [
            "SET SESSION tx_read_only=0",
            "SET SESSION TRANSACTION READ WRITE",
            "INSERT INTO items VALUES (94, 'direct', 1, 1)",
            "COMMIT",
            "DROP TABLE items",
            "PREPARE s FROM 'DELETE FROM items'",
            "EXECUTE s",
            "CALL evil_proc()",
        ]
    else:
        sequence = [
            "COMMIT",
            "BEGIN READ WRITE",
            "INSERT INTO items VALUES (94, 'direct', 1, 1)",
            "ROLLBACK",
            "DELETE FROM items",
        ]
    for stmt in sequence:
        try:
            await ro_engine.execute(stmt, 10)
        except DatabaseError:
            pass
    assert _snapshot(db) == before


async def test_writes_work_without_read_only(
    engine_name: str, db: MariaDBServer | PostgreSQLServer
) -> None:
    engine: Engine = (MySQLEngine if engine_name == "mysql" else PostgreSQLEngine)(
        _opts(db, read_only=False)
    )
    await engine.connect()
    try:
        await engine.execute("CREATE TABLE rw_probe (a int)", 10)
        result = await engine.execute("INSERT INTO rw_probe VALUES (1), (2)", 10)
        assert result.affected == 2
        result = await engine.execute("SELECT count(*) FROM rw_probe", 10)
        assert result.rows[0][0] == 2
        with pytest.raises(DatabaseError) as err:
            await engine.execute("SELECT 1; SELECT 2", 10)  # one statement per message
        assert err.value.code in ("1064", "42601")
    finally:
        await engine.execute("DROP TABLE rw_probe", 10)
        await engine.close()
