"""The database consoles end to end: a real guacr daemon, real MariaDB and PostgreSQL
servers, and a Guacamole client that types and reads the answer off the drawn screen."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from pathlib import Path

import pytest
from database.db_helpers import UP_KEY, DbTerm
from ssh.ssh_helpers import TermClient
from servers import free_port
from servers.mariadb import MariaDBServer
from servers.postgresql import PostgreSQLServer

PROMPT = {"mysql": "MariaDB [testdb]>", "postgresql": "testdb=>"}
SLEEP = {"mysql": "SELECT SLEEP(30);", "postgresql": "SELECT pg_sleep(30);"}


def opened(console, engine: str, db, **values: str):
    """Open a console and wait for its prompt."""
    return console(engine, db, **values)


def ready(term, engine: str) -> DbTerm:
    t = DbTerm(term)
    t.wait_text(PROMPT[engine], timeout=15)
    return t


def admin(db, sql: str) -> str:
    """SQL on the server's side, as the owner of the test tables."""
    if isinstance(db, MariaDBServer):
        return db.admin(sql, "testdb")
    return db.admin("SET ROLE guest;" + sql, "testdb")


def test_query_result_is_a_table_with_null_drawn_distinctly(console, db, engine_name) -> None:
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type("SELECT id, name, qty FROM items WHERE id IN (1, 4) ORDER BY id;", enter=True)
        term.wait_text("2 rows in set")
        rows = [" ".join(line.split()) for line in term.screen()]
        assert "| 1 | apple | 10 |" in rows
        assert "| 4 | date | NULL |" in rows
        # NULL is faint; the text 'NULL' is drawn at full brightness
        term.type("SELECT 'NULL' AS n, NULL AS m;", enter=True)
        term.wait_text("1 row in set")
        screen = term.screen()
        r = max(i for i, line in enumerate(screen) if line.count("NULL") == 2)
        c1 = screen[r].find("NULL")
        c2 = screen[r].find("NULL", c1 + 1)
        text_colour, null_colour = term.cell_colour(r, c1), term.cell_colour(r, c2)
        assert sum(null_colour) < sum(text_colour), (text_colour, null_colour)


def test_multi_line_statement_history_and_errors(console, db, engine_name) -> None:
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type("SELECT name", enter=True)
        term.type("FROM items", enter=True)
        term.type("WHERE id = 3;", enter=True)
        term.wait_text("cherry")
        term.wait_text("1 row in set")
        assert "->" in term.text()  # the continuation prompt
        term.key(UP_KEY)  # history recalls the whole statement; run it again
        term.key(0xFF0D)
        term.wait(lambda: term.count_text("1 row in set") == 2, what="second run")
        term.type("SELECT * FROM no_such_table;", enter=True)
        code = "1146" if engine_name == "mysql" else "42P01"
        term.wait_text(f"ERROR {code}:")
        assert "no_such_table" in term.text()


def test_ctrl_c_cancels_a_running_query_on_the_server(console, db, engine_name) -> None:
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type(SLEEP[engine_name], enter=True)
        until = time.monotonic() + 0.5
        while time.monotonic() < until:  # keep answering syncs, as a client does
            term.pump(0.05)
        if engine_name == "mysql":
            probe = (
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE info LIKE 'SELECT SLEEP(30)%'"
            )
        else:
            probe = (
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE 'SELECT pg_sleep(30)%'"
            )
        assert db.admin(probe).strip() == "1"  # it really runs
        start = time.monotonic()
        term.ctrl("c")
        while db.admin(probe).strip() != "0":
            assert time.monotonic() - start < 1.0, "still running on the server after 1 s"
            term.pump(0.01)
        elapsed = time.monotonic() - start
        term.wait_text("cancelled", timeout=5)
        term.wait(lambda: term.count_text(PROMPT[engine_name]) >= 2, what="prompt back")
        assert elapsed < 1.0, elapsed
        term.type("SELECT 40 + 2;", enter=True)
        term.wait_text("42")


