"""A real MariaDB server on 127.0.0.1 for the database console tests.

``mariadbd`` runs directly (no systemd, no ``mysqld_safe``) on a scratch data directory
and a free loopback port. Initialisation is kept to about two seconds by making InnoDB
small and skipping every fsync: the data is thrown away with the directory.

The server has the test account ``guest``/``guest`` (for ``localhost``, ``127.0.0.1`` and
``::1``, since ``--skip-name-resolve`` matches accounts by address) with all rights on
the database ``testdb``, which holds a five-row table ``items(id, name, qty, price)``.
``admin()`` runs SQL as root over the Unix socket, so tests can check from the server's
own side what a session did.

``MariaDBServer(tls=True)`` also serves TLS with a certificate for 127.0.0.1/localhost
signed by a throwaway CA (``self.tls.ca``); the default start-up has no TLS.
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

# Small, fsync-free InnoDB: the same options for install-db and the server.
_INNODB = (
    "--innodb-log-file-size=4M",
    "--innodb-buffer-pool-size=32M",
    "--innodb-data-file-path=ibdata1:4M:autoextend",
    "--innodb-undo-tablespaces=0",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-flush-method=nosync",
    "--skip-log-bin",
)

SETUP_SQL = f"""
CREATE DATABASE {DATABASE};
CREATE USER '{TEST_USER}'@'localhost' IDENTIFIED BY '{TEST_PASSWORD}';
CREATE USER '{TEST_USER}'@'127.0.0.1' IDENTIFIED BY '{TEST_PASSWORD}';
CREATE USER '{TEST_USER}'@'::1' IDENTIFIED BY '{TEST_PASSWORD}';
GRANT ALL ON {DATABASE}.* TO '{TEST_USER}'@'localhost';
GRANT ALL ON {DATABASE}.* TO '{TEST_USER}'@'127.0.0.1';
GRANT ALL ON {DATABASE}.* TO '{TEST_USER}'@'::1';
CREATE TABLE {DATABASE}.items (
    id INT PRIMARY KEY,
    name VARCHAR(40),
    qty INT,
    price DECIMAL(8,2)
);
INSERT INTO {DATABASE}.items VALUES
    (1, 'apple', 10, 0.50), (2, 'banana', 20, 0.25), (3, 'cherry', 30, 3.00),
    (4, 'date', NULL, 2.75), (5, 'elderberry', 50, NULL);
"""


class MariaDBServer(_Server):
    """``mariadbd`` with a scratch data directory, on a free loopback port."""

    kind = "mariadb"

    def __init__(self, tls: bool = False) -> None:
        super().__init__()
        self.username = TEST_USER
        self.password = TEST_PASSWORD
        self.database = DATABASE
        self.want_tls = tls
        self.tls: TLSFiles | None = None

    @property
    def socket_path(self) -> Path:
        return self.dir / "run" / "mysqld.sock"

    def _start(self) -> None:
        as_root = os.geteuid() == 0
        data = self.dir / "data"
        data.mkdir()
        self.socket_path.parent.mkdir()  # mariadbd (as mysql) creates its socket here
        user_opts: list[str] = []
        if as_root:
            for d in (data, self.socket_path.parent):
                shutil.chown(d, "mysql", "mysql")
            user_opts = ["--user=mysql"]
        init = subprocess.run(
            [
                "mariadb-install-db",
                *user_opts,
                f"--datadir={data}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
                *_INNODB,
            ],
            capture_output=True,
            timeout=120,
        )
        if init.returncode:
            out = (init.stdout + init.stderr).decode(errors="replace")[-2000:]
            raise ServerError(f"mariadb-install-db failed:\n{out}")
        tls_opts: list[str] = []
        if self.want_tls:
            self.tls = make_server_tls(self.dir / "tls")
            if as_root:
                shutil.chown(self.tls.key, "mysql", "mysql")
            t = self.tls
            tls_opts = [f"--ssl-ca={t.ca}", f"--ssl-cert={t.cert}", f"--ssl-key={t.key}"]
        for _attempt in range(3):
            self.port = free_port()
            proc = self._spawn(
                [
                    "mariadbd",
                    "--no-defaults",
                    *user_opts,
                    f"--datadir={data}",
                    f"--bind-address={self.host}",
                    f"--port={self.port}",
                    f"--socket={self.socket_path}",
                    f"--pid-file={self.socket_path.parent / 'mysqld.pid'}",
                    "--skip-name-resolve",
                    "--max-connections=300",
                    *_INNODB,
                    *tls_opts,
                ],
                "mariadb.log",
            )
            try:
                self._wait_ready(proc)
                break
            except (ServerError, TimeoutError):
                if "already in use" not in self.log():
                    raise self._fail("mariadbd did not start") from None
                kill_tree([proc.pid])
                self.procs.remove(proc)
        else:
            raise self._fail("no free port for mariadbd after 3 attempts")
        self.admin(SETUP_SQL)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(f"mariadbd exited with {proc.returncode}")
            if self.socket_path.exists():
                ping = subprocess.run(
                    ["mariadb-admin", f"--socket={self.socket_path}", "ping"],
                    capture_output=True,
                    timeout=10,
                )
                if ping.returncode == 0:
                    wait_port(self.host, self.port, 5)
                    return
            time.sleep(0.05)
        raise TimeoutError("mariadbd did not answer within 30 s")

    def admin(self, sql: str, database: str | None = None) -> str:
        """Run SQL as root over the Unix socket; tab-separated output without headers."""
        argv = ["mariadb", "--no-defaults", f"--socket={self.socket_path}", "-N", "-B"]
        if database:
            argv.append(database)
        done = subprocess.run(argv, input=sql.encode(), capture_output=True, timeout=60)
        if done.returncode:
            raise ServerError(f"mariadb admin SQL failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()
