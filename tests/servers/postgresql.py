"""A real PostgreSQL 15 server on 127.0.0.1 for the database console tests.

``initdb`` and ``postgres`` run directly as the ``postgres`` account on a scratch data
directory and a free loopback port (no cluster tooling, no systemd); ``fsync`` is off
because the data is thrown away with the directory, which keeps start-up near a second.

TCP logins use SCRAM passwords; the Unix socket in the scratch directory trusts local
users, so ``admin()`` can check from the server's side what a session did. The test
role ``guest``/``guest`` owns the database ``testdb`` with a five-row table
``items(id, name, qty, price)``.

``PostgreSQLServer(tls=True)`` also serves TLS (``ssl=on``) with a certificate for
127.0.0.1/localhost signed by a throwaway CA (``self.tls.ca``); ``tls_only=True`` (implies
``tls``) makes ``pg_hba.conf`` accept TCP logins only over TLS (``hostssl``). The default
start-up has no TLS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from servers import (
    TEST_PASSWORD,
    TEST_USER,
    ServerError,
    _Server,
    free_port,
    kill_tree,
    wait_port,
)
from servers.certs import TLSFiles, make_server_tls

DATABASE = "testdb"
BIN = Path("/usr/lib/postgresql/15/bin")

SETUP_SQL = f"""
CREATE ROLE {TEST_USER} LOGIN PASSWORD '{TEST_PASSWORD}';
CREATE DATABASE {DATABASE} OWNER {TEST_USER};
\\connect {DATABASE}
SET ROLE {TEST_USER};
CREATE TABLE items (id int PRIMARY KEY, name text, qty int, price numeric(8,2));
INSERT INTO items VALUES
    (1, 'apple', 10, 0.50), (2, 'banana', 20, 0.25), (3, 'cherry', 30, 3.00),
    (4, 'date', NULL, 2.75), (5, 'elderberry', 50, NULL);
"""


class PostgreSQLServer(_Server):
    """``postgres`` with a scratch data directory, on a free loopback port."""

    kind = "postgresql"

    def __init__(self, tls: bool = False, tls_only: bool = False) -> None:
        super().__init__()
        self.username = TEST_USER
        self.password = TEST_PASSWORD
        self.database = DATABASE
        self._as: str | None = None
        self.want_tls = tls or tls_only
        self.tls_only = tls_only
        self.tls: TLSFiles | None = None

    @property
    def socket_dir(self) -> Path:
        return self.dir

    def _start(self) -> None:
        self._as = "postgres" if os.geteuid() == 0 else None
        data = self.dir / "data"
        if self._as:
            shutil.chown(self.dir, self._as)
        init = subprocess.run(
            [
                str(BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-N",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            timeout=120,
            user=self._as,
        )
        if init.returncode:
            out = (init.stdout + init.stderr).decode(errors="replace")[-2000:]
            raise ServerError(f"initdb failed:\n{out}")
        tls_opts: list[str] = []
        if self.want_tls:
            self.tls = make_server_tls(self.dir / "tls")
            if self._as:
                shutil.chown(self.tls.key, self._as)
            t = self.tls
            tls_opts = [
                "-c",
                "ssl=on",
                "-c",
                f"ssl_cert_file={t.cert}",
                "-c",
                f"ssl_key_file={t.key}",
            ]
        if self.tls_only:
            (data / "pg_hba.conf").write_text(
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
            )
        for _attempt in range(3):
            self.port = free_port()
            proc = self._spawn(
                [
                    str(BIN / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=32MB",
                    *tls_opts,
                ],
                "postgresql.log",
                as_user=self._as,
            )
            try:
                self._wait_ready(proc)
                break
            except (ServerError, TimeoutError):
                if "already in use" not in self.log():
                    raise self._fail("postgres did not start") from None
                kill_tree([proc.pid])
                self.procs.remove(proc)
        else:
            raise self._fail("no free port for postgres after 3 attempts")
        self.admin(SETUP_SQL)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(f"postgres exited with {proc.returncode}")
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port)],
                capture_output=True,
                timeout=10,
            )
            if ready.returncode == 0:
                wait_port(self.host, self.port, 5)
                return
            time.sleep(0.05)
        raise TimeoutError("postgres did not answer within 30 s")

    def admin(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; unaligned output, no headers."""
        done = subprocess.run(
            [
                str(BIN / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
            ],
            input=sql.encode(),
            capture_output=True,
            timeout=60,
        )
        if done.returncode:
            raise ServerError(f"psql admin SQL failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()
