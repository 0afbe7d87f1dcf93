"""Shared pytest setup: real test servers on 127.0.0.1, started lazily once per session."""

from __future__ import annotations

import pwd
import shutil
from collections.abc import Iterator

import pytest
from servers import SSHServer, TelnetServer, TigerVNCServer, X11VNCServer

# What scripts/install-test-deps.sh provides. Missing pieces FAIL the run instead of
# skipping tests, so a CI machine without them can't pass silently.
REQUIRED_BINARIES = (
    "/usr/sbin/sshd", "ssh", "ssh-keygen", "sshpass", "/usr/sbin/telnetd", "socat",
    "Xtigervnc", "tigervncpasswd", "Xvfb", "x11vnc", "xterm", "xsetroot", "xwd", "xdotool",
    "xclip", "xwud", "xprop",
)  # fmt: skip


def _missing_test_deps() -> list[str]:
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    try:
        pwd.getpwnam("guest")
    except KeyError:
        missing.append("user 'guest'")
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = _missing_test_deps()
    if missing:
        raise pytest.UsageError(
            "test dependencies missing: "
            + ", ".join(missing)
            + "\nRun (as root): scripts/install-test-deps.sh"
        )


@pytest.fixture(scope="session")
def sshd() -> Iterator[SSHServer]:
    with SSHServer() as server:
        yield server


@pytest.fixture(scope="session")
def telnetd() -> Iterator[TelnetServer]:
    with TelnetServer() as server:
        yield server


@pytest.fixture(scope="session")
def tigervnc() -> Iterator[TigerVNCServer]:
    with TigerVNCServer(security="VncAuth") as server:
        yield server


@pytest.fixture(scope="session")
def tigervnc_vencrypt() -> Iterator[TigerVNCServer]:
    with TigerVNCServer(security="VeNCrypt") as server:
        yield server


@pytest.fixture(scope="session")
def x11vnc() -> Iterator[X11VNCServer]:
    with X11VNCServer() as server:
        yield server
