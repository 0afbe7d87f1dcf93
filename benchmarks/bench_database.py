"""Database console benchmarks against any guacd-compatible server running guacr's
``mysql``/``postgresql`` handlers.

    python benchmarks/bench_database.py [--local] [--guacd HOST:PORT]
        [--engine mysql|postgresql|both] [--db-host H] [--db-port P]
        [--db-user U] [--db-password PW] [--database D] [--repeat N]

Measures, per engine:

* **Enter to first row drawn**, for a 1-row and a 10,000-row result: the time from
  sending the Return key to the first ``sync`` after which the replayed screen shows the
  result's first row (the client reads the text off the drawn pixels, as the tests do);
  median and worst of ``--repeat`` runs;
* **export throughput**: ``\\export`` of 100,000 rows (two columns), from Return to the
  file stream's ``end``, acking every blob as a browser does; rows/s and MB/s.

``--local`` starts guacr (1 worker) and throw-away MariaDB and PostgreSQL servers from
the test helpers; otherwise point ``--guacd`` and ``--db-*`` at running ones (the
database needs the sequence engine, MariaDB's ``seq_1_to_N`` tables, or PostgreSQL's
``generate_series``). The machine this was written on is shared and noisy: compare
figures from one run, and repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from database.db_helpers import DbTerm, _read_screen  # noqa: E402
from guacr_process import Client  # noqa: E402
from PIL import Image  # noqa: E402
from ssh.ssh_helpers import TermClient  # noqa: E402

from guacr.protocol.parser import Instruction, Parser  # noqa: E402

RETURN = 0xFF0D
MARK = "FIRSTROW"
# The marker is built by the server, so the typed query never shows it on screen.
QUERIES = {
    "mysql": {
        1: "SELECT 1 AS n, CONCAT('FIRST', 'ROW') AS label;",
        10000: (
            "SELECT seq AS n, IF(seq = 1, CONCAT('FIRST', 'ROW'), 'x') AS label "
            "FROM seq_1_to_10000;"
        ),
        "export": "SELECT seq AS n, CONCAT('row-', seq) AS label FROM seq_1_to_100000",
    },
    "postgresql": {
        1: "SELECT 1 AS n, 'FIRST' || 'ROW' AS label;",
        10000: (
            "SELECT g AS n, CASE WHEN g = 1 THEN 'FIRST' || 'ROW' ELSE 'x' END AS label "
            "FROM generate_series(1, 10000) g;"
        ),
        "export": "SELECT g AS n, 'row-' || g AS label FROM generate_series(1, 100000) g",
    },
}
PROMPTS = {"mysql": "]>", "postgresql": "=>"}


class _HostClient(Client):
    """The test client, aimed at any host."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.parser = Parser()
        self.queue: list[Instruction] = []


def _open(host: str, port: int, engine: str, values: dict[str, str]) -> DbTerm:
    client = _HostClient(host, port)
    raw = TermClient(client)
    raw.connection_id = client.handshake(engine, values, size=(1024, 768, 96))
    term = DbTerm(raw)
    term.wait_text(PROMPTS[engine], timeout=30)
    return term


def _first_row_time(term: DbTerm, query: str, engine: str) -> float:
    """Seconds from Return to the first sync after which the screen shows the first row.

    Frames are only recorded while they arrive (a copy of the text layer per ``sync``)
    and read afterwards, so reading the screen never delays the clock.
    """
    term.type("clear", enter=True)
    term.wait(lambda: MARK not in term.text() and PROMPTS[engine] in term.text(), 10)
    term.type(query)
    term.pump(0.3)
    frames: list[tuple[float, Image.Image]] = []
    start = time.monotonic()
    term.key(RETURN)
    deadline = start + 30
    while time.monotonic() < deadline:
        try:
            ins = term.client.read(0.5 if frames else 10)
        except TimeoutError:
            break  # quiet for 0.5 s after drawing: the result is complete
        if ins is None:
            raise RuntimeError("connection ended")
        arrived = time.monotonic()
        term.log.append(ins)
        term.display.feed(ins)
        if ins[0] == "sync":
            term.client.send("sync", ins[1])
            frames.append((arrived, term.display.layer(1).copy()))
    for arrived, image in frames:
        if any(MARK in row for row in _read_screen(image)):
            if "-- More" in term.text():
                term.key(ord("q"))  # leave the pager
            term.wait_text("in set", timeout=30)
            return arrived - start
    raise TimeoutError("first row never drawn")


