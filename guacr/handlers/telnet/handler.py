"""The ``telnet`` protocol: a telnet client drawn by the shared terminal session.

Behaviour follows guacd 1.6.1: the same 37 parameters in the same order with the same
defaults, option negotiation (TTYPE with ``terminal-type``, NAWS on start and on every
resize, NEW-ENVIRON ``USER``; the server echoes), and automatic login by watching the
output for ``username-regex`` / ``password-regex`` prompts. With ``login-success-regex``
and ``login-failure-regex`` the terminal stays blank until success, and a failure ends
the connection with 769 (CLIENT_UNAUTHORIZED) "Login failed.".

Deliberate difference: guacd never checks whether the TCP connect worked (a refused
connect shows an empty terminal forever). Here every failure ends the connection at
once with an ``error``: refused, unreachable and unknown host give 519
(UPSTREAM_NOT_FOUND), no answer within ``timeout`` seconds gives 514 (UPSTREAM_TIMEOUT).
The server closing the connection ends the session normally, as in guacd.

The telnet wire format and the login matching are sans-I/O (``protocol.py``,
``login.py``); this module is only the asyncio glue between them, the socket and the
:class:`~guacr.frontend.session.TerminalSession`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final, cast

from guacr.contract.params import Params, params
from guacr.errors import GuacrError, Unauthorized
from guacr.frontend.handler import TerminalHandler
from guacr.frontend.session import (
    ARGV_NAMES,
    TerminalConfig,
    TerminalSession,
    clipboard_limit,
)
from guacr.handlers.telnet.login import LoginFailed, LoginMatcher, LoginSucceeded, SendInput
from guacr.handlers.telnet.protocol import Data, TelnetClient
from guacr.services import upstream

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

# guacd 1.6.1's telnet arguments, in its order.
TELNET_ARGS: Final = (
    "hostname",
    "port",
    "timeout",
    "username",
    "username-regex",
    "password",
    "password-regex",
    "font-name",
    "font-size",
    "color-scheme",
    "typescript-path",
    "typescript-name",
    "create-typescript-path",
    "typescript-write-existing",
    "recording-path",
    "recording-name",
    "recording-exclude-output",
    "recording-exclude-mouse",
    "recording-include-keys",
    "recording-include-clipboard",
    "create-recording-path",
    "recording-write-existing",
    "read-only",
    "backspace",
    "func-keys-and-keypad",
    "terminal-type",
    "scrollback",
    "login-success-regex",
    "login-failure-regex",
    "clipboard-buffer-size",
    "disable-copy",
    "disable-paste",
    "wol-send-packet",
    "wol-mac-addr",
    "wol-broadcast-addr",
    "wol-udp-port",
    "wol-wait-time",
)

TELNET_DEFAULTS: Final = {
    "port": "23",
    "timeout": "10",
    "username-regex": "[Ll]ogin:",
    "password-regex": "[Pp]assword:",
    "font-name": "monospace",
    "font-size": "12",
    "typescript-name": "typescript",
    "recording-name": "recording",
    "backspace": "127",
    "terminal-type": "linux",
    "scrollback": "1000",
    "wol-broadcast-addr": "255.255.255.255",
    "wol-udp-port": "9",
    "wol-wait-time": "0",
}

# Output held back while the login outcome is unknown (success/failure regexes set).
# Only the newest part is kept: the login screen is short, a flood is not a prompt.
HOLD_LIMIT: Final = 1 << 20


class _Telnet(asyncio.Protocol):
    """Socket callbacks forwarded to the handler (no buffering: lowest echo latency)."""

    def __init__(self, handler: TelnetHandler) -> None:
        self.handler = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Set here, not after create_connection returns: data may arrive first.
        # (uvloop's transports do not subclass asyncio.Transport: no isinstance check)
        self.handler._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.handler._received(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too: the session is over

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler._lost(exc)


class TelnetHandler(TerminalHandler):
    """One telnet terminal connection."""

    protocol = "telnet"
    PARAMS = params(TELNET_ARGS, TELNET_DEFAULTS)
    ARGV = frozenset(ARGV_NAMES)

    def __init__(self, conn: Connection, params: Params) -> None:
        super().__init__(conn, params)
        self.clipboard_limit = clipboard_limit(params)
        self.session = TerminalSession(
            conn,
            TerminalConfig.from_params(params, terminal_type=TELNET_DEFAULTS["terminal-type"]),
            send_input=self._write,
            on_resize=self._resize,
            pause_reading=self._pause,
            resume_reading=self._resume,
        )
        self.login = LoginMatcher(
            username=params.get_opt("username"),
            password=params.get_opt("password"),
            username_regex=params.get("username-regex"),
            password_regex=params.get("password-regex"),
            login_success_regex=params.get_opt("login-success-regex"),
            login_failure_regex=params.get_opt("login-failure-regex"),
        )
        self.telnet: TelnetClient | None = None
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[GuacrError | None] = asyncio.get_running_loop().create_future()
        self._held: deque[bytes] = deque()
        self._held_bytes = 0

    # Lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        p = self.params
        await self.session.start()
        hostname = p.get("hostname")
        port = p.get_int("port", 23)
        if not 0 < port < 65536:
            port = 23
        timeout = float(max(1, p.get_int("timeout", 10)))
        try:
            sock = await upstream.connect(hostname, port, timeout, params=p, log=self.log)
        except GuacrError as exc:
            self.log.info("Telnet connection failed: %s", exc.message)
            raise
        term = self.session.term
        self.telnet = TelnetClient(
            p.get("terminal-type"), p.get_opt("username"), term.cols, term.rows
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _Telnet(self), sock=sock)
        except BaseException:
            sock.close()  # cancelled or failed before the transport took the socket
            raise
        self.log.info("Telnet connection successful.")
        failure = await self._done
        if failure is not None:
            raise failure
        await self.session.drain()
        self.log.info("Telnet connection closed by the server.")

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        await self.session.close()

    # Telnet traffic ------------------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        """Server bytes: negotiation answered, output matched for login and drawn."""
        telnet = self.telnet
        if telnet is None:
            return
        for event in telnet.receive_data(data):
            if not isinstance(event, Data):
                continue
            if self.login.active:
                for action in self.login.feed(event.data):
                    if isinstance(action, SendInput):
                        self.log.debug("Login prompt found: sending the %s.", action.what)
                        telnet.send(action.data)
                    elif isinstance(action, LoginFailed):
                        self.log.info("Login failed (login-failure-regex matched).")
                        self._finish(Unauthorized("Login failed."))
                        return
                    elif isinstance(action, LoginSucceeded):
                        self.log.debug("Login succeeded (login-success-regex matched).")
            self._output(event.data)
        self._flush()

    def _output(self, data: bytes) -> None:
        if self.login.hold_output:
            self._held.append(data)
            self._held_bytes += len(data)
            while self._held_bytes > HOLD_LIMIT:
                self._held_bytes -= len(self._held.popleft())
            return
        if self._held:
            for chunk in self._held:
                self.session.write_output(chunk)
            self._held.clear()
            self._held_bytes = 0
        self.session.write_output(data)

    def _flush(self) -> None:
        telnet, transport = self.telnet, self._transport
        if telnet is None or transport is None or transport.is_closing():
            return
        out = telnet.data_to_send()
        if out:
            transport.write(out)

    def _lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.log.info("Telnet connection lost: %s", exc)
        self._finish(None)

    def _finish(self, failure: GuacrError | None) -> None:
        if not self._done.done():
            self._done.set_result(failure)

    # Session callbacks -----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Bytes for the server (typed keys, pastes, terminal replies)."""
        if self.telnet is not None:
            self.telnet.send(data)
            self._flush()

    def _resize(self, cols: int, rows: int) -> None:
        if self.telnet is not None:
            self.telnet.resize(cols, rows)
            self._flush()

    def _pause(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # Users and input -----------------------------------------------------------------------
    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        if pressed:
            self.login.user_typed()  # guacd: a user typing stops the credential search
        self.session.key(user, keysym, pressed)
