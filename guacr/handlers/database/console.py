"""The engine-independent SQL console: line editing, statements, results, paging.

A :class:`Console` sits where a remote shell would be: it receives the bytes a user's
keyboard sends (through the terminal front end) and writes terminal output back. It
knows nothing of Guacamole: export, the audit log and quitting are callbacks given by
the handler, and the engine (``engine.py``) does all talking to the database.

States: *editing* (the line editor has the keyboard), *running* (a statement runs;
Ctrl+C cancels it on the server, other typing is kept for the next prompt), *paging* (a
result longer than the screen: Space, Enter, q), *waiting for an upload* (``\\import``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from guacr.frontend.line_editor import (
    ClearScreen,
    EndOfInput,
    History,
    Interrupt,
    LineEditor,
    Submit,
    text_width,
)
from guacr.handlers.database.engine import DatabaseError, Engine, Result, statement_class
from guacr.handlers.database.sql import is_incomplete, split_statements
from guacr.handlers.database.table import (
    elapsed_text,
    format_table,
    plural,
    safe_text,
    value_text,
)

log = logging.getLogger(__name__)

RED: Final = "\x1b[31m"
BOLD: Final = "\x1b[1m"
DIM: Final = "\x1b[2m"
RESET: Final = "\x1b[0m"
TYPEAHEAD_MAX: Final = 65536
EXPORT_BATCH: Final = 1000  # rows fetched per round trip while exporting
EXPORT_CHUNK: Final = 6144  # bytes per blob, as guacd's streams
PAGER_PROMPT: Final = "\x1b[7m-- More ({pct}%) -- Space: page, Enter: line, q: stop \x1b[0m"

Writer = Callable[[bytes], None]
Exporter = Callable[[str, AsyncIterator[bytes]], Awaitable[int]]


@dataclass
class AuditEvent:
    """One statement as the audit log records it (the handler adds who and where)."""

    statement: str
    statement_class: str
    database: str | None
    duration_ms: float
    rows: int | None
    success: bool
    error: str | None


def csv_line(values: Sequence[object]) -> str:
    """One CSV record: NULL is an empty field, an empty string is ``""``."""
    out = []
    for v in values:
        if v is None:
            out.append("")
            continue
        text = value_text(v)
        if text == "" or any(c in text for c in ',"\r\n') or text != text.strip():
            text = '"' + text.replace('"', '""') + '"'
        out.append(text)
    return ",".join(out) + "\r\n"


class Console:
    """One SQL console session (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        write: Writer,
        *,
        cols: int = 80,
        rows: int = 24,
        max_rows: int = 1000,
        audit: Callable[[AuditEvent], None] | None = None,
        export: Exporter | None = None,
        on_quit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.write = write
        self.cols, self.rows = cols, rows
        self.max_rows = max(1, max_rows)
        self.audit = audit
        self.export = export
        self.on_quit = on_quit
        self.history = History(500)
        self.editor = LineEditor(
            prompt=engine.prompt,
            continuation_prompt=engine.continuation_prompt,
            needs_more=self._needs_more,
            width=cols,
            history=self.history,
        )
        self.busy = False
        self.import_table: str | None = None
        self._typeahead = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._cancel_requested = False
        self._pager: _Pager | None = None
        self._closed = False

    # Lifecycle ----------------------------------------------------------------------------
    def start(self, banner: Sequence[str] = ()) -> None:
        """Print the banner and the first prompt."""
        # Bracketed paste: a pasted text's control characters stay text, never keys.
        self._out(b"\x1b[?2004h")
        for line in banner:
            self._line(line)
        self._prompt()

    async def close(self) -> None:
        """Stop whatever runs (the engine is closed by the handler)."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = max(2, cols), max(2, rows)
        self.editor.resize(self.cols)

    # Input --------------------------------------------------------------------------------
    def input(self, data: bytes) -> None:
        """Bytes from the user's keyboard (or a paste)."""
        if self._closed or not data:
            return
        if self._pager is not None:
            self._pager.key(data)
            return
        if self.busy:
            if b"\x03" in data:
                self._interrupt()
            elif len(self._typeahead) + len(data) <= TYPEAHEAD_MAX:
                self._typeahead += data
            return
        if self.import_table is not None:
            if b"\x03" in data:
                self.import_table = None
                self._line("^C Import cancelled.")
                self._prompt()
            return
        if not self.editor.active:
            self._typeahead += data
            return
        res = self.editor.feed(data)
        self._out(res.output)
        event = res.event
        if isinstance(event, Submit):
            self._typeahead[:0] = res.rest
            self._spawn(self._submit(event.text))
        elif isinstance(event, Interrupt):
            self._typeahead.clear()
            self._prompt()
        elif isinstance(event, EndOfInput):
            self._quit()
        elif isinstance(event, ClearScreen) or event is None:
            pass

    def _interrupt(self) -> None:
        self._typeahead.clear()
        if self._cancel_requested:
            return
        self._cancel_requested = True
        self._out(b"^C")
        self._spawn(self.engine.cancel(), track=False)

    def _needs_more(self, text: str) -> bool:
        if self._is_command(text):
            return False
        return is_incomplete(text, self.engine.dialect)

    def _is_command(self, text: str) -> bool:
        s = text.strip()
        if not s or s.startswith("\\"):
            return True
        word = s.split(None, 1)[0].rstrip(";").upper()
        return word in self.engine.line_commands and "\n" not in s

    # Running ------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], track: bool = True) -> None:
        task = asyncio.ensure_future(coro)
        if track:
            self._task = task
        task.add_done_callback(_log_failure)

    async def _submit(self, text: str) -> None:
        self.busy = True
        self._cancel_requested = False
        try:
            if self._is_command(text):
                await self._command(text.strip())
            else:
                statements, _ = split_statements(text, self.engine.dialect)
                for stmt in statements:
                    ok = await self._statement(stmt)
                    if not ok or self._cancel_requested:
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not kill the console
            log.exception("Console failure")
            self._error(DatabaseError("guacr", f"Internal error: {exc}"))
        finally:
            self.busy = False
            self._cancel_requested = False
        if self._closed:
            return
        if self.import_table is None:
            self._prompt()

    async def _statement(self, stmt: str, title: str = "", audit_text: str = "") -> bool:
        """Run one statement and show its outcome; False on error or refusal."""
        engine = self.engine
        refusal = engine.refusal(stmt)
        klass = statement_class(audit_text or stmt, engine.dialect)
        if refusal is not None:
            self._error(DatabaseError("guacr", refusal))
            self._audit(audit_text or stmt, klass, 0.0, None, False, refusal)
            return False
        start = time.perf_counter()
        try:
            result = await engine.execute(stmt, self.max_rows)
            await engine.after_statement(stmt)
        except DatabaseError as exc:
            elapsed = time.perf_counter() - start
            self._audit(audit_text or stmt, klass, elapsed, None, False, exc.message)
            if self._cancel_requested:
                self._line(f"{RED}Query cancelled{RESET} ({safe_text(exc.message)})")
            else:
                self._error(exc)
            return False
        elapsed = time.perf_counter() - start
        rows = result.total if result.has_rows else result.affected
        self._audit(audit_text or stmt, klass, elapsed, rows, True, None)
        if self._cancel_requested:
            self._line(f"{RED}Query cancelled.{RESET}")
            return False
        await self._show(result, elapsed, title)
        return True

    async def _show(self, result: Result, elapsed: float, title: str = "") -> None:
        took = elapsed_text(elapsed)
        if not result.has_rows:
            if result.status and result.status != "Query OK":
                self._line(f"{safe_text(result.status)} ({took})")
            else:
                n = result.affected or 0
                self._line(f"Query OK, {plural(n, 'row')} affected ({took})")
            return
        lines = [f"{BOLD}{title}{RESET}"] if title else []
        if result.rows:
            lines += format_table(result.columns, result.rows)
        shown, total = len(result.rows), result.total
        if total == 0:
            summary = f"Empty set ({took})"
        elif shown < total:
            summary = (
                f"{plural(total, 'row')} in set, first {shown} shown "
                f"(max-rows {self.max_rows}) ({took})"
            )
        else:
            summary = f"{plural(total, 'row')} in set ({took})"
        await self._page(lines)
        self._line(summary)

    async def _page(self, lines: list[str]) -> None:
        """Write ``lines``, pausing after each screenful for the user."""
        page = max(1, self.rows - 1)
        heights = [max(1, math.ceil(_visible_width(line) / self.cols)) for line in lines]
        if sum(heights) <= page:
            self._lines(lines)
            return
        pager = _Pager(self, lines, heights, page)
        self._pager = pager
        try:
            await pager.run()
        finally:
            self._pager = None

    async def _command(self, text: str) -> None:
        engine = self.engine
        head, _, arg = text.partition(" ")
        cmd = head.rstrip(";")
        low = cmd.lower()
        arg = arg.strip().rstrip(";").strip()
        if low in ("help", "\\?", "\\h", "\\help"):
            self._help()
        elif low in ("quit", "exit", "\\q"):
            self._quit()
        elif low == "clear":
            self._out(b"\x1b[H\x1b[2J")
        elif low in ("\\export", "\\e"):
            await self._export(arg, text)
        elif low in ("\\import", "\\i"):
            self._arm_import(arg)
        elif low in ("\\c", "\\connect", "\\u"):
            await self._use(arg)
        elif low.startswith("\\"):
            found = await engine.client_command(low, arg)
            if found is None:
                self._error(DatabaseError("guacr", f"Invalid command {cmd}. Try \\? for help."))
                return
            sql, title = found
            await self._statement(sql, title=title, audit_text=text)
        else:
            await self._statement(text.rstrip(";"))

    async def _use(self, name: str) -> None:
        if not name:
            self._error(DatabaseError("guacr", "Which database? Give its name."))
            return
        start = time.perf_counter()
        try:
            await self.engine.use_database(name.strip('"`'))
        except DatabaseError as exc:
            self._audit(
                f"\\c {name}", "connect", time.perf_counter() - start, None, False, exc.message
            )
            self._error(exc)
            return
        self._audit(f"\\c {name}", "connect", time.perf_counter() - start, None, True, None)
        self._line(f'You are now connected to database "{self.engine.database}".')

    def _help(self) -> None:
        lines = [
            f"{BOLD}guacr SQL console ({self.engine.name}){RESET}",
            "  Statements end with ; and may span lines. Ctrl+C cancels a running query.",
            "  Up/Down: history   Ctrl+A/E: line start/end   Ctrl+K/U/W: kill   Ctrl+L: clear",
            "  help, \\?          this help",
            "  quit, exit, \\q    leave",
            "  clear            clear the screen",
            "  \\export QUERY    download the query's rows as a CSV file",
            "  \\import TABLE    upload a CSV file (header row = column names) into TABLE",
            *self.engine.help_lines,
        ]
        if self.engine.opts.read_only:
            lines.append(
                f"  {DIM}Read-only mode: every statement runs in a read-only transaction.{RESET}"
            )
        self._lines(lines)

    def _quit(self) -> None:
        self._line("Bye")
        if self.on_quit is not None:
            self.on_quit()

    # Export and import ------------------------------------------------------------------------
    async def _export(self, query: str, text: str) -> None:
        engine = self.engine
        if engine.opts.disable_export or self.export is None:
            self._error(DatabaseError("guacr", "CSV export is disabled for this connection."))
            self._audit(text, "export", 0.0, None, False, "export disabled")
            return
        if not query:
            self._error(DatabaseError("guacr", "Usage: \\export SELECT ..."))
            return
        refusal = engine.refusal(query)
        if refusal is not None:
            self._error(DatabaseError("guacr", refusal))
            self._audit(text, "export", 0.0, None, False, refusal)
            return
        count = [0]
        start = time.perf_counter()
        name = f"export-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        self._line(f"Exporting to {name} ... (Ctrl+C cancels)")
        try:
            await self.export(name, self._csv_chunks(query, count))
        except DatabaseError as exc:
            self._audit(text, "export", time.perf_counter() - start, count[0], False, exc.message)
            if self._cancel_requested:
                self._line(f"{RED}Export cancelled{RESET} after {plural(count[0], 'row')}.")
            else:
                self._error(exc)
            return
        elapsed = time.perf_counter() - start
        if self._cancel_requested:
            self._audit(text, "export", elapsed, count[0], False, "cancelled")
            self._line(f"{RED}Export cancelled{RESET} after {plural(count[0], 'row')}.")
            return
        self._audit(text, "export", elapsed, count[0], True, None)
        self._line(f"Exported {plural(count[0], 'row')} to {name} ({elapsed_text(elapsed)})")

    async def _csv_chunks(self, query: str, count: list[int]) -> AsyncIterator[bytes]:
        buf = io.StringIO()
        header = False
        async for columns, rows in self.engine.stream(query, EXPORT_BATCH):
            if self._cancel_requested:
                return
            if not header:
                buf.write(csv_line(columns))
                header = True
            for row in rows:
                buf.write(csv_line(row))
            count[0] += len(rows)
            if buf.tell() >= EXPORT_CHUNK:
                yield buf.getvalue().encode("utf-8")
                buf = io.StringIO()
        if buf.tell():
            yield buf.getvalue().encode("utf-8")

    def _arm_import(self, table: str) -> None:
        opts = self.engine.opts
        if opts.read_only:
            self._error(DatabaseError("guacr", "Import is not allowed in read-only mode."))
            self._audit(f"\\import {table}", "import", 0.0, None, False, "read-only")
            return
        if opts.disable_import:
            self._error(DatabaseError("guacr", "CSV import is disabled for this connection."))
            self._audit(f"\\import {table}", "import", 0.0, None, False, "import disabled")
            return
        if not table:
            self._error(DatabaseError("guacr", "Usage: \\import TABLE"))
            return
        self.import_table = table
        self._line(
            f"Upload a CSV file for {table} now (drag it onto the console; "
            "first row: column names). Ctrl+C cancels."
        )

    @property
    def wants_upload(self) -> bool:
        """True while ``\\import`` waits for a file."""
        return self.import_table is not None and not self.busy

    def upload(self, filename: str, data: bytes) -> None:
        """A whole uploaded file arrived for the armed ``\\import``."""
        table = self.import_table
        if table is None:
            return
        self.import_table = None
        self._spawn(self._import(table, filename, data))

    async def _import(self, table: str, filename: str, data: bytes) -> None:
        self.busy = True
        start = time.perf_counter()
        text = f"\\import {table} ({filename})"
        try:
            n = await self.engine.insert_csv(table, data)
        except DatabaseError as exc:
            self._audit(text, "import", time.perf_counter() - start, None, False, exc.message)
            self._error(exc)
        else:
            elapsed = time.perf_counter() - start
            self._audit(text, "import", elapsed, n, True, None)
            self._line(f"Imported {plural(n, 'row')} into {table} ({elapsed_text(elapsed)})")
        finally:
            self.busy = False
        if not self._closed:
            self._prompt()

    # Output -----------------------------------------------------------------------------------
    def _prompt(self) -> None:
        if self._closed:
            return
        self.editor.continuation_prompt = safe_text(self.engine.continuation_prompt)
        self._out(self.editor.start(safe_text(self.engine.prompt)))
        if self._typeahead:
            pending = bytes(self._typeahead)
            self._typeahead.clear()
            self.input(pending)

    def _out(self, data: bytes) -> None:
        if data:
            self.write(data)

    def _line(self, text: str) -> None:
        self.write(text.encode("utf-8") + b"\r\n")

    def _lines(self, lines: Sequence[str]) -> None:
        if lines:
            self.write(("\r\n".join(lines) + "\r\n").encode("utf-8"))

    def _error(self, exc: DatabaseError) -> None:
        code = f" {exc.code}" if exc.code and exc.code != "guacr" else ""
        # server text may quote the user's input: never let it reach the terminal raw
        self._line(f"{RED}ERROR{safe_text(code)}:{RESET} {safe_text(exc.message)}")

    def _audit(
        self,
        statement: str,
        klass: str,
        seconds: float,
        rows: int | None,
        success: bool,
        error: str | None,
    ) -> None:
        if self.audit is None:
            return
        try:
            self.audit(
                AuditEvent(
                    statement=statement,
                    statement_class=klass,
                    database=self.engine.database,
                    duration_ms=round(seconds * 1000, 3),
                    rows=rows,
                    success=success,
                    error=error,
                )
            )
        except Exception:
            log.exception("Audit record failed")


class _Pager:
    """Shows long output a screenful at a time: Space a page, Enter a line, q stops."""

    def __init__(self, console: Console, lines: list[str], heights: list[int], page: int) -> None:
        self.c = console
        self.lines = lines
        self.heights = heights
        self.page = page
        self.pos = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._prompting = False

    async def run(self) -> None:
        self._advance(self.page)
        await self.done

    def _advance(self, rows: int) -> None:
        if self._prompting:
            self.c._out(b"\r\x1b[K")
            self._prompting = False
        chunk: list[str] = []
        used = 0
        while self.pos < len(self.lines) and (used == 0 or used + self.heights[self.pos] <= rows):
            chunk.append(self.lines[self.pos])
            used += self.heights[self.pos]
            self.pos += 1
        self.c._lines(chunk)
        if self.pos >= len(self.lines):
            self._finish()
            return
        pct = self.pos * 100 // len(self.lines)
        self.c._out(PAGER_PROMPT.format(pct=pct).encode())
        self._prompting = True

    def key(self, data: bytes) -> None:
        if self.done.done():
            return
        if data[:1] in (b"q", b"Q", b"\x03", b"\x1b"):
            self.c._out(b"\r\x1b[K")
            self._prompting = False
            self._finish()
        elif data[:1] in (b" ", b"f") or data in (b"\x1b[6~", b"\x1b[B"):
            self._advance(self.page if data[:1] != b"\x1b" or data == b"\x1b[6~" else 1)
        elif data[:1] in (b"\r", b"\n"):
            self._advance(1)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _visible_width(line: str) -> int:
    """Cells of a line without its SGR sequences."""
    if "\x1b" not in line:
        return text_width(line)
    out, i, n = [], 0, len(line)
    while i < n:
        if line[i] == "\x1b":
            j = i + 1
            while j < n and not line[j].isalpha():
                j += 1
            i = j + 1
            continue
        out.append(line[i])
        i += 1
    return text_width("".join(out))


def _log_failure(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("Console task failed: %r", exc)