def test_read_only_mode_refuses_and_the_server_enforces(console, db, engine_name) -> None:
    before = admin(db, "SELECT count(*) FROM items")
    with console(engine_name, db, **{"read-only": "true"}) as raw:
        term = ready(raw, engine_name)
        assert "Read-only mode" in term.text()
        term.type("DELETE FROM items;", enter=True)
        term.wait_text("ERROR")
        term.type("BEGIN;", enter=True)
        term.wait_text("not allowed in read-only mode")
        term.type("SELECT count(*) AS n FROM items;", enter=True)
        term.wait_text("1 row in set")
    assert admin(db, "SELECT count(*) FROM items") == before


def test_client_commands(console, db, engine_name) -> None:
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type("help", enter=True)
        term.wait_text("export QUERY")
        if engine_name == "postgresql":
            term.type("\\dt", enter=True)
            term.wait_text("List of relations")
            term.wait_text("items")
            term.type("\\d items", enter=True)
            term.wait_text("numeric(8,2)")
            term.type("\\l", enter=True)
            term.wait_text("List of databases")
            term.type("\\c postgres", enter=True)
            term.wait_text("postgres=>")
        else:
            term.type("DESCRIBE items;", enter=True)
            term.wait_text("decimal(8,2)")
            term.type("SHOW TABLES;", enter=True)
            term.wait_text("Tables_in_testdb")
            term.type("USE information_schema", enter=True)
            term.wait_text("MariaDB [information_schema]>")
        term.type("quit", enter=True)
        term.wait(lambda: term.eof or not term.pump(0.1), what="session end")


def test_long_results_are_paged_and_capped_by_max_rows(console, db, engine_name) -> None:
    series = (
        "SELECT seq AS n FROM seq_1_to_2000;"
        if engine_name == "mysql"
        else "SELECT g AS n FROM generate_series(1, 2000) g;"
    )
    with console(engine_name, db, **{"max-rows": "50"}) as raw:
        term = ready(raw, engine_name)
        term.type(series, enter=True)
        term.wait_text("-- More")
        assert "| 1 |" in " ".join(term.text().split()) or "1 |" in term.text()
        term.key(ord(" "))
        term.wait_text("| 30 |" if False else "30")
        term.key(ord("q"))
        term.wait_text("2000 rows in set, first 50 shown")


def test_export_of_100000_rows_arrives_complete(console, db, engine_name) -> None:
    if engine_name == "mysql":
        query = "SELECT seq AS n, CONCAT('row-', seq) AS label FROM seq_1_to_100000"
    else:
        query = "SELECT g AS n, 'row-' || g AS label FROM generate_series(1, 100000) g"
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type(f"\\export {query}", enter=True)
        term.wait(lambda: bool(term.finished), timeout=60, what="download end")
        term.wait_text("Exported 100000 rows", timeout=10)
        assert len(term.finished) == 1
        got = term.finished[0]
        assert got["mimetype"] == "text/csv"
        rows = list(csv.reader(io.StringIO(bytes(got["data"]).decode())))
        assert rows[0] == ["n", "label"]
        assert len(rows) == 100001
        assert rows[1] == ["1", "row-1"] and rows[-1] == ["100000", "row-100000"]
        assert [int(r[0]) for r in rows[1:]] == list(range(1, 100001))


def test_export_of_a_table_with_nulls_and_quotes(console, db, engine_name) -> None:
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type("\\export SELECT id, name, qty, price FROM items ORDER BY id", enter=True)
        term.wait_text("Exported 5 rows")
        data = bytes(term.finished[0]["data"]).decode()
        lines = data.splitlines()
        assert lines[0] == "id,name,qty,price"
        assert lines[4] == "4,date,,2.75"  # NULL is an empty field
        assert lines[5] == "5,elderberry,50,"


