"""The SSH handler end to end: real guacr daemon, real OpenSSH server, a test client that
replays the drawing and reads the screen back."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import asyncssh
import pytest
from guacr_process import Guacr
from servers import SSHServer
from ssh.ssh_helpers import TermClient, ssh_values, wait_file

from guacr.protocol.parser import Parser

PROMPT = "$"


def logged_in(term: TermClient) -> None:
    term.wait_text("guest@", timeout=15)


# Login and auth ---------------------------------------------------------------------
def test_password_login_runs_typed_command_and_shows_output(connect, shared_dir: Path) -> None:
    with connect() as term:
        logged_in(term)
        out = shared_dir / "marker"
        term.run(f"echo MARK$((40+2)) > {out}; echo SHOWN-$((6*7))")
        assert wait_file(out, term=term) == "MARK42\n"
        term.wait_text("SHOWN-42")  # the command's output, read off the replayed screen
        term.run(r"printf '\033]0;TITLE-%d\007' 7")
        term.wait(lambda: ("name", "TITLE-7") in term.log, what="window title as name")


@pytest.mark.parametrize("key", ["ed25519", "rsa", "rsa_openssh", "ecdsa"])
def test_private_key_auth(connect, sshd: SSHServer, shared_dir: Path, key: str) -> None:
    pem = sshd.keys[key].read_text()
    with connect(password="", **{"private-key": pem}) as term:
        logged_in(term)
        out = shared_dir / f"key-{key}"
        term.run(f"echo {key} > {out}")
        assert wait_file(out, term=term) == f"{key}\n"


def test_encrypted_key_with_passphrase_parameter(
    connect, sshd: SSHServer, shared_dir: Path
) -> None:
    pem = sshd.keys["ed25519_pass"].read_text()
    with connect(password="", passphrase=sshd.passphrase, **{"private-key": pem}) as term:
        logged_in(term)


def test_missing_passphrase_is_prompted_in_the_terminal(connect, sshd: SSHServer) -> None:
    pem = sshd.keys["ed25519_pass"].read_text()
    with connect(password="", **{"private-key": pem}) as term:
        term.wait_text("Key passphrase:")
        term.type(sshd.passphrase, enter=True)
        logged_in(term)
        assert sshd.passphrase not in term.text()  # typed without echo


def test_missing_username_and_password_are_prompted(connect, sshd: SSHServer) -> None:
    with connect(username="", password="") as term:
        term.wait_text("Login as:")
        term.type(sshd.username, enter=True)
        term.wait_text("Password:")
        term.type(sshd.password, enter=True)
        logged_in(term)


def test_wrong_password_is_unauthorized(connect) -> None:
    with connect(password="not-the-password") as term:
        err = term.wait_for("error", timeout=20)
        assert err[2] == "769", err


def test_wrong_key_passphrase_is_unauthorized(connect, sshd: SSHServer) -> None:
    pem = sshd.keys["ed25519_pass"].read_text()
    with connect(password="", passphrase="wrong", **{"private-key": pem}) as term:
        assert term.wait_for("error")[2] == "769"


def test_closed_port_fails_fast(guacr_ssh: Guacr, sshd: SSHServer) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = guacr_ssh.client()
    try:
        t0 = time.monotonic()
        client.handshake("ssh", ssh_values(sshd, port=str(port)))
        term = TermClient(client)
        err = term.wait_for("error", timeout=10)
        assert time.monotonic() - t0 < 3
        assert err[2] == "512" and "Failed to open TCP connection" in err[1]
    finally:
        client.close()


def test_host_key_mismatch_is_refused(connect, sshd: SSHServer) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    for value in (other, f"[{sshd.host}]:{sshd.port} {other}"):
        with connect(**{"host-key": value}) as term:
            err = term.wait_for("error")
            assert err[2] == "512" and "Host key did not match" in err[1], err


@pytest.mark.parametrize("form", ["bare", "known_hosts"])
def test_matching_host_key_is_accepted(connect, sshd: SSHServer, form: str) -> None:
    value = sshd.host_key if form == "bare" else sshd.known_hosts_line
    with connect(**{"host-key": value}) as term:
        logged_in(term)


# Terminal behaviour -------------------------------------------------------------------
def test_resize_reaches_the_pty(connect, shared_dir: Path) -> None:
    with connect(size=(800, 480, 96)) as term:
        logged_in(term)
        term.client.send("size", 1024, 768)
        out = shared_dir / "size"
        time.sleep(0.2)
        term.run(f"stty size > {out}")
        assert wait_file(out, term=term) == "39 99\n"  # guacd's grid for 1024x768 at 96 dpi


def test_environment_locale_and_timezone(connect, shared_dir: Path) -> None:
    with connect(locale="C.UTF-8", timezone="Europe/Paris") as term:
        logged_in(term)
        out = shared_dir / "env"
        term.run(f'echo "$LANG $TZ $TERM" > {out}')
        assert (
            wait_file(out, term=term) == "C.UTF-8 Europe/Paris linux\n"
        )  # guacd default terminal-type


def test_scrollback_with_the_mouse_wheel(connect) -> None:
    with connect() as term:
        logged_in(term)
        term.run("clear; seq 1 100")
        term.wait_text("100\nguest@")
        rows = term.screen()
        top = int(rows[0])
        for _ in range(2):  # two wheel notches: 6 rows back
            term.mouse(100, 100, 8)
            term.mouse(100, 100, 0)
        term.wait(lambda: term.screen()[0] == str(top - 6), what="scrolled back 6 rows")
        term.mouse(100, 100, 16)
        term.mouse(100, 100, 0)
        term.wait(lambda: term.screen()[0] == str(top - 3), what="scrolled forward 3 rows")


def test_full_screen_apps_restore_the_main_screen(connect) -> None:
    # guacd's default terminal-type "linux" has no alternate screen in terminfo, so ask
    # for one that does: less and vi then switch to it and restore the main screen.
    with connect(**{"terminal-type": "xterm-256color"}) as term:
        logged_in(term)
        term.run("clear; echo BEFORE-LESS")
        term.wait_text("BEFORE-LESS\nguest@")
        term.run("less /etc/services")
        term.wait_text("Network services")
        term.type("q")
        term.wait(lambda: "Network services" not in term.text(), what="less gone")
        term.run("vi -u NONE /etc/hostname")
        term.wait(lambda: "~" in term.text() and "BEFORE-LESS" not in term.text(), what="vi")
        term.type("\x1b:q!", enter=True)
        term.wait_text("BEFORE-LESS")


def test_selection_is_copied_to_the_client_clipboard(connect) -> None:
    with connect() as term:
        logged_in(term)
        term.run("clear; echo COPY-ME-PLEASE")
        term.wait_text("COPY-ME-PLEASE\nguest@")
        row = term.screen().index("COPY-ME-PLEASE")
        y = 7 + row * 19 + 9
        start = len(term.log)
        for _ in range(2):  # double click selects the word under the pointer
            term.mouse(7 + 3 * 10 + 5, y, 1)
            term.mouse(7 + 3 * 10 + 5, y, 0)
        term.wait(lambda: any(i[0] == "end" for i in term.log[start:] if i), what="clipboard")
        clip = [i for i in term.log[start:] if i[0] == "clipboard"]
        assert clip and clip[0][2] == "text/plain"
        data = b"".join(
            base64.b64decode(i[2])
            for i in term.log[start:]
            if i[0] == "blob" and i[1] == clip[0][1]
        )
        assert data == b"COPY-ME-PLEASE"


def test_client_clipboard_is_pasted_on_right_click(connect, shared_dir: Path) -> None:
    out = shared_dir / "pasted"
    with connect() as term:
        logged_in(term)
        term.send_clipboard(f"echo PASTED-OK > {out}")
        term.mouse(100, 100, 4)
        term.mouse(100, 100, 0)
        term.wait_text("PASTED-OK")  # bash enabled bracketed paste: it waits for Return
        term.key(0xFF0D)
        assert wait_file(out, term=term) == "PASTED-OK\n"


def test_joining_user_sees_the_screen_at_once(connect, guacr_ssh: Guacr, sshd: SSHServer) -> None:
    with connect() as term:
        logged_in(term)
        term.run("clear; echo SHARED-VIEW")
        term.wait_text("SHARED-VIEW\nguest@")
        joiner_client = guacr_ssh.client()
        try:
            joiner_client.handshake(term.connection_id, {"read-only": "true"})
            joiner = TermClient(joiner_client)
            joiner.wait_text("SHARED-VIEW", timeout=5)
            assert not any(i[0] == "argv" for i in joiner.log)  # argv goes to the owner only
            term.run("echo AFTER-JOIN")  # the joiner keeps following the session
            joiner.wait_text("AFTER-JOIN", timeout=5)
            assert not joiner.errors and not joiner.eof
        finally:
            joiner_client.close()


def test_owner_gets_live_parameters_and_updates_are_echoed(connect) -> None:
    with connect(**{"font-size": "12"}) as term:
        logged_in(term)
        argv = [i for i in term.log if i[0] == "argv"]
        assert [i[3] for i in argv] == ["color-scheme", "font-name", "font-size"]
        term.client.send("argv", 20, "text/plain", "font-size")
        term.client.send("blob", 20, base64.b64encode(b"14").decode())
        term.client.send("end", 20)
        ack = term.wait_for("ack")
        assert ack[1:] == ("20", "Ready for updated parameter.", "0")
        term.wait(
            lambda: any(i[0] == "argv" and i[3] == "font-size" for i in term.log[len(argv) + 1 :]),
            what="echoed argv",
        )
        term.run("echo BIGGER")
        term.wait(lambda: any(i[0] == "size" and i[1] == "1" for i in term.log), what="relayout")


def test_command_parameter_runs_instead_of_a_shell(connect) -> None:
    with connect(command="echo FROM-COMMAND; sleep 0.3") as term:
        term.wait_text("FROM-COMMAND")
        term.wait(lambda: term.eof or any(i[0] == "disconnect" for i in term.log), what="end")
        assert not term.errors


def test_session_recording_is_written(connect, tmp_path: Path) -> None:
    """recording-* parameters: the .guac file holds the drawing and the typed keys."""
    with connect(
        **{
            "recording-path": str(tmp_path / "rec"),
            "create-recording-path": "true",
            "recording-include-keys": "true",
        }
    ) as term:
        logged_in(term)
        term.run("echo RECORDED-$((2+3)); exit")
        term.wait(lambda: term.eof or any(i[0] == "disconnect" for i in term.log), what="end")
    path = tmp_path / "rec" / "recording"
    deadline = time.monotonic() + 5
    while True:  # finished once guacr released its lock on the file
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            assert time.monotonic() < deadline, "recording still locked"
            time.sleep(0.05)
        finally:
            os.close(fd)
    instructions = Parser().receive_data(path.read_bytes())
    opcodes = {i[0] for i in instructions}
    assert {"size", "img", "sync", "key"} <= opcodes
    typed = [int(i[1]) for i in instructions if i[0] == "key" and i[2] == "1"]
    assert bytes(k for k in typed if k < 128).startswith(b"echo RECORDED")


def test_typescript_is_recorded(connect, shared_dir: Path) -> None:
    with connect(
        **{
            "typescript-path": str(shared_dir / "ts"),
            "create-typescript-path": "true",
            "typescript-name": "rec",
        }
    ) as term:
        logged_in(term)
        term.run("echo TYPESCRIPT-$((1+1)); exit")
        term.wait(lambda: term.eof or any(i[0] == "disconnect" for i in term.log), what="end")
    data_file = shared_dir / "ts" / "rec"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not data_file.read_bytes().endswith(
        b"[END TYPESCRIPT]\n"
    ):
        time.sleep(0.05)
    data = data_file.read_bytes()
    assert data.startswith(b"[BEGIN TYPESCRIPT]\n") and data.endswith(b"\n[END TYPESCRIPT]\n")
    assert b"TYPESCRIPT-2" in data
    timing = (shared_dir / "ts" / "rec.timing").read_text().split("\n")[:-1]
    body = len(data) - len(b"[BEGIN TYPESCRIPT]\n") - len(b"\n[END TYPESCRIPT]\n")
    assert sum(int(line.split()[1]) for line in timing) == body


# SFTP -------------------------------------------------------------------------------------
def _ack(term: TermClient, stream: str, timeout: float = 10.0) -> tuple[str, ...]:
    start = len(term.log)
    term.wait(lambda: any(i[0] == "ack" and i[1] == stream for i in term.log[start:]), timeout)
    return next(i for i in term.log[start:] if i[0] == "ack" and i[1] == stream)


def _read_body(term: TermClient, obj: str, name: str) -> tuple[str, bytes]:
    """``get`` a path and read the ``body`` stream, acknowledging each blob."""
    start = len(term.log)
    term.client.send("get", obj, name)
    term.wait(lambda: any(i[0] == "body" for i in term.log[start:]), what="body")
    body = next(i for i in term.log[start:] if i[0] == "body")
    stream = body[2]
    data = bytearray()
    term.client.send("ack", stream, "Ready", 0)
    seen = len(term.log)
    while True:
        term.wait(
            lambda: any(i[0] in ("blob", "end") and i[1] == stream for i in term.log[seen:]),
            what="blob",
        )
        ins = next(i for i in term.log[seen:] if i[0] in ("blob", "end") and i[1] == stream)
        seen = term.log.index(ins, seen) + 1
        if ins[0] == "end":
            return body[3], bytes(data)
        data += base64.b64decode(ins[2])
        term.client.send("ack", stream, "OK", 0)


def _upload(term: TermClient, open_args: tuple[object, ...], stream: int, data: bytes) -> None:
    term.client.send(*open_args)
    assert _ack(term, str(stream))[3] == "0"
    for i in range(0, len(data), 6000):
        term.client.send("blob", stream, base64.b64encode(data[i : i + 6000]).decode())
        assert _ack(term, str(stream))[3] == "0"
    term.client.send("end", stream)
    assert _ack(term, str(stream))[3] == "0"


def test_sftp_upload_download_and_listing(connect, shared_dir: Path) -> None:
    payload = os.urandom(300_000)
    with connect(**{"enable-sftp": "true"}) as term:
        fs = term.wait_for("filesystem", timeout=15)
        obj = fs[1]
        assert fs[2] == "/"
        target = shared_dir / "up.bin"
        _upload(term, ("put", obj, 4, "application/octet-stream", str(target)), 4, payload)
        assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()
        mimetype, got = _read_body(term, obj, str(target))
        assert mimetype == "application/octet-stream"
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        mimetype, listing = _read_body(term, obj, str(shared_dir))
        assert mimetype == "application/vnd.glyptodon.guacamole.stream-index+json"
        assert json.loads(listing)[str(target)] == "application/octet-stream"
        # a plain file stream goes to the upload directory (the home directory by default)
        name = f"guacr-upload-{os.getpid()}.txt"
        _upload(term, ("file", 6, "text/plain", name), 6, b"hello home\n")
        home = Path("/home/guest") / name
        try:
            assert home.read_bytes() == b"hello home\n"
        finally:
            home.unlink(missing_ok=True)


def test_sftp_disable_download_and_upload(connect, shared_dir: Path) -> None:
    secret = shared_dir / "secret.txt"
    secret.write_text("nope\n")
    with connect(
        **{"enable-sftp": "true", "sftp-disable-download": "true", "sftp-disable-upload": "true"}
    ) as term:
        obj = term.wait_for("filesystem", timeout=15)[1]
        term.client.send("put", obj, 4, "text/plain", str(shared_dir / "x"))
        assert _ack(term, "4")[3] == "256"  # refused, as guacd without an upload handler
        start = len(term.log)
        term.client.send("get", obj, str(secret))
        term.pump(0.5)
        assert not any(i[0] == "body" for i in term.log[start:])


def test_remote_download_and_upload_directory_escape_codes(connect, shared_dir: Path) -> None:
    """guacd's OSC 482200 (send a file to the user) and 482201 (set the upload dir)."""
    source = shared_dir / "from-remote.txt"
    source.write_bytes(b"downloaded via OSC\n" * 500)
    with connect(**{"enable-sftp": "true"}) as term:
        term.wait_for("filesystem", timeout=15)
        logged_in(term)
        start = len(term.log)
        term.run(f"printf '\\033]482200;{source}\\007'")
        term.wait(lambda: any(i[0] == "file" for i in term.log[start:]), what="file stream")
        file_ins = next(i for i in term.log[start:] if i[0] == "file")
        assert file_ins[2:] == ("application/octet-stream", "from-remote.txt")
        stream, data, seen = file_ins[1], bytearray(), len(term.log)
        term.client.send("ack", stream, "Ready", 0)
        while True:
            term.wait(
                lambda: any(i[0] in ("blob", "end") and i[1] == stream for i in term.log[seen:]),
                what="download data",
            )
            ins = next(i for i in term.log[seen:] if i[0] in ("blob", "end") and i[1] == stream)
            seen = term.log.index(ins, seen) + 1
            if ins[0] == "end":
                break
            data += base64.b64decode(ins[2])
            term.client.send("ack", stream, "OK", 0)
        assert bytes(data) == source.read_bytes()
        term.run(f"printf '\\033]482201;{shared_dir}\\007'")
        term.pump(0.5)
        _upload(term, ("file", 8, "text/plain", "into-upload-dir.txt"), 8, b"uploaded\n")
        assert (shared_dir / "into-upload-dir.txt").read_bytes() == b"uploaded\n"
