"""Log formats and syslog: lines received on an AF_UNIX datagram socket we bind."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guacr.control import logs


@pytest.fixture
def syslog_sock(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in saved:
            h.close()
    root.handlers[:], root.level = saved, level


def test_text_to_stderr_and_syslog(syslog_sock: tuple[str, socket.socket]) -> None:
    path, sock = syslog_sock
    err = io.StringIO()
    logs.configure(logging.INFO, "text", path, role="listener", stream=err)
    logging.getLogger("guacr.test").warning("Worker %d exited", 3)
    logging.getLogger("guacr.test").debug("not shown")
    assert err.getvalue() == f"guacr[{os.getpid()}]: WARNING:\tWorker 3 exited\n"
    line = sock.recv(4096).decode()
    # <daemon.warning> "guacr[pid]: message"; the receiver adds the time.
    assert line == f"<28>guacr[{os.getpid()}]: Worker 3 exited", line
    logging.getLogger("guacr.test").info("x" * 5000)
    assert len(sock.recv(8192)) < 2100  # truncated at 2048 like guacd
    logging.getLogger("guacr.test").error("boom")
    assert sock.recv(4096).startswith(b"<27>")


def test_json_lines_with_context(syslog_sock: tuple[str, socket.socket]) -> None:
    path, sock = syslog_sock
    err = io.StringIO()
    logs.configure(logging.DEBUG, "json", path, role="worker-1", stream=err)
    log = logging.getLogger("guacr.worker")

    async def session() -> None:
        with logs.bind(connection="$abc", user="@u1", protocol="ssh"):
            await asyncio.sleep(0)
            log.info('User "%s" joined', "@u1")
        log.debug("outside")

    asyncio.run(session())
    lines = [json.loads(x) for x in err.getvalue().splitlines()]
    lines = [x for x in lines if x["logger"].startswith("guacr")]  # asyncio's own debug line
    assert lines[0]["message"] == 'User "@u1" joined'
    assert lines[0]["level"] == "info" and lines[0]["role"] == "worker-1"
    assert (lines[0]["connection"], lines[0]["user"], lines[0]["protocol"]) == ("$abc", "@u1", "ssh")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["time"])
    assert lines[0]["pid"] == os.getpid() and lines[0]["logger"] == "guacr.worker"
    assert "connection" not in lines[1] and lines[1]["level"] == "debug"
    body = sock.recv(4096).decode().split(": ", 1)[1]
    while json.loads(body)["logger"] == "asyncio":
        body = sock.recv(4096).decode().split(": ", 1)[1]
    assert json.loads(body)["connection"] == "$abc"
    assert sock.recv(4096).startswith(b"<31>")  # daemon.debug


def test_missing_socket_warns_on_stderr(tmp_path: Path) -> None:
    err = io.StringIO()
    handlers = logs.configure(logging.INFO, "text", str(tmp_path / "nothing"), stream=err)
    assert "syslog socket" in err.getvalue() and "does not exist" in err.getvalue()
    logging.getLogger("guacr").info("still on stderr")  # no exception, counted as dropped
    assert "still on stderr" in err.getvalue()
    assert isinstance(handlers[1], logs.SyslogHandler) and handlers[1].dropped == 1
    err2 = io.StringIO()
    logs.configure(logging.INFO, "text", "", stream=err2)  # syslog off: no warning
    assert err2.getvalue() == ""


def test_socket_appearing_later_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "late")
    handlers = logs.configure(logging.INFO, "text", path, stream=io.StringIO())
    monkeypatch.setattr(logs, "RETRY_CONNECT", 0.0)
    handler = handlers[1]
    assert isinstance(handler, logs.SyslogHandler)
    handler._next_try = 0.0
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        logging.getLogger("guacr").info("hello")
        assert sock.recv(4096).endswith(b": hello")
    finally:
        sock.close()


def test_full_receiver_drops_instead_of_blocking(syslog_sock: tuple[str, socket.socket]) -> None:
    path, _sock = syslog_sock  # nobody reads it
    handlers = logs.configure(logging.INFO, "text", path, stream=io.StringIO())
    for i in range(5000):
        logging.getLogger("guacr").info("line %d %s", i, "y" * 500)
    handler = handlers[1]
    assert isinstance(handler, logs.SyslogHandler) and handler.dropped > 0


def test_warning_printed_before_detaching(tmp_path: Path) -> None:
    """The real daemon entry: the warning reaches stderr of the starting process."""
    code = (
        "import logging; from guacr.control import logs;"
        f"logs.configure(logging.INFO, 'json', {str(tmp_path / 'missing')!r}, warn=True)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "does not exist" in r.stderr
