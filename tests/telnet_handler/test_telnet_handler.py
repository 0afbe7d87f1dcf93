"""The Telnet handler end to end: real guacr daemon, real inetutils telnetd with /bin/login,
a test client that replays the drawing and reads the screen back (tests/ssh helpers)."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from guacr_process import Guacr
from servers import TelnetServer, free_port
from ssh.ssh_helpers import reader
from telnet_handler.telnet_helpers import Connect, TelnetTerm, telnet_values

from guacr.handlers.telnet.handler import TelnetHandler

# guacd 1.6.1's telnet args after VERSION_1_5_0 (a second copy, to catch an edit).
GUACD_TELNET_ARGS = [
    "hostname", "port", "timeout", "username", "username-regex", "password",
    "password-regex", "font-name", "font-size", "color-scheme", "typescript-path",
    "typescript-name", "create-typescript-path", "typescript-write-existing",
    "recording-path", "recording-name", "recording-exclude-output", "recording-exclude-mouse",
    "recording-include-keys", "recording-include-clipboard", "create-recording-path",
    "recording-write-existing", "read-only", "backspace", "func-keys-and-keypad",
    "terminal-type", "scrollback", "login-success-regex", "login-failure-regex",
    "clipboard-buffer-size", "disable-copy", "disable-paste", "wol-send-packet",
    "wol-mac-addr", "wol-broadcast-addr", "wol-udp-port", "wol-wait-time",
]  # fmt: skip
SHELL_PROMPT = "guest@"
SUCCESS = r"[$#] $"
FAILURE = "Login incorrect"


def logged_in(term: TelnetTerm) -> None:
    term.wait_text(SHELL_PROMPT, timeout=15)


@contextmanager
def raw_client(guacr: Guacr, values: dict[str, str]) -> Iterator[TelnetTerm]:
    client = guacr.client()
    try:
        term = TelnetTerm(client)
        term.connection_id = client.handshake("telnet", values)
        yield term
    finally:
        client.close()


# Parameters ----------------------------------------------------------------------------
def test_args_are_guacds_in_order_with_defaults(guacr_telnet: Guacr) -> None:
    with guacr_telnet.client() as client:
        client.send("select", "telnet")
        args = client.expect("args")
    assert list(args[1:]) == ["VERSION_1_5_0", *GUACD_TELNET_ARGS]
    defaults = {p.name: p.default for p in TelnetHandler.PARAMS}
    assert defaults["port"] == "23" and defaults["timeout"] == "10"
    assert defaults["terminal-type"] == "linux" and defaults["scrollback"] == "1000"
    assert defaults["username-regex"] == "[Ll]ogin:"
    assert defaults["password-regex"] == "[Pp]assword:"
    assert defaults["login-success-regex"] == "" and defaults["login-failure-regex"] == ""


# Login and session ---------------------------------------------------------------------
def test_auto_login_runs_a_typed_command_and_remote_exit_ends_normally(connect: Connect) -> None:
    with connect() as term:
        logged_in(term)
        term.run("echo SHOWN-$((6*7)) T=$TERM")
        term.wait_text("SHOWN-42 T=linux")  # output of the command, read off the screen
        term.run("exit")
        term.wait(term.ended, what="the end of the connection")
        assert not term.errors, term.errors


def test_naws_on_start_and_on_every_resize(connect: Connect) -> None:
    with connect(size=(800, 480, 96)) as term:
        logged_in(term)
        term.run('echo "S=$(stty size)="')
        term.wait_text("S=24 77=")  # guacd's grid for 800x480 at 96 dpi, sent with NAWS
        term.client.send("size", 1024, 768)
        time.sleep(0.2)
        term.run('echo "R=$(stty size)="')
        term.wait_text("R=39 99=")  # ... and for 1024x768 after the client's resize


def test_login_regexes_hide_the_terminal_until_success(connect: Connect) -> None:
    """With success/failure regexes nothing is drawn before the shell prompt appears; then
    the held output (login prompts included) is shown at once."""
    with connect(**{"login-success-regex": SUCCESS, "login-failure-regex": FAILURE}) as term:
        client, text = term.client, reader()
        first_text: list[str] = []
        deadline = time.monotonic() + 15
        while not first_text:
            assert time.monotonic() < deadline, "nothing drawn within 15 s"
            ins = client.read(deadline - time.monotonic())
            assert ins is not None and ins[0] != "error", ins
            term.log.append(ins)
            term.display.feed(ins)
            if ins[0] == "sync":
                client.send("sync", ins[1])
                screen = [row for row in text.screen(term.display) if row]
                if screen:
                    first_text = screen
        shown = "\n".join(first_text)
        assert "Password:" in shown and SHELL_PROMPT in shown, shown
        term.run("echo AFTER-$((1+1))")
        term.wait_text("AFTER-2")


def test_wrong_password_fails_with_769(connect: Connect) -> None:
    values = {"password": "not-the-password", "login-success-regex": SUCCESS,
              "login-failure-regex": FAILURE}  # fmt: skip
    with connect(**values) as term:
        err = term.wait_for("error", timeout=20)
        assert err[2] == "769" and "Login failed" in err[1], err
        assert "not-the-password" not in err[1]


def test_bulk_output_with_flow_control_then_typing(connect: Connect) -> None:
    """~2 MB of output (reading from the socket pauses while the emulator is behind)
    ends, and the session still answers typed commands afterwards."""
    with connect() as term:
        logged_in(term)
        term.run("seq 1 300000; echo DONE-$((2*3))")
        term.wait_text("DONE-6", timeout=30)
        term.run("echo STILL-$((3*3))")
        term.wait_text("STILL-9")


def test_byte_0xff_round_trip(connect: Connect, tmp_path: Path) -> None:
    """0xFF both ways: typed through a STDIN pipe (sent as IAC IAC) and read back by a raw
    tty; printed by the shell and recorded byte for byte in the typescript."""
    with connect(**{"typescript-path": str(tmp_path), "typescript-name": "ts"}) as term:
        logged_in(term)
        term.run("stty raw -echo; echo RE''ADY; head -c 3 | od -An -tx1; stty sane")
        term.wait_text("READY")
        stream = 9
        term.client.send("pipe", stream, "application/octet-stream", "STDIN")
        term.client.send("blob", stream, base64.b64encode(b"a\xffb").decode())
        term.client.send("end", stream)
        term.wait_text("61 ff 62")
        term.run(r"printf '<\377>\n'; echo PRINTED")
        term.wait_text("PRINTED")
        term.run("exit")
        term.wait(term.ended, what="the end of the connection")
    deadline = time.monotonic() + 30  # the typescript is closed when the connection ends
    while b"<\xff>" not in (recorded := (tmp_path / "ts").read_bytes()):
        assert time.monotonic() < deadline, recorded[-200:]
        time.sleep(0.05)


# Connection failures (guacd 1.6.1 reports none of these) ------------------------------
def test_refused_connection_is_519_at_once(guacr_telnet: Guacr, telnetd: TelnetServer) -> None:
    t0 = time.monotonic()
    with raw_client(guacr_telnet, telnet_values(telnetd, port=str(free_port()))) as term:
        err = term.wait_for("error", timeout=10)
    assert time.monotonic() - t0 < 3
    assert err[2] == "519" and "refused" in err[1], err


def test_unknown_host_is_519(guacr_telnet: Guacr, telnetd: TelnetServer) -> None:
    with raw_client(guacr_telnet, telnet_values(telnetd, hostname="no-such-host.invalid")) as term:
        err = term.wait_for("error", timeout=10)
    assert err[2] == "519" and "no-such-host.invalid" in err[1], err


def test_no_answer_is_514_after_the_timeout(guacr_telnet: Guacr, telnetd: TelnetServer) -> None:
    # A listener whose accept queue is full: Linux drops further SYNs, so a connect
    # hangs, all on 127.0.0.1 (backlog 0 admits one connection, the filler).
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        with socket.socket() as probe:  # the trick works on this kernel
            probe.settimeout(0.3)
            with pytest.raises(TimeoutError):
                probe.connect(("127.0.0.1", port))
        t0 = time.monotonic()
        values = telnet_values(telnetd, port=str(port), timeout="1")
        with raw_client(guacr_telnet, values) as term:
            err = term.wait_for("error", timeout=10)
        elapsed = time.monotonic() - t0
    assert err[2] == "514" and "Timed out" in err[1], err
    assert 0.9 <= elapsed < 4, elapsed
