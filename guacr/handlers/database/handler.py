"""The ``mysql`` and ``postgresql`` protocols: SQL consoles on the terminal front end.

guacd has no database protocol; these follow what guacd does for SSH wherever a terminal
is concerned (fonts, colour schemes, scrollback, selection, clipboard, resize, ``argv``,
typescript and ``.guac`` recordings, read-only joiners) and what database gateways do
for the rest. The console itself is engine-independent (``console.py``); each engine is
one module (``mysql.py``, ``postgresql.py``) and one subclass here.

Statuses: rejected credentials 769 (CLIENT_UNAUTHORIZED) with the server's message, no
server answering 519 (UPSTREAM_NOT_FOUND), any other failure to open the session 515
(UPSTREAM_ERROR). A missing username or password is asked for with ``required`` when the
client speaks protocol 1.3.0 or later, otherwise in the terminal, as guacd's SSH does.

``read-only`` here means read-only SQL (see the engines) for the owner; a joiner with
``read-only`` only watches, as with every other protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar, Final

from guacr.contract.handler import StreamSink
from guacr.contract.params import Params, params
from guacr.errors import Unauthorized, UpstreamError, UpstreamNotFound
from guacr.frontend.handler import TerminalHandler
from guacr.frontend.session import ARGV_NAMES, TerminalConfig, TerminalSession, clipboard_limit
from guacr.handlers.database.audit import AuditLog, timestamp
from guacr.handlers.database.console import EXPORT_CHUNK, AuditEvent, Console
from guacr.handlers.database.engine import (
    AuthFailed,
    ConnectOptions,
    DatabaseError,
    Engine,
    TLSFailed,
    Unreachable,
)
from guacr.handlers.database.mysql import MySQLEngine
from guacr.handlers.database.postgresql import PostgreSQLEngine
from guacr.handlers.database.table import safe_text
from guacr.protocol import builders as b
from guacr.protocol.status import Status

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

# The database's own parameters, in order; then SSH's terminal, typescript, recording and
# clipboard groups, in SSH's order.
DATABASE_ARGS: Final = (
    "hostname",
    "port",
    "username",
    "password",
    "database",
    "ssl-mode",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
    "timeout",
    "read-only",
    "max-rows",
    "disable-csv-export",
    "disable-csv-import",
    "audit-path",
    "create-audit-path",
)
# SSH's terminal, typescript, recording and clipboard groups, in SSH's order, with
# guacd's defaults (listed here: handlers do not import each other).
TERMINAL_ARGS: Final = (
    "font-name",
    "font-size",
    "color-scheme",
    "typescript-path",
    "typescript-name",
    "create-typescript-path",
    "typescript-write-existing",
    "recording-path",
    "recording-name",
    "recording-exclude-output",
    "recording-exclude-mouse",
    "recording-include-keys",
    "recording-include-clipboard",
    "create-recording-path",
    "recording-write-existing",
    "backspace",
    "func-keys-and-keypad",
    "terminal-type",
    "scrollback",
    "clipboard-buffer-size",
    "disable-copy",
    "disable-paste",
)
ALL_ARGS: Final = DATABASE_ARGS + TERMINAL_ARGS
TERMINAL_TYPE: Final = "linux"  # guacd's default, as for SSH

_DEFAULTS: Final = {
    "ssl-mode": "prefer",
    "timeout": "10",
    "max-rows": "1000",
    "font-name": "monospace",
    "font-size": "12",
    "typescript-name": "typescript",
    "recording-name": "recording",
    "backspace": "127",
    "terminal-type": TERMINAL_TYPE,
    "scrollback": "1000",
}
IMPORT_LIMIT: Final = 64 * 1024 * 1024  # bytes of CSV accepted per \import


class DatabaseHandler(TerminalHandler):
    """A SQL console for one database session; subclasses name the engine."""

    engine_class: ClassVar[type[Engine]]
    ARGV = frozenset(ARGV_NAMES)

    def __init__(self, conn: Connection, params: Params) -> None:
        super().__init__(conn, params)
        self.clipboard_limit = clipboard_limit(params)
        self.session = TerminalSession(
            conn,
            TerminalConfig.from_params(params, terminal_type=TERMINAL_TYPE),
            send_input=self._write,
            on_resize=self._resize,
        )
        self.engine: Engine | None = None
        self.console: Console | None = None
        self.audit_log: AuditLog | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asked: set[str] = set()
        self._answers: dict[str, str] = {}
        self._answered: asyncio.Future[None] | None = None
        self._typist: User | None = None

    @classmethod
    def input_read_only(cls, params: Params, owner: bool) -> bool:
        """Only joiners are made watch-only by ``read-only``; the owner gets read-only SQL."""
        return params.get_bool("read-only") and not owner

    # Lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        session = self.session
        await session.start()
        username, password = await self._credentials()
        opts = self._options(username, password)
        engine = self.engine_class(opts)
        self.engine = engine
        try:
            await engine.connect()
        except AuthFailed as exc:
            raise Unauthorized(exc.message) from None
        except TLSFailed as exc:
            self.log.warning(
                "%s session refused (ssl-mode %s): %s", engine.name, opts.ssl_mode, exc.message
            )
            raise UpstreamNotFound(exc.message) from None
        except Unreachable as exc:
            raise UpstreamNotFound(exc.message) from None
        except DatabaseError as exc:
            raise UpstreamError(exc.message) from None
        self.log.info(
            "%s session to %s:%d as %s opened%s.",
            engine.name,
            opts.host,
            opts.port,
            opts.user,
            " (read-only)" if opts.read_only else "",
        )
        self._open_audit()
        term = session.term
        console = Console(
            engine,
            session.write_output,
            cols=term.cols,
            rows=term.rows,
            max_rows=max(1, self.params.get_int("max-rows", 1000)),
            audit=self._audit if self.audit_log is not None else None,
            export=self._export,
            on_quit=self._quit,
        )
        self.console = console
        console.start(self._banner(engine))
        await self._done
        await session.drain()

    async def close(self) -> None:
        if self.console is not None:
            await self.console.close()
        if self.engine is not None:
            await self.engine.close()
        if self.audit_log is not None:
            self.audit_log.close()
        await self.session.close()

    def _quit(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    # Connecting ---------------------------------------------------------------------------
    def _options(self, username: str, password: str) -> ConnectOptions:
        p = self.params
        port = p.get_int("port", self.engine_class.default_port)
        if not 0 < port < 65536:
            port = self.engine_class.default_port
        return ConnectOptions(
            host=p.get("hostname") or "localhost",
            port=port,
            user=username,
            password=password,
            database=p.get_opt("database"),
            ssl_mode=p.get("ssl-mode") or "prefer",
            ssl_ca=p.get_opt("ssl-ca"),
            ssl_cert=p.get_opt("ssl-cert"),
            ssl_key=p.get_opt("ssl-key"),
            timeout=float(max(1, p.get_int("timeout", 10))),
            read_only=p.get_bool("read-only"),
            disable_export=p.get_bool("disable-csv-export"),
            disable_import=p.get_bool("disable-csv-import"),
        )

    async def _credentials(self) -> tuple[str, str]:
        """Username and password, asked for when missing (``required`` or in-terminal)."""
        p = self.params
        values = {"username": p.get_opt("username"), "password": p.get_opt("password")}
        missing = [k for k, v in values.items() if v is None]
        if not missing:
            return values["username"] or "", values["password"] or ""
        owner = self.conn.owner
        if owner is not None and owner.info.version.supports_required:
            self._asked = set(missing)
            self._answers.clear()
            self._answered = asyncio.get_running_loop().create_future()
            self.log.info("Asking the owner for: %s", ", ".join(missing))
            self.conn.send_to_owner(b.required(*missing))
            await self._answered
            values.update(self._answers)
        else:
            if values["username"] is None:
                values["username"] = await self.session.prompt("Login as: ", echo=True)
            if values["password"] is None:
                values["password"] = await self.session.prompt("Password: ", echo=False)
            self.session.clear_screen()
        return values["username"] or "", values["password"] or ""

    def accepts_argv(self, name: str) -> bool:
        return name in self.ARGV or name in self._asked

    def on_argv(self, user: User, name: str, value: str) -> None:
        if name in self._asked:
            if user is not self.conn.owner:
                return
            self._answers[name] = value
            if self._asked <= self._answers.keys():
                self._asked = set()
                if self._answered is not None and not self._answered.done():
                    self._answered.set_result(None)
            return
        self.session.argv(user, name, value)

    def _banner(self, engine: Engine) -> list[str]:
        o = engine.opts
        lines = [
            safe_text(
                f"Connected to {engine.server_version or engine.name} at {o.host}:{o.port} "
                f"as {o.user}" + (f", database {engine.database}." if engine.database else ".")
            ),
        ]
        if o.read_only:
            lines.append(
                "Read-only mode: each statement runs in a read-only transaction that guacr "
                "ends; writes and transaction control are refused."
            )
        lines.append("Type help for help, quit to leave.")
        return lines

    # Audit ----------------------------------------------------------------------------------
    def _open_audit(self) -> None:
        path = self.params.get_opt("audit-path")
        if path is None:
            return
        try:
            self.audit_log = AuditLog.open(path, self.params.get_bool("create-audit-path"))
            self.log.info("Query audit will be written to %s", self.audit_log.path)
        except OSError as exc:
            self.log.error("Unable to open the query audit in %s: %s", path, exc)

    def _audit(self, event: AuditEvent) -> None:
        log_ = self.audit_log
        engine = self.engine
        if log_ is None or engine is None:
            return
        owner = self.conn.owner
        typist = self._typist or owner
        client = (typist.peer if typist is not None else "") or None
        o = engine.opts
        log_.write(
            {
                "timestamp": timestamp(),
                "connection": self.conn.id,
                "guacamole_user": (typist.info.name if typist is not None else "") or None,
                "database_user": o.user,
                "database": event.database,
                "protocol": self.protocol,
                "statement_class": event.statement_class,
                "statement": event.statement,
                "duration_ms": event.duration_ms,
                "rows": event.rows,
                "success": event.success,
                "error": event.error,
                "client_address": client,
                "server_address": f"{o.host}:{o.port}",
                "read_only": o.read_only,
            }
        )

    # Export -----------------------------------------------------------------------------------
    async def _export(self, filename: str, chunks: AsyncIterator[bytes]) -> int:
        """Send ``chunks`` as a ``text/csv`` file download to the user who asked."""
        user = self._typist or self.conn.owner
        if user is None or user not in self.conn.users:
            raise DatabaseError("guacr", "Nobody to send the file to.")
        stream = user.alloc_stream()
        sent = 0
        try:
            ack = user.expect_ack(stream)
            user.send(b.file(stream, "text/csv", filename))
            if (await ack)[1] != Status.SUCCESS:
                raise DatabaseError("guacr", "The client refused the download.")
            async for data in chunks:
                for i in range(0, len(data), EXPORT_CHUNK):
                    ack = user.expect_ack(stream)
                    user.send(b.blob(stream, data[i : i + EXPORT_CHUNK]))
                    sent += 1
                    message, status = await ack
                    if status != Status.SUCCESS:
                        raise DatabaseError("guacr", f"The client stopped the download: {message}")
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            if user in self.conn.users:
                user.send(b.end(stream))
            user.free_stream(stream)
        return sent

    # Input ------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.console is not None:
            self.console.input(data)

    def _resize(self, cols: int, rows: int) -> None:
        if self.console is not None:
            self.console.resize(cols, rows)

    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        self._typist = user
        self.session.key(user, keysym, pressed)

    def on_file(self, user: User, stream: int, mimetype: str, filename: str) -> StreamSink | None:
        console = self.console
        if console is None or not console.wants_upload:
            return None
        self._typist = user
        return _Upload(self, user, stream, filename)


class _Upload:
    """Collects an uploaded CSV (acking each blob) and hands it to ``\\import``."""

    def __init__(self, handler: DatabaseHandler, user: User, stream: int, filename: str) -> None:
        self.handler, self.user, self.stream, self.filename = handler, user, stream, filename
        self.data = bytearray()
        self.failed = False
        user.ack(stream, "Ready", Status.SUCCESS)

    def blob(self, data: bytes) -> None:
        if self.failed:
            return
        if len(self.data) + len(data) > IMPORT_LIMIT:
            self.failed = True
            self.user.ack(self.stream, "File too large for import", Status.CLIENT_OVERRUN)
            return
        self.data += data
        self.user.ack(self.stream, "OK", Status.SUCCESS)

    def end(self) -> None:
        console = self.handler.console
        if self.failed or console is None:
            return
        console.upload(self.filename, bytes(self.data))


class MySQLHandler(DatabaseHandler):
    """``mysql`` (alias ``mariadb``): MySQL and MariaDB through asyncmy."""

    protocol = "mysql"
    engine_class = MySQLEngine
    PARAMS = params(ALL_ARGS, {**_DEFAULTS, "port": "3306"})


class PostgreSQLHandler(DatabaseHandler):
    """``postgresql`` (alias ``postgres``): PostgreSQL through asyncpg."""

    protocol = "postgresql"
    engine_class = PostgreSQLEngine
    PARAMS = params(ALL_ARGS, {**_DEFAULTS, "port": "5432"})
