"""Recorded input is reported from one place, the core's dispatch, for every handler:
``key``/``mouse``/``touch`` once each with a timestamp, and their exclusions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guacr_process import Guacr, run_guacr

from guacr.protocol.parser import Instruction, Parser


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("rec-input"), workers=1) as g:
        yield g


def record(guacr: Guacr, rec: Path, **extra: str) -> list[Instruction]:
    values = {"recording-path": str(rec), "recording-include-keys": "true", **extra}
    with guacr.client() as c:
        cid = c.handshake("echo", values)
        c.send("touch", 3, 100, 200, 5, 6, "45.5", "0.75")
        c.expect("name")
        c.send("mouse", 7, 8, 1)
        c.expect("name")
        c.send("key", 65, 1)
        c.expect("name")
        c.send("disconnect")
        c.read_until_eof(5)
    deadline = time.monotonic() + 5
    while f"Connection {cid} removed." not in guacr.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return Parser().receive_data((rec / "recording").read_bytes())


def test_touch_mouse_and_key_are_recorded_once(guacr: Guacr, tmp_path: Path) -> None:
    ins = record(guacr, tmp_path)
    touches = [i for i in ins if i[0] == "touch"]
    assert len(touches) == 1 and touches[0][1:8] == ("3", "100", "200", "5", "6", "45.5", "0.75")
    assert int(touches[0][8]) > 0  # timestamp
    assert [i[1:4] for i in ins if i[0] == "mouse"] == [("7", "8", "1")]
    assert [i[1:3] for i in ins if i[0] == "key"] == [("65", "1")]


def test_recording_exclude_touch(guacr: Guacr, tmp_path: Path) -> None:
    ins = record(guacr, tmp_path, **{"recording-exclude-touch": "true"})
    assert not any(i[0] == "touch" for i in ins)
    assert any(i[0] == "mouse" for i in ins)
