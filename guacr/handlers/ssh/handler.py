"""The ``ssh`` protocol: an asyncssh client drawn by the shared terminal session.

Behaviour follows guacd 1.6.1 (same 45 parameters, order and defaults, same prompts
and status codes) with modern SSH underneath: OpenSSH and PEM private keys (ed25519,
ECDSA, RSA signed with rsa-sha2-256/512), optional host-key verification, SFTP on the
same connection. Deliberate difference: a missing password is asked for before
connecting rather than after the SSH handshake (same prompt, same result), so the
connect ``timeout`` can bound the whole handshake without cutting off a typist.

Failures end the connection with guacd's statuses: TCP connect failure or timeout 512
(SERVER_ERROR, as guacd 1.6.1 sends), host key mismatch 512, SSH handshake failure 515,
bad credentials or unusable key 769, PTY/shell/command refused 515.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

import asyncssh

from guacr.contract.handler import StreamSink
from guacr.contract.params import Params, params
from guacr.errors import Unauthorized, UpstreamError
from guacr.frontend.handler import TerminalHandler
from guacr.frontend.session import (
    ARGV_NAMES,
    TerminalConfig,
    TerminalSession,
    clipboard_limit,
)
from guacr.services import ssh
from guacr.services.sftp import SFTPFilesystem
from guacr.services.ssh import quiet_packet_log
from guacr.terminal import OscEvent

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

# guacd 1.6.1's ssh arguments, in its order (without SSH agent support).
SSH_ARGS: Final = (
    "hostname",
    "host-key",
    "port",
    "timeout",
    "username",
    "password",
    "font-name",
    "font-size",
    "enable-sftp",
    "sftp-root-directory",
    "sftp-disable-download",
    "sftp-disable-upload",
    "private-key",
    "passphrase",
    "public-key",
    "color-scheme",
    "command",
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
    "server-alive-interval",
    "backspace",
    "func-keys-and-keypad",
    "terminal-type",
    "scrollback",
    "locale",
    "timezone",
    "clipboard-buffer-size",
    "disable-copy",
    "disable-paste",
    "wol-send-packet",
    "wol-mac-addr",
    "wol-broadcast-addr",
    "wol-udp-port",
    "wol-wait-time",
)

SSH_DEFAULTS: Final = {
    "port": "22",
    "timeout": "10",
    "font-name": "monospace",
    "font-size": "12",
    "sftp-root-directory": "/",
    "typescript-name": "typescript",
    "recording-name": "recording",
    "server-alive-interval": "0",
    "backspace": "127",
    "terminal-type": "linux",  # guacd's default
    "scrollback": "1000",
    "wol-broadcast-addr": "255.255.255.255",
    "wol-udp-port": "9",
    "wol-wait-time": "0",
}

# The terminal channel's receive window (asyncssh's default: 2 MB). The host may run
# this far ahead of what the session has taken in; with reading paused (the session's
# backlog is full, guacr.frontend.session) it then blocks. With 2 MB, every ``cat`` of a
# big file made sshd, the pty and cat push 2 MB more through the machine than anyone
# was shown -- CPU taken from every typist when the host is local (issue 16: 10 busy
# sessions' commands wrote 20-55 MB while a 6 s typing phase ran, 3-13 MB with a
# 128-256 KB window). Output is drawn far slower than a loopback refills 128 KB, so a
# lone session's bulk throughput does not depend on it.
TERMINAL_WINDOW: Final = 128 * 1024

OSC_DOWNLOAD: Final = 482200
OSC_UPLOAD_PATH: Final = 482201


class _Channel(asyncssh.SSHClientSession[bytes]):
    """The terminal channel: output to the session, end of channel to the handler."""

    def __init__(self, handler: SSHHandler) -> None:
        self.handler = handler

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.handler.session.write_output(data)

    def connection_lost(self, exc: Exception | None) -> None:
        done = self.handler._channel_done
        if not done.done():
            done.set_result(None)


class SSHHandler(TerminalHandler):
    """One SSH terminal connection."""

    protocol = "ssh"
    PARAMS = params(SSH_ARGS, SSH_DEFAULTS)
    ARGV = frozenset(ARGV_NAMES)

    def __init__(self, conn: Connection, params: Params) -> None:
        super().__init__(conn, params)
        self.clipboard_limit = clipboard_limit(params)
        self.session = TerminalSession(
            conn,
            TerminalConfig.from_params(params, terminal_type=SSH_DEFAULTS["terminal-type"]),
            send_input=self._write,
            on_resize=self._resize,
            on_osc=self._osc,
            pause_reading=self._pause,
            resume_reading=self._resume,
        )
        self._ssh: asyncssh.SSHClientConnection | None = None
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._channel_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sftp: SFTPFilesystem | None = None

    # Lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        p = self.params
        session = self.session
        await session.start()
        hostname = p.get("hostname")
        port = p.get_int("port", 22)
        if not 0 < port < 65536:
            port = 22
        username = p.get_opt("username")
        prompted = False
        if username is None:
            username = await session.prompt("Login as: ", echo=True)
            prompted = True
        key = await self._private_key()
        password = p.get_opt("password")
        if key is None and password is None:
            password = await session.prompt("Password: ", echo=False)
            prompted = True
        if prompted or p.get_opt("private-key"):
            session.clear_screen()
        ssh = await self._connect(hostname, port, username, password, key)
        self._ssh = ssh
        self.log.info("SSH connection successful.")
        if p.get_bool("enable-sftp"):
            await self._start_sftp(ssh)
        await self._open_terminal(ssh)
        await self._channel_done
        await session.drain()

    async def close(self) -> None:
        if self.sftp is not None:
            with contextlib.suppress(Exception):
                await self.sftp.close()
        if self._chan is not None:
            self._chan.close()
        if self._ssh is not None:
            self._ssh.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ssh.wait_closed(), 2)
        await self.session.close()

    # Connecting ----------------------------------------------------------------------------
    async def _private_key(self) -> asyncssh.SSHKey | None:
        text = self.params.get_opt("private-key")
        if text is None:
            return None
        passphrase = self.params.get_opt("passphrase")
        try:
            return ssh.import_key(text, passphrase)
        except asyncssh.KeyImportError as exc:
            if passphrase is None and "assphrase" in str(exc):
                passphrase = await self.session.prompt("Key passphrase: ", echo=False)
                try:
                    return ssh.import_key(text, passphrase)
                except (asyncssh.KeyImportError, ValueError) as exc2:
                    raise Unauthorized(f"Auth key import failed: {exc2}") from None
            raise Unauthorized(f"Auth key import failed: {exc}") from None
        except ValueError as exc:
            raise Unauthorized(f"Auth key import failed: {exc}") from None

    async def _connect(
        self,
        hostname: str,
        port: int,
        username: str,
        password: str | None,
        key: asyncssh.SSHKey | None,
    ) -> asyncssh.SSHClientConnection:
        p = self.params
        certificate = ssh.import_certificate(p.get_opt("public-key")) if key else None
        return await ssh.connect(
            hostname,
            port,
            username,
            password=password,
            key=key,
            certificate=certificate,
            host_key=p.get_opt("host-key"),
            timeout=float(max(1, p.get_int("timeout", 10))),
            alive_interval=max(0, p.get_int("server-alive-interval", 0)),
            params=p,
            log=self.log,
        )

    async def _open_terminal(self, ssh: asyncssh.SSHClientConnection) -> None:
        p, session = self.params, self.session
        env: dict[str | bytes, str | bytes] = {}
        locale = p.get_opt("locale")
        if locale:
            env["LANG"] = locale
        tz = p.get_opt("timezone") or (self.conn.owner.info.timezone if self.conn.owner else None)
        if tz:
            env["TZ"] = tz
        command = p.get_opt("command")
        term = session.term
        try:
            chan, _ = await ssh.create_session(
                lambda: _Channel(self),
                command,
                env=env,
                request_pty="force",
                term_type=p.get("terminal-type") or SSH_DEFAULTS["terminal-type"],
                term_size=(term.cols, term.rows),
                term_modes={asyncssh.PTY_VERASE: session.cfg.backspace},
                encoding=None,
                window=TERMINAL_WINDOW,
            )
        except asyncssh.ChannelOpenError as exc:
            what = "execute command" if command else "allocate PTY or start shell"
            raise UpstreamError(f"Unable to {what}: {exc.reason}") from None
        except asyncssh.Error as exc:
            raise UpstreamError(f"Unable to open terminal channel: {exc}") from None
        self._chan = chan
        quiet_packet_log(chan)  # every keystroke and echo is a packet (issue 16)
        if (term.cols, term.rows) != (session.term.cols, session.term.rows):
            chan.change_terminal_size(session.term.cols, session.term.rows)

    async def _start_sftp(self, ssh: asyncssh.SSHClientConnection) -> None:
        p = self.params
        try:
            sftp = await ssh.start_sftp_client()
        except (asyncssh.Error, OSError) as exc:
            self.log.warning("SFTP could not be started: %s", exc)
            return
        self.sftp = SFTPFilesystem(
            sftp,
            p.get("sftp-root-directory") or "/",
            disable_download=p.get_bool("sftp-disable-download"),
            disable_upload=p.get_bool("sftp-disable-upload"),
            logger=self.log,
        )
        owner = self.conn.owner
        if owner is not None and owner in self.conn.users:
            self.sftp.expose(owner)
        self.log.debug("SFTP session initialized")

    # Session callbacks -----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        chan = self._chan
        if chan is not None and not chan.is_closing():
            chan.write(data)

    def _resize(self, cols: int, rows: int) -> None:
        if self._chan is not None and not self._chan.is_closing():
            self._chan.change_terminal_size(cols, rows)

    def _pause(self) -> None:
        if self._chan is not None:
            self._chan.pause_reading()

    def _resume(self) -> None:
        if self._chan is not None:
            self._chan.resume_reading()

    def _osc(self, event: OscEvent) -> None:
        fs = self.sftp
        if fs is None:
            return
        if event.command == OSC_DOWNLOAD:
            owner = self.conn.owner
            if owner is not None and owner in self.conn.users:
                fs.download(owner, event.data)
        elif event.command == OSC_UPLOAD_PATH and not fs.disable_upload:
            fs.set_upload_path(event.data)

    # Users and input -----------------------------------------------------------------------
    def user_left(self, user: User) -> None:
        self.session.user_left(user)
        if self.sftp is not None:
            self.sftp.forget(user)

    def on_file(self, user: User, stream: int, mimetype: str, filename: str) -> StreamSink | None:
        if self.sftp is None:
            return None
        return self.sftp.upload(user, stream, filename)

    def on_get(self, user: User, obj: int, name: str) -> None:
        if self.sftp is not None and self.sftp.owns(user, obj):
            self.sftp.get(user, obj, name)

    def on_put(
        self, user: User, obj: int, stream: int, mimetype: str, name: str
    ) -> StreamSink | None:
        if self.sftp is None or not self.sftp.owns(user, obj):
            return None
        return self.sftp.put(user, stream, name)
