"""PostgreSQL sessions through asyncpg.

Every user statement is sent with the extended query protocol (Parse/Bind/Execute), so
the server accepts exactly one statement per message whatever the text hides. In
read-only mode guacr wraps each statement in a transaction it opens itself with
``BEGIN READ ONLY`` and always ends with ``ROLLBACK``: writes, ``nextval``, writable
CTEs and functions that write fail on the server, and settings changed inside the
statement (``set_config``) vanish with the transaction. Transaction control typed by the
user is refused, so it cannot end guacr's transaction early.

Rows come through a portal (a cursor): the first ``max-rows`` are fetched and the rest
only counted with ``MOVE``, so a huge result never sits in memory. Ctrl+C cancels the
statement's task, which makes asyncpg send PostgreSQL's cancel request.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, Final

import asyncpg

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
from guacr.handlers.database.sql import Dialect

_MOVE_MAX: Final = 2**31 - 1
_COUNT_TAG: Final = re.compile(r"^(INSERT \d+|UPDATE|DELETE|MERGE|SELECT|COPY|MOVE|FETCH) (\d+)$")

_RELATIONS: Final = """SELECT n.nspname AS "Schema", c.relname AS "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
    WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table'
  END AS "Type", pg_catalog.pg_get_userbyid(c.relowner) AS "Owner"
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ({kinds}) AND n.nspname <> 'pg_catalog'
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_toast'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1, 2"""

_DESCRIBE: Final = """SELECT a.attname AS "Column",
  pg_catalog.format_type(a.atttypid, a.atttypmod) AS "Type",
  CASE WHEN a.attnotnull THEN 'not null' ELSE '' END AS "Nullable",
  COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') AS "Default"
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = {name}::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""

_DATABASES: Final = """SELECT d.datname AS "Name", pg_catalog.pg_get_userbyid(d.datdba) AS "Owner",
  pg_catalog.pg_encoding_to_char(d.encoding) AS "Encoding"
FROM pg_catalog.pg_database d WHERE NOT d.datistemplate ORDER BY 1"""

_SCHEMAS: Final = """SELECT n.nspname AS "Name", pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1"""

_ROLES: Final = """SELECT r.rolname AS "Role name",
  CONCAT_WS(', ', CASE WHEN r.rolsuper THEN 'Superuser' END,
    CASE WHEN r.rolcreaterole THEN 'Create role' END,
    CASE WHEN r.rolcreatedb THEN 'Create DB' END,
    CASE WHEN NOT r.rolcanlogin THEN 'Cannot login' END) AS "Attributes"
FROM pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1"""


def quote_literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings, PostgreSQL's default)."""
    return "'" + text.replace("'", "''") + "'"


def _error(exc: BaseException) -> DatabaseError:
    if isinstance(exc, asyncpg.PostgresError):
        code = getattr(exc, "sqlstate", "") or ""
        msg = str(exc)
        detail = getattr(exc, "detail", None)
        if detail:
            msg += f" ({detail})"
        return DatabaseError(code, msg)
    return DatabaseError("", str(exc) or type(exc).__name__)


