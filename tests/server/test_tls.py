"""TLS on the guacd port: every connection is TLS, and joins still reach their owner.

With TLS the worker terminates TLS and reads ``select``; a join for a connection owned
by another worker is forwarded through the listener (guacr.server.tls).
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
from guacr_process import Client, assert_no_traceback, run_guacr
from servers import _self_signed_cert as make_cert  # the one throw-away certificate


class TlsClient(Client):
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        super().__init__(port, timeout)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


def joined_pid(c: Client) -> int:
    while True:
        ins = c.read(5)
        assert ins is not None
        if ins[0] == "name" and ins[1].startswith("joined pid="):
            return int(ins[1].split()[1].split("=")[1])


def test_tls_handshake_and_cross_worker_join(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    with run_guacr(tmp_path, workers=2, extra=["-C", str(cert), "-K", str(key)]) as g:
        owners = []
        for _ in range(4):
            c = TlsClient(g.port)
            cid = c.handshake("echo", {})
            owners.append((c, cid, joined_pid(c)))
        assert len({p for _, _, p in owners}) == 2
        for c, cid, pid in owners:
            # Whichever worker terminates this joiner's TLS, the join lands on the owner.
            j = TlsClient(g.port)
            assert j.handshake(cid, {}) == cid
            assert joined_pid(j) == pid
            j.send("key", 42, 1)
            while (ins := c.read(5)) is not None and ins != ("name", "key 42 1"):
                pass
            assert ins == ("name", "key 42 1")
            j.close()
        for c, _, _ in owners:
            c.close()
        # plaintext is refused: no TLS, no service
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as raw:
            raw.sendall(b"6.select,4.echo;")
            raw.settimeout(5)
            try:
                data = raw.recv(100)
            except (ConnectionResetError, TimeoutError):
                data = b""
            assert b"args" not in data
        time.sleep(0.1)
        assert_no_traceback(g.log())


def test_tls_unknown_join_gets_516(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    with run_guacr(tmp_path, workers=2, extra=["-C", str(cert), "-K", str(key)]) as g:
        c = TlsClient(g.port)
        c.send("select", "$00000000-0000-4000-8000-000000000000")
        out = c.read_until_eof(5)
        assert out[0] == ("error", "No such connection.", "516")
        c.close()


@pytest.mark.parametrize("flag", ["-v"])
def test_version_flag(flag: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "guacr", flag], capture_output=True, text=True)
    assert out.returncode == 0 and "guacr version" in out.stdout


def test_unknown_flag_prints_usage_and_exits_1() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "guacr", "-Z"], capture_output=True, text=True)
    assert out.returncode == 1 and "USAGE" in out.stderr