def test_import_inserts_rows_in_a_transaction(console, db, engine_name) -> None:
    admin(db, "DROP TABLE IF EXISTS imported; CREATE TABLE imported (id int, label varchar(20));")
    data = b"id,label\n" + b"".join(b"%d,item %d\n" % (i, i) for i in range(1, 301))
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type("\\import imported", enter=True)
        term.wait_text("Upload a CSV file")
        term.upload("rows.csv", data)
        term.wait_text("Imported 300 rows into imported", timeout=20)
        # a bad file changes nothing: all rows or none
        term.type("\\import imported", enter=True)
        term.wait(lambda: term.count_text("Upload a CSV file") >= 2, what="second import")
        term.upload("bad.csv", b"id,label\n1,ok\nnot-a-number,bad\n", stream=22)
        term.wait_text("ERROR")
    got = admin(db, "SELECT count(*), sum(id) FROM imported").replace("|", " ").split()
    assert got == ["300", str(300 * 301 // 2)]


def test_import_and_export_obey_their_flags(console, db, engine_name) -> None:
    flags = {"disable-csv-export": "true", "disable-csv-import": "true"}
    with console(engine_name, db, **flags) as raw:
        term = ready(raw, engine_name)
        term.type("\\export SELECT 1", enter=True)
        term.wait_text("CSV export is disabled")
        term.type("\\import items", enter=True)
        term.wait_text("CSV import is disabled")
        assert not term.finished


def test_audit_lines(console, db, engine_name, tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    secret = "S3cret-audit-pw"
    if isinstance(db, MariaDBServer):
        db.admin(
            f"CREATE USER IF NOT EXISTS 'auditor'@'127.0.0.1' IDENTIFIED BY '{secret}';"
            "GRANT SELECT ON testdb.* TO 'auditor'@'127.0.0.1';"
        )
    else:
        db.admin(
            f"DO $$BEGIN CREATE ROLE auditor LOGIN PASSWORD '{secret}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END$$;"
            "GRANT SELECT ON items TO auditor;",
            "testdb",
        )
    values = {
        "audit-path": str(audit_dir),
        "create-audit-path": "true",
        "username": "auditor",
        "password": secret,
    }
    with console(engine_name, db, name="alice", **values) as raw:
        term = ready(raw, engine_name)
        term.type("SELECT id FROM items WHERE id < 3;", enter=True)
        term.wait_text("2 rows in set")
        term.type("SELECT * FROM nope;", enter=True)
        term.wait_text("ERROR")
    path = audit_dir / "audit.jsonl"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not path.exists() or path.read_text().count("\n") < 2):
        time.sleep(0.05)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    ok, bad = records[-2], records[-1]
    assert ok["statement"] == "SELECT id FROM items WHERE id < 3"
    assert ok["statement_class"] == "select" and ok["rows"] == 2 and ok["success"] is True
    assert ok["guacamole_user"] == "alice" and ok["database_user"] == "auditor"
    assert ok["database"] == "testdb" and ok["protocol"] == engine_name
    assert ok["server_address"] == f"{db.host}:{db.port}"
    assert ok["client_address"].startswith("127.0.0.1:")
    assert ok["connection"] == raw.connection_id
    assert isinstance(ok["duration_ms"], float) and ok["timestamp"].endswith("+00:00")
    assert bad["success"] is False and "nope" in bad["error"]
    assert secret not in path.read_text()


def test_wrong_password_is_769_with_the_servers_message(console, db, engine_name) -> None:
    with console(engine_name, db, password="wrong") as raw:
        term = DbTerm(raw)
        err = term.wait_for("error", timeout=15)
        assert err[2] == "769", err
        assert ("Access denied" in err[1]) if engine_name == "mysql" else ("password" in err[1])


def test_unreachable_server_is_519(console, db, engine_name) -> None:
    with console(engine_name, db, port=str(free_port()), timeout="2") as raw:
        term = DbTerm(raw)
        err = term.wait_for("error", timeout=15)
        assert err[2] == "519", err


def test_missing_password_is_asked_with_required(console, db, engine_name) -> None:
    with console(engine_name, db, password="") as raw:
        term = DbTerm(raw)
        req = term.wait_for("required", timeout=10)
        assert req[1:] == ("password",) or list(req[1:]) == ["password"]
        c = term.client
        c.send("argv", 30, "text/plain", "password")
        c.send("blob", 30, base64.b64encode(db.password.encode()).decode())
        c.send("end", 30)
        term.wait_text(PROMPT[engine_name], timeout=15)


def test_a_joiner_sees_the_same_console(console, db, engine_name, guacr_db) -> None:
    with console(engine_name, db) as raw:
        owner = ready(raw, engine_name)
        owner.type(
            "SELECT 'shared-' || 'view' AS s;"
            if engine_name == "postgresql"
            else "SELECT CONCAT('shared-', 'view') AS s;",
            enter=True,
        )
        owner.wait_text("shared-view")
        joiner_client = guacr_db.client()
        try:
            joiner_client.handshake(owner.connection_id, {"read-only": "true"})
            joiner = DbTerm(TermClient(joiner_client))
            joiner.wait_text("shared-view")
            joiner.type("SELECT 1;", enter=True)  # read-only joiner: ignored
            owner.type("SELECT 7 * 6 AS answer;", enter=True)
            joiner.wait_text("42")
            assert "SELECT 1;" not in joiner.text()
        finally:
            joiner_client.close()


def test_aliases_mariadb_and_postgres(console, db, engine_name) -> None:
    alias = "mariadb" if engine_name == "mysql" else "postgres"
    with console(alias, db) as raw:
        ready(raw, engine_name)


def test_typescript_records_the_console(console, postgresql, tmp_path: Path) -> None:
    values = {"typescript-path": str(tmp_path), "typescript-name": "ts"}
    with console("postgresql", postgresql, **values) as raw:
        term = ready(raw, "postgresql")
        term.type("SELECT 'typescript-' || 42 AS t;", enter=True)
        term.wait_text("1 row in set")
    deadline = time.monotonic() + 5
    data = b""
    while time.monotonic() < deadline:
        data = (tmp_path / "ts").read_bytes() if (tmp_path / "ts").exists() else b""
        if b"[END TYPESCRIPT]" in data:
            break
        time.sleep(0.05)
    assert b"typescript-42" in data and b"1 row in set" in data
    assert (tmp_path / "ts.timing").exists()


def test_old_clients_are_asked_for_the_password_in_the_terminal(console, mariadb) -> None:
    with console("mysql", mariadb, password="", version="VERSION_1_1_0") as raw:
        term = DbTerm(raw)
        term.wait_text("Password:", timeout=15)
        term.type(mariadb.password)
        term.type("X")  # echoed characters would show; the prompt does not echo
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            term.pump(0.05)
        line = next(r for r in term.screen() if "Password:" in r)
        assert line.strip() == "Password:", line
        term.key(0xFF08)  # Backspace removes the X
        term.key(0xFF0D)
        term.wait_text(PROMPT["mysql"], timeout=15)


def test_paste_runs_the_pasted_statements(console, postgresql) -> None:
    with console("postgresql", postgresql) as raw:
        term = ready(raw, "postgresql")
        term.send_clipboard("SELECT 'pasted-' ||\n 1 AS p;\nSELECT 'second-' || 2 AS q;\n")
        term.pump(0.2)
        term.mouse(100, 100, 4)  # right click pastes, as in guacd's terminal
        term.mouse(100, 100, 0)
        term.wait_text("pasted-1")
        term.wait_text("second-2")


def test_ctrl_c_cancels_an_export(console, db, engine_name) -> None:
    with console(engine_name, db) as raw:
        term = ready(raw, engine_name)
        term.type(f"\\export {SLEEP[engine_name].rstrip(';')}", enter=True)
        term.wait_text("Exporting to")
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            term.pump(0.05)
        start = time.monotonic()
        term.ctrl("c")
        term.wait_text("Export cancelled", timeout=5)
        assert time.monotonic() - start < 3
        term.wait(lambda: bool(term.finished), what="the download stream ended")