class PostgreSQLEngine(Engine):
    """One asyncpg connection; see the module docstring for read-only mode."""

    name = "postgresql"
    dialect = Dialect.POSTGRESQL
    default_port = 5432
    read_only_refused: ClassVar[frozenset[str]] = frozenset(
        {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "COPY"}
    )
    help_lines = (
        "  \\l               list databases",
        "  \\c DBNAME        connect to another database",
        "  \\d [NAME]        list relations, or describe table/view NAME",
        "  \\dt              list tables",
        "  \\dn, \\du         list schemas, roles",
    )

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        self.conn: Any = None
        self._inner: asyncio.Task[Any] | None = None
        self._cancel_requested = False
        self.superuser = False

    # Session ------------------------------------------------------------------------
    async def connect(self) -> None:
        self.conn = await self._open(self.opts.database)

    async def _open(self, database: str | None) -> Any:
        o = self.opts
        ctx: Any
        if o.ssl_ca or o.ssl_cert or o.ssl_mode in ("verify-ca", "verify-full"):
            ctx = ssl_context(o)
        else:
            ctx = (
                o.ssl_mode if o.ssl_mode in ("disable", "allow", "prefer", "require") else "prefer"
            )
        try:
            conn = await asyncpg.connect(
                host=o.host,
                port=o.port,
                user=o.user,
                password=o.password,
                database=database or o.user,
                ssl=ctx,
                timeout=o.timeout,
                statement_cache_size=0,
                server_settings={"application_name": "guacr"},
            )
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            if "pg_hba.conf" in str(exc):
                # refused by the server's host rules (e.g. hostssl only), not the password:
                # 515 with the server's message, so the client does not ask for new ones
                raise DatabaseError(exc.sqlstate, str(exc)) from None
            raise AuthFailed(exc.sqlstate, str(exc)) from None
        except TimeoutError:
            raise Unreachable("", f"Timed out connecting to {o.host}:{o.port}.") from None
        except (OSError, socket.gaierror) as exc:
            reason = tls_reason(exc)
            if reason is None and "rejected SSL upgrade" in str(exc):
                reason = "the server does not offer TLS"
            if reason is not None:
                raise TLSFailed(o.host, o.port, reason) from None
            raise Unreachable("", f"Unable to connect to {o.host}:{o.port}: {exc}") from None
        except asyncpg.PostgresError as exc:
            raise _error(exc) from None
        except (ValueError, asyncpg.InterfaceError) as exc:
            raise DatabaseError("", str(exc)) from None
        self.database = conn._params.database
        self.server_version = "PostgreSQL " + conn.get_settings().server_version.split(" ")[0]
        with contextlib.suppress(Exception):
            self.superuser = conn.get_settings().is_superuser == "on"
        return conn

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()

    async def use_database(self, name: str) -> None:
        """``\\c``: a new session on ``name`` with the same credentials."""
        new = await self._open(name)
        old, self.conn = self.conn, new
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), 2)

    # Statements -----------------------------------------------------------------------
    async def execute(self, statement: str, max_rows: int) -> Result:
        conn = self.conn
        own = await self._begin()
        self._cancel_requested = False
        inner = asyncio.ensure_future(self._run(statement, max_rows))
        self._inner = inner
        try:
            result = await inner
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the session is ending, not a user's Ctrl+C
            raise DatabaseError("57014", "canceling statement due to user request") from None
        except asyncpg.PostgresError as exc:
            raise _error(exc) from None
        except (asyncpg.InterfaceError, OSError) as exc:
            raise DatabaseError("", str(exc)) from None
        finally:
            self._inner = None
            await self._end(conn, own)
        return result

    async def _begin(self) -> str:
        """Open guacr's own transaction when needed: returns how to end it ('' = none)."""
        if self.opts.read_only:
            await self.conn.execute("BEGIN READ ONLY")
            return "ROLLBACK"
        return ""

    async def _end(self, conn: Any, own: str) -> None:
        if conn is None or conn.is_closed():
            return
        try:
            if own and conn.is_in_transaction():
                await conn.execute(own)
        except Exception:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")

    async def _run(self, statement: str, max_rows: int) -> Result:
        conn = self.conn
        stmt = await conn.prepare(statement)  # Parse: one statement, or a 42601 error
        attrs = stmt.get_attributes()
        if not attrs:
            await stmt.fetch()
            tag = stmt.get_statusmsg() or ""
            m = _COUNT_TAG.match(tag)
            return Result(status=tag, affected=int(m.group(2)) if m else None)
        columns = [a.name for a in attrs]
        implicit = not conn.is_in_transaction()
        if implicit:  # a portal lives in a transaction: one for this statement only
            await conn.execute("BEGIN")
        try:
            cur = await stmt.cursor()
            rows: list[Sequence[object]] = list(await cur.fetch(max_rows)) if max_rows > 0 else []
            total = len(rows)
            if total >= max_rows:
                while True:
                    moved = await cur.forward(_MOVE_MAX)
                    total += moved
                    if moved < _MOVE_MAX:
                        break
            if implicit:
                await conn.execute("COMMIT")
        except BaseException:
            if implicit and not conn.is_closed() and conn.is_in_transaction():
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
            raise
        return Result(columns=columns, rows=rows, total=total, status=f"SELECT {total}")

    async def cancel(self) -> None:
        inner = self._inner
        if inner is not None and not inner.done():
            self._cancel_requested = True
            inner.cancel()  # asyncpg sends PostgreSQL's cancel request

    async def stream(
        self, statement: str, batch: int
    ) -> AsyncIterator[tuple[list[str], list[Sequence[object]]]]:
        conn = self.conn
        begin = "BEGIN READ ONLY" if self.opts.read_only else "BEGIN"
        implicit = self.opts.read_only or not conn.is_in_transaction()
        if implicit:
            await conn.execute(begin)
        ok = False
        try:
            try:
                stmt = await conn.prepare(statement)
                columns = [a.name for a in stmt.get_attributes()]
                if not columns:
                    raise DatabaseError("", "The statement returns no rows to export.")
                cur = await stmt.cursor()
                while True:
                    fetch = asyncio.ensure_future(cur.fetch(batch))
                    self._inner = fetch  # Ctrl+C cancels the running fetch on the server
                    try:
                        rows = await fetch
                    except asyncio.CancelledError:
                        task = asyncio.current_task()
                        if task is not None and task.cancelling():
                            raise
                        raise DatabaseError(
                            "57014", "canceling statement due to user request"
                        ) from None
                    finally:
                        self._inner = None
                    if not rows:
                        break
                    yield columns, list(rows)
            except asyncpg.PostgresError as exc:
                raise _error(exc) from None
            ok = True
        finally:
            if implicit and not conn.is_closed() and conn.is_in_transaction():
                end = "COMMIT" if ok and not self.opts.read_only else "ROLLBACK"
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.execute(end))

    async def insert_csv(self, table: str, data: bytes) -> int:
        """``\\import``: COPY the CSV (header row names the columns) in one transaction."""
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig", "replace")))
        header = next(reader, None)
        if not header:
            raise DatabaseError("", "The file is empty: a header row with column names is needed.")
        schema, _, name = table.rpartition(".")
        try:
            async with self.conn.transaction():
                status = await self.conn.copy_to_table(
                    _unquote(name),
                    schema_name=_unquote(schema) if schema else None,
                    source=io.BytesIO(data),
                    columns=[c.strip() for c in header],
                    format="csv",
                    header=True,
                )
        except asyncpg.PostgresError as exc:
            raise _error(exc) from None
        m = re.match(r"COPY (\d+)", status or "")
        return int(m.group(1)) if m else 0

    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[str | None]]
    ) -> int:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        return await self.insert_csv(table, buf.getvalue().encode())

    # Client commands ------------------------------------------------------------------
    async def client_command(self, command: str, arg: str) -> tuple[str, str] | None:
        if command == "\\l":
            return _DATABASES, "List of databases"
        if command == "\\dt":
            return _RELATIONS.format(kinds="'r','p'"), "List of relations"
        if command == "\\dn":
            return _SCHEMAS, "List of schemas"
        if command == "\\du":
            return _ROLES, "List of roles"
        if command == "\\d":
            if arg:
                return _DESCRIBE.format(name=quote_literal(arg)), f'Table "{arg}"'
            return _RELATIONS.format(kinds="'r','p','v','m','S','f'"), "List of relations"
        return None

    def _refusal(self, first: str, words: list[str]) -> str | None:
        if self.opts.read_only and first == "PREPARE" and "TRANSACTION" in words[:2]:
            return "PREPARE TRANSACTION is not allowed in read-only mode."
        if first == "COPY":
            if "FROM" in words and self.opts.disable_import:
                return "Import is disabled for this connection (COPY ... FROM)."
            if "TO" in words and self.opts.disable_export:
                return "Export is disabled for this connection (COPY ... TO)."
        return None

    @property
    def prompt(self) -> str:
        return f"{self.database}{'=#' if self.superuser else '=>'} "

    @property
    def continuation_prompt(self) -> str:
        return f"{self.database}{'-#' if self.superuser else '->'} "


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name.lower()  # unquoted identifiers fold to lower case
