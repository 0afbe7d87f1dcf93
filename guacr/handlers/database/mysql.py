"""MySQL and MariaDB sessions through asyncmy.

asyncmy always announces multi-statement support when it logs in, so right after
connecting guacr switches it off on the server with ``COM_SET_OPTION``: from then on
the server itself rejects a second statement in one query, whatever the text hides.

Read-only mode is enforced by the server: the session is ``SET SESSION TRANSACTION READ
ONLY``, and every statement runs inside a ``START TRANSACTION READ ONLY`` that guacr
opens and ends with ``ROLLBACK``, after re-asserting the session setting (a stored
function can switch the session to read-write for the *next* transaction, never for the
running one; DDL, which commits implicitly, then still meets a read-only session).
``SET``, ``PREPARE``/``EXECUTE``, ``CALL``, ``HANDLER``, ``LOAD``, ``LOCK`` and
transaction control are refused before they are sent, and so is ``INTO OUTFILE``.

Ctrl+C sends ``KILL QUERY <thread id>`` on a second, short-lived connection (the first
is busy reading the result).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import ssl
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Final

import asyncmy
from asyncmy import errors as my_errors
from asyncmy.cursors import SSCursor

from guacr.handlers.database.engine import (
    AuthFailed,
    ConnectOptions,
    DatabaseError,
    Engine,
    Result,
    TLSFailed,
    Unreachable,
    ssl_context,
    tls_reason,
)
from guacr.handlers.database.sql import Dialect, first_keyword

COM_SET_OPTION: Final = 0x1B
MULTI_STATEMENTS_OFF: Final = 1
_AUTH_ERRORS: Final = frozenset({1044, 1045, 1698, 1251})
_UNREACHABLE: Final = frozenset({2002, 2003, 2005, 2006, 2013})
_COUNT_BATCH: Final = 5000
INSERT_BATCH: Final = 500

log = logging.getLogger(__name__)


def _error(exc: BaseException) -> DatabaseError:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return DatabaseError(str(args[0]), str(args[1]))
    return DatabaseError("", str(exc) or type(exc).__name__)


def quote_ident(name: str) -> str:
    """A MySQL identifier, possibly ``db.table``, each part in backticks."""
    parts = [p.strip().strip("`") for p in name.split(".")]
    return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


class MySQLEngine(Engine):
    """One asyncmy connection to MySQL or MariaDB; see the module docstring."""

    name = "mysql"
    dialect = Dialect.MYSQL
    default_port = 3306
    line_commands = frozenset({"HELP", "QUIT", "EXIT", "CLEAR", "USE"})
    read_only_refused: ClassVar[frozenset[str]] = frozenset(
        {
            "SET", "PREPARE", "EXECUTE", "DEALLOCATE", "CALL", "HANDLER", "LOAD", "LOCK",
            "UNLOCK", "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "XA",
        }
    )  # fmt: skip
    help_lines = (
        "  SHOW DATABASES;  SHOW TABLES;  DESCRIBE table;  USE db",
        "  \\u DBNAME        use another database",
    )

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        self.conn: Any = None
        self.thread_id = 0
        self.flavour = "MySQL"

    # Session ------------------------------------------------------------------------
    async def connect(self) -> None:
        self.conn = await self._open(self.opts.database)
        self.thread_id = self.conn.thread_id()
        version = self.conn.get_server_info()
        # MariaDB prefixes "5.5.5-" for old replication clients: not part of its version
        self.server_version = version[6:] if version.startswith("5.5.5-") else version
        if "mariadb" in self.server_version.lower():
            self.flavour = "MariaDB"
        await self._multi_statements_off()
        if self.opts.read_only:
            await self._query("SET SESSION TRANSACTION READ ONLY")

    async def _open(self, database: str | None) -> Any:
        o = self.opts
        mode = o.ssl_mode
        attempts: list[Any] = []
        if mode in ("disable", "allow"):
            attempts = [None]
        elif mode == "prefer":
            attempts = [ssl_context(o), None]
        else:
            attempts = [ssl_context(o)]
        last: DatabaseError | None = None
        for ctx in attempts:
            try:
                return await self._connect_once(database, ctx)
            except TLSFailed as exc:
                if mode != "prefer":
                    raise
                # prefer: like libpq, fall back to plain text when TLS cannot be had
                log.info("TLS to %s:%d failed, connecting without: %s", o.host, o.port, exc)
                last = exc
            except (AuthFailed, Unreachable):
                raise
            except DatabaseError as exc:
                last = exc
                if ctx is None:
                    break
        assert last is not None
        raise last

    async def _connect_once(self, database: str | None, ctx: ssl.SSLContext | None) -> Any:
        """One connection attempt, its failure mapped to AuthFailed/TLSFailed/Unreachable."""
        o = self.opts
        try:
            return await asyncio.wait_for(
                asyncmy.connect(
                    host=o.host,
                    port=o.port,
                    user=o.user,
                    password=o.password,
                    database=database or None,
                    connect_timeout=o.timeout,
                    autocommit=True,
                    charset="utf8mb4",
                    ssl=ctx,
                    program_name="guacr",
                ),
                o.timeout + 1,
            )
        except TimeoutError:
            raise Unreachable("", f"Timed out connecting to {o.host}:{o.port}.") from None
        except (my_errors.MySQLError, OSError) as exc:
            reason = tls_reason(exc) if ctx is not None else None
            if reason is not None:
                raise TLSFailed(o.host, o.port, reason) from None
            if isinstance(exc, OSError):
                raise Unreachable("", f"Unable to connect to {o.host}:{o.port}: {exc}") from None
            err = _error(exc)
            code = int(err.code) if err.code.isdigit() else 0
            if code in _AUTH_ERRORS:
                raise AuthFailed(err.code, err.message) from None
            if code in _UNREACHABLE:
                raise Unreachable(err.code, err.message) from None
            raise err from None

    async def _multi_statements_off(self) -> None:
        """``COM_SET_OPTION(MYSQL_OPTION_MULTI_STATEMENTS_OFF)``; the server answers EOF."""
        conn = self.conn
        await conn._execute_command(COM_SET_OPTION, struct.pack("<H", MULTI_STATEMENTS_OFF))
        pkt = await conn.read_packet()
        if not (pkt.is_eof_packet() or pkt.is_ok_packet()):
            raise DatabaseError("", "The server did not accept turning multi-statements off.")

    async def _query(self, sql: str) -> None:
        cur = self.conn.cursor()
        try:
            await cur.execute(sql)
        finally:
            await cur.close()

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ensure_closed(), 2)
            with contextlib.suppress(Exception):
                conn.close()

    async def use_database(self, name: str) -> None:
        """``\\u``: the same session switches its default database."""
        try:
            await self.conn.select_db(name)
        except my_errors.MySQLError as exc:
            raise _error(exc) from None
        self.database = name

    # Statements -----------------------------------------------------------------------
    async def execute(self, statement: str, max_rows: int) -> Result:
        ro = self.opts.read_only
        try:
            if ro:
                await self._query("SET SESSION TRANSACTION READ ONLY")
                await self._query("START TRANSACTION READ ONLY")
            try:
                return await self._run(statement, max_rows)
            finally:
                if ro and self.conn is not None:
                    await asyncio.shield(self._rollback())
        except my_errors.MySQLError as exc:
            raise _error(exc) from None

    async def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            await self._query("ROLLBACK")

    async def _run(self, statement: str, max_rows: int) -> Result:
        cur = self.conn.cursor(SSCursor)
        try:
            await cur.execute(statement)
            if not cur.description:
                affected = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else None
                return Result(status="Query OK", affected=affected)
            columns = [d[0] for d in cur.description]
            rows: list[Sequence[object]] = list(await cur.fetchmany(max_rows)) if max_rows else []
            total = len(rows)
            if total >= max_rows:
                while True:
                    more = await cur.fetchmany(_COUNT_BATCH)
                    if not more:
                        break
                    total += len(more)
            return Result(columns=columns, rows=rows, total=total)
        finally:
            with contextlib.suppress(Exception):
                await cur.close()

    async def after_statement(self, statement: str) -> None:
        """After ``USE``, ask the server for the current database."""
        if first_keyword(statement, self.dialect) != "USE":
            return
        try:
            cur = self.conn.cursor()
            try:
                await cur.execute("SELECT DATABASE()")
                row = await cur.fetchone()
                self.database = row[0] if row else None
            finally:
                await cur.close()
        except my_errors.MySQLError as exc:
            raise _error(exc) from None

    async def cancel(self) -> None:
        """``KILL QUERY`` from a second connection (the session's is busy)."""
        try:
            helper = await self._open(None)
        except DatabaseError:
            return
        try:
            cur = helper.cursor()
            await cur.execute(f"KILL QUERY {int(self.thread_id)}")
            await cur.close()
        except my_errors.MySQLError:
            pass
        finally:
            helper.close()

    async def stream(
        self, statement: str, batch: int
    ) -> AsyncIterator[tuple[list[str], list[Sequence[object]]]]:
        ro = self.opts.read_only
        try:
            if ro:
                await self._query("SET SESSION TRANSACTION READ ONLY")
                await self._query("START TRANSACTION READ ONLY")
            cur = self.conn.cursor(SSCursor)
            try:
                await cur.execute(statement)
                if not cur.description:
                    raise DatabaseError("", "The statement returns no rows to export.")
                columns = [d[0] for d in cur.description]
                while True:
                    rows = await cur.fetchmany(batch)
                    if not rows:
                        break
                    yield columns, list(rows)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(cur.close())
        except my_errors.MySQLError as exc:
            raise _error(exc) from None
        finally:
            if ro and self.conn is not None:
                await asyncio.shield(self._rollback())

    async def insert_csv(self, table: str, data: bytes) -> int:
        """``\\import``: rows of a CSV (header row names the columns), one transaction.

        Empty fields become NULL.
        """
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig", "replace")))
        header = next(reader, None)
        if not header:
            raise DatabaseError("", "The file is empty: a header row with column names is needed.")
        rows = [[(v if v != "" else None) for v in r] for r in reader if r]
        return await self.insert_rows(table, [c.strip() for c in header], rows)

    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[str | None]]
    ) -> int:
        cols = ", ".join(quote_ident(c) for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {quote_ident(table)} ({cols}) VALUES ({marks})"
        for n, r in enumerate(rows, 2):
            if len(r) != len(columns):
                raise DatabaseError("", f"Line {n} has {len(r)} fields, the header {len(columns)}.")
        cur = self.conn.cursor()
        try:
            await self._query("START TRANSACTION")
            try:
                for i in range(0, len(rows), INSERT_BATCH):
                    await cur.executemany(sql, [tuple(r) for r in rows[i : i + INSERT_BATCH]])
                await self._query("COMMIT")
            except BaseException:
                await asyncio.shield(self._rollback())
                raise
        except my_errors.MySQLError as exc:
            raise _error(exc) from None
        finally:
            await cur.close()
        return len(rows)

    # Client commands --------------------------------------------------------------------
    def _refusal(self, first: str, words: list[str]) -> str | None:
        outfile = any(
            words[i] == "INTO" and words[i + 1] in ("OUTFILE", "DUMPFILE")
            for i in range(len(words) - 1)
        )
        if outfile and (self.opts.read_only or self.opts.disable_export):
            return "SELECT ... INTO OUTFILE is not allowed here; use \\export."
        if first == "LOAD" and self.opts.disable_import:
            return "Import is disabled for this connection (LOAD DATA)."
        return None

    @property
    def prompt(self) -> str:
        return f"{self.flavour} [{self.database or '(none)'}]> "

    @property
    def continuation_prompt(self) -> str:
        return " " * (len(self.prompt) - 3) + "-> "
