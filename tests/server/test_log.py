"""Log formats: guacd's line, JSON lines, and syslog (here over UDP on loopback)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest

from guacr import log as glog


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_guacd_format(capsys: pytest.CaptureFixture[str]) -> None:
    glog.setup("info")
    logging.getLogger("guacr.test").info("hello %s", "world")
    err = capsys.readouterr().err
    assert err.startswith("guacr[") and err.rstrip().endswith("]: INFO:\thello world")


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    glog.setup("debug", fmt="json")
    logging.getLogger("guacr.test").warning('quote " and\nnewline')
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "guacr.test"
    assert record["message"] == 'quote " and\nnewline' and record["time"].endswith("Z")


def test_syslog_over_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        glog.setup("info", syslog_address=f"127.0.0.1:{sink.getsockname()[1]}")
        logging.getLogger("guacr.test").error("to syslog")
        data = sink.recv(4096).decode()
    # <priority>: facility daemon (3) * 8 + error (3) = 27
    assert data.startswith("<27>guacr[") and data.rstrip("\x00").endswith("]: to syslog")
