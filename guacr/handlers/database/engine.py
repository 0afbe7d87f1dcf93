"""What a database engine gives the console: connect, run one statement, cancel, stream.

The console (``console.py``) is engine-independent; an engine is one module with one
:class:`Engine` subclass (``mysql.py``, ``postgresql.py``; a third engine adds a module
and a registry line in ``handler.py``). Engines raise :class:`DatabaseError` with the
server's own code and message, :class:`AuthFailed` for rejected credentials and
:class:`Unreachable` when no server answers, which the handler maps to guacd's status
codes (769 and 519).
"""

from __future__ import annotations

import abc
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from guacr.handlers.database.sql import Dialect, first_keyword, statement_words


class DatabaseError(Exception):
    """An error reported by the server (or refused by guacr): code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


class AuthFailed(DatabaseError):
    """The server rejected the credentials."""


class Unreachable(DatabaseError):
    """No server answered (refused, timed out, name did not resolve)."""


class TLSFailed(Unreachable):
    """TLS could not be set up as ``ssl-mode`` demands (handshake, certificate, no TLS).

    An :class:`Unreachable` (519, as guacr's VNC handler reports a failed TLS handshake):
    no usable connection to the server was made.
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__("", f"TLS connection to {host}:{port} failed: {reason}")


def tls_reason(exc: BaseException) -> str | None:
    """Why TLS failed, when ``exc`` is (or was caused by) an ``ssl.SSLError``; else None."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            if seen.reason == "WRONG_VERSION_NUMBER":  # a plain-text answer to our hello
                return f"the server does not seem to offer TLS ({seen})"
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


class Refused(DatabaseError):
    """guacr refused the statement (read-only mode, disabled export/import)."""

    def __init__(self, message: str) -> None:
        super().__init__("guacr", message)


@dataclass
class ConnectOptions:
    """Connection settings from the handler's parameters."""

    host: str
    port: int
    user: str
    password: str
    database: str | None = None
    ssl_mode: str = "prefer"
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    timeout: float = 10.0
    read_only: bool = False
    disable_export: bool = False
    disable_import: bool = False


@dataclass
class Result:
    """One statement's outcome: a result set (columns + first rows) or a status."""

    columns: list[str] = field(default_factory=list)
    rows: list[Sequence[object]] = field(default_factory=list)
    total: int = 0  # rows in the result set, including those beyond the display cap
    affected: int | None = None  # rows changed by DML, when the server says
    status: str = ""  # the server's command tag or info text

    @property
    def has_rows(self) -> bool:
        return bool(self.columns)


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def ssl_context(opts: ConnectOptions) -> ssl.SSLContext | None:
    """A client TLS context for libpq-style ``ssl-mode`` (None: no TLS).

    ``prefer`` and ``require`` encrypt without checking the certificate (as libpq does
    without a CA file); ``verify-ca`` checks the chain; ``verify-full`` also the name.
    """
    mode = opts.ssl_mode if opts.ssl_mode in SSL_MODES else "prefer"
    if mode in ("disable", "allow"):
        return None
    ctx = ssl.create_default_context(cafile=opts.ssl_ca) if opts.ssl_ca else None
    if ctx is None:
        ctx = ssl.create_default_context()
    if mode in ("prefer", "require") and not opts.ssl_ca:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif mode in ("prefer", "require", "verify-ca"):
        ctx.check_hostname = False
    if opts.ssl_cert:
        ctx.load_cert_chain(opts.ssl_cert, opts.ssl_key)
    return ctx


class Engine(abc.ABC):
    """One database session. Statements run one at a time (the console serialises)."""

    name: ClassVar[str]
    dialect: ClassVar[Dialect]
    default_port: ClassVar[int]
    # Words that complete a command without ``;`` (besides backslash commands).
    line_commands: ClassVar[frozenset[str]] = frozenset({"HELP", "QUIT", "EXIT", "CLEAR"})
    # First keywords refused in read-only mode (transaction control at least).
    read_only_refused: ClassVar[frozenset[str]] = frozenset()
    help_lines: ClassVar[tuple[str, ...]] = ()

    def __init__(self, opts: ConnectOptions) -> None:
        self.opts = opts
        self.database: str | None = opts.database
        self.server_version = ""

    # Session ------------------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the session (raises AuthFailed, Unreachable or DatabaseError)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the session; never raises."""

    @abc.abstractmethod
    async def execute(self, statement: str, max_rows: int) -> Result:
        """Run one statement, keeping at most ``max_rows`` rows (counting the rest)."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Ask the server to stop the running statement (from outside its task)."""

    @abc.abstractmethod
    def stream(
        self, statement: str, batch: int
    ) -> AsyncIterator[tuple[list[str], list[Sequence[object]]]]:
        """Run a query and yield (columns, rows) batches without holding them all."""

    async def client_command(self, command: str, arg: str) -> tuple[str, str] | None:
        """An engine's backslash command as (SQL, title), or None when unknown."""
        return None

    async def after_statement(self, statement: str) -> None:
        """Refresh session state after ``statement`` ran (e.g. the current database)."""
        return None

    async def use_database(self, name: str) -> None:
        """Switch the session to database ``name`` (``\\c`` / ``\\u``)."""
        raise DatabaseError("", "Switching databases is not supported here.")

    @abc.abstractmethod
    async def insert_csv(self, table: str, data: bytes) -> int:
        """Insert a CSV file's rows (header row = column names) in one transaction."""

    # Prompt ---------------------------------------------------------------------------
    @property
    def prompt(self) -> str:
        return f"{self.name} [{self.database or '(none)'}]> "

    @property
    def continuation_prompt(self) -> str:
        return " " * (len(self.prompt) - 3) + "-> "

    # Policy (sans-I/O) ------------------------------------------------------------------
    def refusal(self, statement: str) -> str | None:
        """Why guacr will not send ``statement`` (read-only mode, disabled flags), or None.

        This is a courtesy check with clear messages; in read-only mode the server
        enforces the guarantee (see each engine's ``execute``).
        """
        words = statement_words(statement, self.dialect)
        first = first_keyword(statement, self.dialect)
        if self.opts.read_only and first in self.read_only_refused:
            return f"{first} is not allowed in read-only mode."
        return self._refusal(first, words)

    def _refusal(self, first: str, words: list[str]) -> str | None:
        return None


def statement_class(statement: str, dialect: Dialect) -> str:
    """The statement's class for the audit log: its first keyword, lower-cased."""
    return first_keyword(statement, dialect).lower() or "other"
