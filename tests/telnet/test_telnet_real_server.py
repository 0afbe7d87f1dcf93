"""The telnet core and login matcher against a real inetutils telnetd (/bin/login, bash).

A thin asyncio glue stands in for the future handler: socket bytes go through
``TelnetClient``, application data through ``LoginMatcher``, and typed credentials and
negotiation replies go back to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Protocol

import pytest

from guacr.handlers.telnet.login import (
    LoginAction,
    LoginFailed,
    LoginMatcher,
    LoginSucceeded,
    SendInput,
)
from guacr.handlers.telnet.protocol import BINARY, ECHO, NAWS, SGA, Data, TelnetClient


class TelnetServer(Protocol):
    """What the session fixture ``telnetd`` (tests/servers.py) provides."""

    host: str
    port: int
    username: str
    password: str


SUCCESS = r"[$#] $"
FAILURE = "Login incorrect"


class Session:
    """Socket <-> TelnetClient <-> LoginMatcher, collecting the application output."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: TelnetClient,
        matcher: LoginMatcher,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.client, self.matcher = client, matcher
        self.output = bytearray()
        self.actions: list[LoginAction] = []

    @classmethod
    async def open(
        cls, host: str, port: int, client: TelnetClient, matcher: LoginMatcher
    ) -> Session:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, client, matcher)

    def flush(self) -> None:
        out = self.client.data_to_send()
        if out:
            self.writer.write(out)

    def type(self, data: bytes) -> None:
        self.client.send(data)
        self.flush()

    async def _read_once(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out; output so far: {bytes(self.output[-300:])!r}")
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
        except TimeoutError:
            raise TimeoutError(f"timed out; output: {bytes(self.output[-300:])!r}") from None
        if not chunk:
            raise EOFError(f"server closed; output: {bytes(self.output[-300:])!r}")
        for event in self.client.receive_data(chunk):
            if isinstance(event, Data):
                self.output += event.data
                for action in self.matcher.feed(event.data):
                    self.actions.append(action)
                    if isinstance(action, SendInput):
                        self.client.send(action.data)
        self.flush()

    async def until_outcome(self, timeout: float = 20.0) -> LoginAction:
        deadline = time.monotonic() + timeout
        while True:
            for action in self.actions:
                if isinstance(action, LoginSucceeded | LoginFailed):
                    return action
            await self._read_once(deadline)

    async def expect(self, pattern: bytes, timeout: float = 10.0) -> re.Match[bytes]:
        """Wait for ``pattern`` in the output after the mark; consume up to its end."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while (m := rx.search(self.output)) is None:
            await self._read_once(deadline)
        del self.output[: m.end()]
        return m

    async def run(self, command: bytes, result: bytes) -> re.Match[bytes]:
        """Type a command line and wait for ``result`` (a regex) in its output."""
        self.output.clear()
        self.type(command + b"\r")
        return await self.expect(result)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "nvt"])
async def test_login_window_size_and_iac_both_ways(telnetd: TelnetServer, binary: bool) -> None:
    client = TelnetClient("linux", telnetd.username, 97, 33, accept_binary=binary)
    matcher = LoginMatcher(
        username=telnetd.username,
        password=telnetd.password,
        login_success_regex=SUCCESS,
        login_failure_regex=FAILURE,
    )
    s = await Session.open(telnetd.host, telnetd.port, client, matcher)
    try:
        assert await s.until_outcome() == LoginSucceeded()
        assert s.actions == [
            SendInput("username", b"guest\r"),
            SendInput("password", b"guest\r"),
            LoginSucceeded(),
        ]
        assert client.remote_enabled(ECHO) and client.remote_enabled(SGA)
        assert client.local_enabled(NAWS)
        assert client.local_enabled(BINARY) is binary

        # TTYPE and NAWS reached the pty; NEW-ENVIRON's USER is in the environment.
        await s.run(b"echo T=$TERM; stty size", rb"T=linux\r\n33 97\r\n")
        client.resize(300, 255)  # 255 rows: an IAC byte inside the NAWS subnegotiation
        s.flush()
        await s.run(b"stty size", rb"[\r\n]255 300\r\n")
        client.resize(0xFF, 0xFF)
        s.flush()
        await s.run(b"stty size", rb"[\r\n]255 255\r\n")

        # Server to client: a 0xFF byte written by the shell arrives (sent as IAC IAC).
        await s.run(b"printf 'x\\377y\\n'", rb"x\xffy\r\n")

        # Client to server: a raw tty reads exactly what we typed, 0xFF and CR included.
        # In NVT mode CR goes out as CR NUL and telnetd drops the NUL; a bare CR would
        # make telnetd swallow the Ctrl-@ (NUL) typed next.
        await s.run(b"stty raw -echo; echo RE''ADY; head -c 5 | od -An -tx1; stty sane", rb"READY")
        s.type(b"a\r")
        s.type(b"\x00b\xff")
        await s.expect(rb"61 0d 00 62 ff")
    finally:
        await s.close()


async def test_wrong_password_reaches_the_failure_regex(telnetd: TelnetServer) -> None:
    client = TelnetClient("linux", telnetd.username, 80, 24)
    matcher = LoginMatcher(
        username=telnetd.username,
        password="not-the-password",
        login_success_regex=SUCCESS,
        login_failure_regex=FAILURE,
    )
    s = await Session.open(telnetd.host, telnetd.port, client, matcher)
    try:
        assert await s.until_outcome(timeout=30) == LoginFailed()
        # Each credential typed once; login's second "login:" prompt is not answered.
        assert s.actions == [
            SendInput("username", b"guest\r"),
            SendInput("password", b"not-the-password\r"),
            LoginFailed(),
        ]
        assert matcher.hold_output and not matcher.active
    finally:
        await s.close()
