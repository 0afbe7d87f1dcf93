"""VNC's ``enable-sftp`` end to end: a real Xtigervnc for the desktop and a real sshd for
the SFTP side channel, wired as guacd wires its 15 SFTP parameters."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import SSHServer, TigerVNCServer

from guacr.protocol.parser import Instruction
from tests.guacr_process import Guacr, run_guacr
from tests.vnc_handler.guac_session import GuacSession

HANDLERS = "vnc=guacr.handlers.vnc.handler:VNCHandler"


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-vnc-sftp"), workers=1, handlers=HANDLERS) as g:
        yield g


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """Writable by the test and by sshd's ``guest`` (not under pytest's 0700 tmp)."""
    path = Path(tempfile.mkdtemp(prefix="guacr-vnc-sftp-"))
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sftp_values(vnc: TigerVNCServer, sshd: SSHServer, **extra: str) -> dict[str, str]:
    v = {
        "hostname": vnc.host,
        "port": str(vnc.port),
        "password": vnc.password,
        "enable-sftp": "true",
        "sftp-hostname": sshd.host,
        "sftp-port": str(sshd.port),
        "sftp-username": sshd.username,
        "sftp-password": sshd.password,
        "sftp-host-key": sshd.host_key,
    }
    v.update(extra)
    return v


def ack(s: GuacSession, stream: str, start: int) -> Instruction:
    def seen() -> bool:
        return any(i[0] == "ack" and i[1] == stream for i in s.instructions[start:])

    s.wait_for(seen, 10, f"ack {stream}")
    return next(i for i in s.instructions[start:] if i[0] == "ack" and i[1] == stream)


def upload(s: GuacSession, open_args: tuple[object, ...], stream: int, data: bytes) -> None:
    start = len(s.instructions)
    s.client.send(*open_args)
    assert ack(s, str(stream), start)[3] == "0"
    for i in range(0, len(data), 6000):
        start = len(s.instructions)
        s.client.send("blob", stream, base64.b64encode(data[i : i + 6000]).decode())
        assert ack(s, str(stream), start)[3] == "0"
    start = len(s.instructions)
    s.client.send("end", stream)
    assert ack(s, str(stream), start)[3] == "0"


def read_body(s: GuacSession, obj: str, name: str) -> tuple[str, bytes]:
    start = len(s.instructions)
    s.client.send("get", obj, name)
    s.wait_for(lambda: any(i[0] == "body" for i in s.instructions[start:]), 10, "body")
    body = next(i for i in s.instructions[start:] if i[0] == "body")
    stream, data = body[2], bytearray()
    seen = len(s.instructions)
    s.client.send("ack", stream, "Ready", 0)
    while True:
        s.wait_for(
            lambda: any(i[0] in ("blob", "end") and i[1] == stream for i in s.instructions[seen:]),
            10,
            "blob",
        )
        ins = next(i for i in s.instructions[seen:] if i[0] in ("blob", "end") and i[1] == stream)
        seen = s.instructions.index(ins, seen) + 1
        if ins[0] == "end":
            return body[3], bytes(data)
        data += base64.b64decode(ins[2])
        s.client.send("ack", stream, "OK", 0)


def test_vnc_sftp_filesystem_upload_download_listing(
    guacr: Guacr, tigervnc: TigerVNCServer, sshd: SSHServer, shared_dir: Path
) -> None:
    root = shared_dir / "root"
    incoming = shared_dir / "incoming"
    for d in (root, incoming):
        d.mkdir()
        d.chmod(0o777)
    payload = os.urandom(200_000)
    values = sftp_values(
        tigervnc,
        sshd,
        **{"sftp-root-directory": str(root), "sftp-directory": str(incoming)},
    )
    with GuacSession(guacr) as s:
        s.connect(values)
        fs = s.wait_opcode("filesystem", 20)
        obj = fs[1]
        assert fs[2] == str(root)  # named after the root, as guacd
        # the desktop is there too
        s.wait_for(lambda: s.canvas.size == (tigervnc.width, tigervnc.height), 10, "desktop")
        upload(s, ("put", obj, 4, "application/octet-stream", "/up.bin"), 4, payload)
        assert (
            hashlib.sha256((root / "up.bin").read_bytes()).digest()
            == hashlib.sha256(payload).digest()
        )
        mimetype, got = read_body(s, obj, "/up.bin")
        assert mimetype == "application/octet-stream" and got == payload
        mimetype, listing = read_body(s, obj, "/")
        assert mimetype == "application/vnd.glyptodon.guacamole.stream-index+json"
        assert json.loads(listing) == {"/up.bin": "application/octet-stream"}
        # ".." never climbs above the root
        _, same = read_body(s, obj, "/../../up.bin")
        assert same == payload
        # a plain file stream goes to sftp-directory
        upload(s, ("file", 6, "text/plain", "dropped.txt"), 6, b"hello vnc sftp\n")
        assert (incoming / "dropped.txt").read_bytes() == b"hello vnc sftp\n"
        assert not s.errors


def test_vnc_sftp_disable_flags(
    guacr: Guacr, tigervnc: TigerVNCServer, sshd: SSHServer, shared_dir: Path
) -> None:
    (shared_dir / "secret.txt").write_text("nope\n")
    values = sftp_values(
        tigervnc,
        sshd,
        **{
            "sftp-root-directory": str(shared_dir),
            "sftp-disable-download": "true",
            "sftp-disable-upload": "true",
        },
    )
    with GuacSession(guacr) as s:
        s.connect(values)
        obj = s.wait_opcode("filesystem", 20)[1]
        start = len(s.instructions)
        s.client.send("put", obj, 4, "text/plain", "/x")
        assert ack(s, "4", start)[3] == "256"
        start = len(s.instructions)
        s.client.send("file", 6, "text/plain", "y")
        assert ack(s, "6", start)[3] == "256"
        start = len(s.instructions)
        s.client.send("get", obj, "/secret.txt")
        s.pump(0.5)
        assert not any(i[0] == "body" for i in s.instructions[start:])
        assert not (shared_dir / "x").exists() and not (shared_dir / "y").exists()


def test_vnc_sftp_only_the_owner_gets_the_filesystem(
    guacr: Guacr, tigervnc: TigerVNCServer, sshd: SSHServer
) -> None:
    with GuacSession(guacr) as owner:
        owner.connect(sftp_values(tigervnc, sshd))
        owner.wait_opcode("filesystem", 20)
        with GuacSession(guacr) as joiner:
            joiner.client.handshake(owner.id, {})
            joiner.wait_frames(1)
            joiner.pump(0.3)
            assert not any(i[0] == "filesystem" for i in joiner.instructions)


@pytest.mark.parametrize(
    ("extra", "status", "text"),
    [
        ({"sftp-username": ""}, "512", "SFTP username is required"),
        ({"sftp-password": "wrong"}, "769", "authentication failed"),
        ({"sftp-private-key": "garbage"}, "512", "Private key unreadable"),
    ],
)
def test_vnc_sftp_failures_end_the_connection(
    guacr: Guacr,
    tigervnc: TigerVNCServer,
    sshd: SSHServer,
    extra: dict[str, str],
    status: str,
    text: str,
) -> None:
    with GuacSession(guacr) as s:
        s.connect(sftp_values(tigervnc, sshd, **extra))
        s.wait_for(lambda: bool(s.errors), 20, "error")
        assert s.errors[0][2] == status and text in s.errors[0][1], s.errors
