"""Operator-friendly start-up failures: one line that names the flag, file or host and
the reason, and a non-zero exit before listening or detaching (guacd: "Unable to load
keyfile", exit 1 in 0.1 s). Each error is checked for its message and exit status, with
and without ``-f`` (a daemon that cannot start must never return 0)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guacr_process import ROOT, free_port
from server.test_tls import make_cert

from guacr.cli import build_parser

TIMEOUT = 20.0  # generous for a loaded machine; the failures take well under a second


def guacr(tmp: Path, *args: str) -> tuple[int, str, float]:
    """Run ``guacr`` on a loopback port; (exit status, stderr, seconds)."""
    conf = tmp / "none.conf"
    conf.write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env = {k: v for k, v in env.items() if not k.startswith("GUACR_")}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "guacr", "--config", str(conf), "--workers", "1", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    return proc.returncode, proc.stderr, time.monotonic() - t0


def one_error_line(stderr: str) -> str:
    """The one line that is not informational (start-up INFO lines may precede it)."""
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and not re.search(r"\]: (INFO|DEBUG|TRACE):", line)
        # guacd-style syslog: a machine without /dev/log is warned about first (issue 12)
        and "syslog socket" not in line
    ]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path)


@pytest.mark.parametrize("foreground", [True, False], ids=["-f", "daemon"])
def test_missing_certificate_names_the_file(
    tmp_path: Path, tls_files: tuple[Path, Path], foreground: bool
) -> None:
    missing = tmp_path / "missing.pem"
    args = ["-b", "127.0.0.1", "-l", str(free_port()), "-C", str(missing), "-K", str(tls_files[1])]
    status, err, seconds = guacr(tmp_path, *args, *(["-f"] if foreground else []))
    assert status == 1
    line = one_error_line(err)
    assert str(missing) in line and "-C" in line
    assert seconds < 10


@pytest.mark.parametrize("foreground", [True, False], ids=["-f", "daemon"])
def test_missing_key_names_the_file(
    tmp_path: Path, tls_files: tuple[Path, Path], foreground: bool
) -> None:
    missing = tmp_path / "missing.key"
    args = ["-b", "127.0.0.1", "-l", str(free_port()), "-C", str(tls_files[0]), "-K", str(missing)]
    status, err, _ = guacr(tmp_path, *args, *(["-f"] if foreground else []))
    assert status == 1
    line = one_error_line(err)
    assert str(missing) in line and "-K" in line


def test_both_missing_names_the_first(tmp_path: Path) -> None:
    args = [
        "-f",
        "-b",
        "127.0.0.1",
        "-l",
        str(free_port()),
        "-C",
        "/missing.pem",
        "-K",
        "/missing.key",
    ]
    status, err, _ = guacr(tmp_path, *args)
    assert status == 1
    assert "/missing.pem" in one_error_line(err)


def test_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _key = make_cert(tmp_path / "a")
    _cert, other_key = make_cert(tmp_path / "b")
    args = ["-f", "-b", "127.0.0.1", "-l", str(free_port()), "-C", str(cert), "-K", str(other_key)]
    status, err, _ = guacr(tmp_path, *args)
    assert status == 1
    line = one_error_line(err)
    assert str(cert) in line and str(other_key) in line


def test_certificate_that_is_not_a_certificate(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    args = [
        "-f",
        "-b",
        "127.0.0.1",
        "-l",
        str(free_port()),
        "-C",
        str(junk),
        "-K",
        str(tls_files[1]),
    ]
    status, err, _ = guacr(tmp_path, *args)
    assert status == 1
    assert str(junk) in one_error_line(err)


@pytest.mark.parametrize("foreground", [True, False], ids=["-f", "daemon"])
def test_bind_address_not_on_this_machine_is_named(tmp_path: Path, foreground: bool) -> None:
    # 192.0.2.1 (TEST-NET-1) is never a local address: bind fails without any traffic.
    port = free_port()
    status, err, _ = guacr(
        tmp_path, "-b", "192.0.2.1", "-l", str(port), *(["-f"] if foreground else [])
    )
    assert status == 1
    line = one_error_line(err)
    assert f"192.0.2.1:{port}" in line or ("192.0.2.1" in line and str(port) in line)


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_port_out_of_range_is_refused(tmp_path: Path, port: str) -> None:
    status, err, _ = guacr(tmp_path, "-f", "-b", "127.0.0.1", "-l", port)
    assert status == 1
    line = one_error_line(err)
    assert port in line and "-l" in line


def test_bad_log_level_is_named(tmp_path: Path) -> None:
    status, err, _ = guacr(tmp_path, "-f", "-b", "127.0.0.1", "-l", str(free_port()), "-L", "loud")
    assert status == 1
    line = one_error_line(err)
    assert "'loud'" in line and "-L" in line


def test_help_describes_every_option(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "guacr", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0
    out = proc.stdout
    assert not out.lower().startswith("usage: usage")
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no description"
        for flag in action.option_strings:
            assert flag in out


def test_unresolvable_bind_host_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Resolution failures name the host (a real lookup would leave the machine, so the
    resolver's answer is simulated: this checks guacr's message, not the resolver)."""
    import socket

    from guacr import cli

    def no_such_host(*_args: object, **_kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    conf = tmp_path / "none.conf"
    conf.write_text("")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--config", str(conf), "-f", "-b", "guacr.example", "-l", "4822"])
    assert exited.value.code == 1
    line = one_error_line(capsys.readouterr().err)
    assert "-b guacr.example" in line and "Name or service not known" in line
