"""The engine-independent console core with a scripted engine (our own stand-in, no
server): statement splitting, typed-ahead input while busy, refusals and their audit,
paging keys, client commands and Ctrl+C. The real engines are tested against real
servers in test_console.py and test_read_only.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from guacr.handlers.database.console import AuditEvent, Console
from guacr.handlers.database.engine import ConnectOptions, DatabaseError, Engine, Result
from guacr.handlers.database.sql import Dialect
from guacr.terminal import Terminal


class ScriptedEngine(Engine):
    """Answers ``SELECT n`` with n rows; ``FAIL`` raises; ``SLOW`` waits for cancel."""

    name = "scripted"
    dialect = Dialect.POSTGRESQL
    default_port = 1
    read_only_refused = frozenset({"BEGIN"})

    def __init__(self, read_only: bool = False) -> None:
        super().__init__(ConnectOptions("h", 1, "u", "p", "db", read_only=read_only))
        self.ran: list[str] = []
        self.cancelled = asyncio.Event()

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def execute(self, statement: str, max_rows: int) -> Result:
        self.ran.append(statement)
        if statement == "FAIL":
            raise DatabaseError("42000", "scripted failure")
        if statement == "SLOW":
            await self.cancelled.wait()
            raise DatabaseError("57014", "canceling statement due to user request")
        n = int(statement.split()[1])
        rows = [(i, f"r{i}") for i in range(1, min(n, max_rows) + 1)]
        return Result(columns=["i", "s"], rows=list(rows), total=n)

    async def cancel(self) -> None:
        self.cancelled.set()

    async def stream(
        self, statement: str, batch: int
    ) -> AsyncIterator[tuple[list[str], list[Sequence[object]]]]:
        yield ["i"], [(1,)]

    async def insert_csv(self, table: str, data: bytes) -> int:
        return data.count(b"\n") - 1


class Harness:
    def __init__(self, engine: ScriptedEngine, rows: int = 24) -> None:
        self.term = Terminal(80, rows, 500)
        self.audit: list[AuditEvent] = []
        self.console = Console(
            engine, self.term.feed, cols=80, rows=rows, max_rows=50, audit=self.audit.append
        )
        self.console.start(["banner"])

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.term.lines())

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        while self.console.busy and self.console._pager is None:
            await asyncio.sleep(0.005)


async def test_statements_run_in_order_and_typed_ahead_input_waits() -> None:
    engine = ScriptedEngine()
    h = Harness(engine)
    h.console.input(b"SELECT 2; SELECT 3;\rSELECT 1;\r")
    await h.settle()
    await h.settle()
    assert engine.ran == ["SELECT 2", "SELECT 3", "SELECT 1"]
    assert "2 rows in set" in h.text() and "1 row in set" in h.text()
    assert [e.rows for e in h.audit] == [2, 3, 1] and all(e.success for e in h.audit)


async def test_an_error_stops_the_rest_of_the_line_and_is_audited() -> None:
    engine = ScriptedEngine()
    h = Harness(engine)
    h.console.input(b"FAIL; SELECT 1;\r")
    await h.settle()
    assert engine.ran == ["FAIL"]
    assert "ERROR 42000: scripted failure" in h.text()
    assert h.audit[-1].success is False and h.audit[-1].error == "scripted failure"


async def test_refusal_in_read_only_mode_never_reaches_the_engine() -> None:
    engine = ScriptedEngine(read_only=True)
    h = Harness(engine)
    h.console.input(b"BEGIN;\r")
    await h.settle()
    assert engine.ran == []
    assert "BEGIN is not allowed in read-only mode." in h.text()
    assert h.audit[-1].statement_class == "begin" and not h.audit[-1].success


async def test_long_results_page_and_stop_on_q() -> None:
    engine = ScriptedEngine()
    h = Harness(engine, rows=10)
    h.console.input(b"SELECT 40;\r")
    await h.settle()
    assert "-- More" in h.text()
    assert "r40" not in h.text()
    h.console.input(b" ")  # a page
    await h.settle()
    assert "-- More" in h.text()
    h.console.input(b"q")
    await h.settle()
    assert "40 rows in set" in h.text()
    assert not h.console.busy


async def test_ctrl_c_cancels_the_running_statement() -> None:
    engine = ScriptedEngine()
    h = Harness(engine)
    h.console.input(b"SLOW;\r")
    await asyncio.sleep(0.01)
    assert h.console.busy
    h.console.input(b"typed ahead\x03")
    await h.settle()
    assert engine.cancelled.is_set()
    assert "Query cancelled" in h.text()
    assert h.console.editor.text == ""  # typed-ahead text was dropped with the cancel


async def test_unknown_backslash_command_and_help() -> None:
    h = Harness(ScriptedEngine())
    h.console.input(b"\\zz\r")
    await h.settle()
    assert "Invalid command \\zz" in h.text()
    h.console.input(b"help\r")
    await h.settle()
    assert "\\export QUERY" in h.text()


async def test_quit_calls_back() -> None:
    engine = ScriptedEngine()
    quits: list[bool] = []
    console = Console(engine, lambda data: None, on_quit=lambda: quits.append(True))
    console.start()
    console.input(b"quit\r")
    for _ in range(20):
        await asyncio.sleep(0)
    assert quits == [True]
