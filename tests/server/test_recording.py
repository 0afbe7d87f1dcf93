"""Session recordings (``recording-*``), written by the core as guacd writes them."""

from __future__ import annotations

import base64
import fcntl
import os
import stat
import time
from pathlib import Path

import pytest
from guacr_process import Guacr, run_guacr

from guacr.protocol.parser import Parser


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Guacr:
    with run_guacr(tmp_path_factory.mktemp("rec"), workers=1) as g:
        yield g  # type: ignore[misc]


def wait_closed(g: Guacr, cid: str) -> None:
    deadline = time.monotonic() + 5
    while f"Connection {cid} removed." not in g.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_recording_holds_output_and_input(guacr: Guacr, tmp_path: Path) -> None:
    rec_dir = tmp_path / "recs" / "deep"
    values = {
        "recording-path": str(rec_dir),
        "create-recording-path": "true",
        "recording-include-keys": "true",
        "recording-include-clipboard": "true",
    }
    with guacr.client() as c:
        cid = c.handshake("echo", values)
        c.expect("sync")
        path = rec_dir / "recording"
        # in progress: locked, so guacenc/guaclog can tell
        fd = os.open(path, os.O_RDWR)
        with pytest.raises(OSError):
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        c.send("key", 101, 1)
        c.send("mouse", 10, 20, 1)
        c.send("clipboard", 2, "text/plain")
        c.send("blob", 2, base64.b64encode(b"copied").decode())
        c.send("end", 2)
        c.expect("name")
        c.send("disconnect")
        c.read_until_eof(5)
    wait_closed(guacr, cid)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(rec_dir.stat().st_mode) == 0o750
    instructions = Parser().receive_data(path.read_bytes())
    opcodes = [i[0] for i in instructions]
    assert opcodes[0] == "size" and "sync" in opcodes  # the broadcast output
    key = next(i for i in instructions if i[0] == "key")
    assert key[1:3] == ("101", "1") and int(key[3]) > 0  # with a timestamp
    mouse = next(i for i in instructions if i[0] == "mouse")
    assert mouse[1:4] == ("10", "20", "1") and int(mouse[4]) > 0
    clip = next(i for i in instructions if i[0] == "clipboard")
    blob = next(i for i in instructions if i[0] == "blob" and i[1] == clip[1])
    assert base64.b64decode(blob[2]) == b"copied"


def test_names_get_suffixes_and_exclusions_apply(guacr: Guacr, tmp_path: Path) -> None:
    values = {
        "recording-path": str(tmp_path),
        "recording-name": "s",
        "recording-exclude-output": "true",
        "recording-exclude-mouse": "true",
    }
    for _ in range(2):
        with guacr.client() as c:
            cid = c.handshake("echo", values)
            c.send("mouse", 1, 2, 0)
            c.send("key", 97, 1)
            c.expect("name")
            c.send("disconnect")
            c.read_until_eof(5)
        wait_closed(guacr, cid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "s.1"]
    assert (tmp_path / "s").read_bytes() == b""  # no output, no mouse, keys not asked


def test_no_recording_path_writes_nothing(guacr: Guacr, tmp_path: Path) -> None:
    before = guacr.log().count("Recording of session")
    with guacr.client() as c:
        cid = c.handshake("echo", {"recording-name": "x", "create-recording-path": "true"})
        c.send("disconnect")
        c.read_until_eof(5)
    wait_closed(guacr, cid)
    assert guacr.log().count("Recording of session") == before