def _export(term: DbTerm, query: str) -> tuple[float, int, int]:
    """(seconds, rows, bytes) of one export of ``query``."""
    done = len(term.finished)
    term.type(f"\\export {query}")
    term.pump(0.2)
    start = time.monotonic()
    term.key(RETURN)
    term.wait(lambda: len(term.finished) > done, timeout=300, what="export end")
    elapsed = time.monotonic() - start
    data = bytes(term.finished[-1]["data"])  # type: ignore[arg-type]
    return elapsed, data.count(b"\r\n") - 1, len(data)


def bench(host: str, port: int, engine: str, values: dict[str, str], repeat: int) -> None:
    term = _open(host, port, engine, values)
    try:
        for rows in (1, 10000):
            times = [_first_row_time(term, QUERIES[engine][rows], engine) for _ in range(repeat)]
            print(
                f"{engine:10s} Enter -> first row drawn, {rows:>5d}-row result: "
                f"median {statistics.median(times) * 1000:7.1f} ms, "
                f"worst {max(times) * 1000:7.1f} ms ({repeat} runs)"
            )
        runs = [_export(term, str(QUERIES[engine]["export"])) for _ in range(max(1, repeat // 3))]
        best = min(runs)
        elapsed, count, size = best
        print(
            f"{engine:10s} export {count} rows ({size / 1e6:.1f} MB CSV): "
            f"{elapsed:.2f} s = {count / elapsed:,.0f} rows/s, {size / elapsed / 1e6:.1f} MB/s "
            f"(best of {len(runs)})"
        )
    finally:
        term.client.close()


@contextlib.contextmanager
def _local() -> Iterator[tuple[int, dict[str, dict[str, str]]]]:
    from guacr_process import run_guacr
    from servers.mariadb import MariaDBServer
    from servers.postgresql import PostgreSQLServer

    handlers = (
        "mysql=guacr.handlers.database.handler:MySQLHandler,"
        "postgresql=guacr.handlers.database.handler:PostgreSQLHandler"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        MariaDBServer() as my,
        PostgreSQLServer() as pg,
        run_guacr(Path(tmp), workers=1, handlers=handlers) as g,
    ):
        servers = {}
        for name, s in (("mysql", my), ("postgresql", pg)):
            servers[name] = {
                "hostname": s.host,
                "port": str(s.port),
                "username": s.username,
                "password": s.password,
                "database": s.database,
                "ssl-mode": "disable",
            }
        yield g.port, servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--local", action="store_true", help="start guacr and both databases")
    ap.add_argument("--guacd", default="127.0.0.1:4822")
    ap.add_argument("--engine", choices=["mysql", "postgresql", "both"], default="both")
    ap.add_argument("--db-host", default="127.0.0.1")
    ap.add_argument("--db-port", default="")
    ap.add_argument("--db-user", default="guest")
    ap.add_argument("--db-password", default="guest")
    ap.add_argument("--database", default="testdb")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    engines = ["mysql", "postgresql"] if args.engine == "both" else [args.engine]
    if args.local:
        with _local() as (port, servers):
            for engine in engines:
                bench("127.0.0.1", port, engine, servers[engine], args.repeat)
        return
    host, _, port_text = args.guacd.rpartition(":")
    for engine in engines:
        values = {
            "hostname": args.db_host,
            "port": args.db_port,
            "username": args.db_user,
            "password": args.db_password,
            "database": args.database,
        }
        bench(host or "127.0.0.1", int(port_text), engine, values, args.repeat)


if __name__ == "__main__":
    main()
