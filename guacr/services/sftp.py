"""SFTP as a Guacamole filesystem object, the way guacd exposes it, for every handler:
the ``ssh`` handler's own connection, or a side channel (:class:`SFTPSideChannel`) for
VNC and RDP, opened from the ``sftp-*`` parameters as guacd does.

* ``filesystem,<obj>,<root>`` is sent to the connection owner.
* ``get`` of a directory answers ``body`` with a stream of
  ``application/vnd.glyptodon.guacamole.stream-index+json`` (``{"/path": mimetype}``);
  ``get`` of a file answers ``body`` with the file contents. Either is paced by the
  client's ``ack``s: one blob per ack, ``end`` on the ack after the last blob.
* ``put`` and plain ``file`` uploads (to the upload directory, ``.`` until the remote
  sets it with OSC 482201) are written as blobs arrive, each acknowledged after the
  write, so the client never runs ahead of the server.
* OSC 482200 from the remote downloads a file to the owner as a ``file`` stream.
* Paths are normalised like guacd's (``..`` never climbs above the root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import asyncssh

from guacr.contract.params import Params
from guacr.contract.peers import Log
from guacr.errors import GuacrError, UpstreamError
from guacr.protocol import builders as b
from guacr.protocol.status import Status
from guacr.services import ssh

if TYPE_CHECKING:
    from guacr.contract.handler import StreamSink
    from guacr.contract.peers import User

log = logging.getLogger(__name__)

STREAM_INDEX_MIMETYPE: Final = "application/vnd.glyptodon.guacamole.stream-index+json"
LIST_BLOB: Final = 4096  # directory listings go out in blobs of this size, as guacd
FILE_BLOB: Final = b.BLOB_CHUNK  # file data per blob (guacd uses 4096; bigger is faster)
MAX_DEPTH: Final = 64
MAX_PATH: Final = 2048
UPLOAD_QUEUE_LIMIT: Final = 8 * 1024 * 1024  # a client ignoring acks is cut off here


def normalize_path(path: str) -> str | None:
    """guacd's normalisation: absolute, ``\\`` or ``/`` separated, ``..`` clamped at root."""
    if not path or path[0] not in "/\\" or len(path) >= MAX_PATH:
        return None
    parts: list[str] = []
    for part in path[1:].replace("\\", "/").split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            if len(parts) >= MAX_DEPTH:
                return None
            parts.append(part)
    return "/" + "/".join(parts)


def valid_filename(name: str) -> bool:
    """A single path component (uploads may not name other directories)."""
    return bool(name) and name not in (".", "..") and "/" not in name


def sftp_status(exc: Exception) -> Status:
    """Guacamole status for an SFTP failure (guacd's mapping of SSH_FX_* codes)."""
    if isinstance(exc, asyncssh.SFTPError):
        return {
            asyncssh.FX_NO_SUCH_FILE: Status.RESOURCE_NOT_FOUND,
            asyncssh.FX_PERMISSION_DENIED: Status.CLIENT_FORBIDDEN,
            asyncssh.FX_FAILURE: Status.UPSTREAM_ERROR,
            asyncssh.FX_BAD_MESSAGE: Status.SERVER_ERROR,
            asyncssh.FX_NO_CONNECTION: Status.UPSTREAM_TIMEOUT,
            asyncssh.FX_CONNECTION_LOST: Status.UPSTREAM_TIMEOUT,
            asyncssh.FX_OP_UNSUPPORTED: Status.UNSUPPORTED,
        }.get(exc.code, Status.UPSTREAM_ERROR)
    return Status.UPSTREAM_ERROR


class SFTPFilesystem:
    """One SFTP session offered to Guacamole users as a filesystem object."""

    def __init__(
        self,
        sftp: asyncssh.SFTPClient,
        root: str = "/",
        *,
        disable_download: bool = False,
        disable_upload: bool = False,
        logger: logging.LoggerAdapter[logging.Logger] | logging.Logger = log,
    ) -> None:
        self.sftp = sftp
        self.root = normalize_path(root or "/") or "/"
        self.name = self.root
        self.disable_download = disable_download
        self.disable_upload = disable_upload
        self.upload_path = "."
        self.log = logger
        self._objects: dict[User, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # Objects --------------------------------------------------------------------------
    def expose(self, user: User) -> None:
        """Send ``user`` a filesystem object for this SFTP session."""
        if user in self._objects:
            return
        obj = user.objects.alloc()
        self._objects[user] = obj
        user.send(b.filesystem(obj, self.name))

    def forget(self, user: User) -> None:
        """``user`` left."""
        self._objects.pop(user, None)

    def owns(self, user: User, obj: int) -> bool:
        """True when ``obj`` is this filesystem's object for ``user``."""
        return self._objects.get(user) == obj

    def translate(self, name: str) -> str | None:
        """Stream name (absolute within the object) -> path on the server."""
        norm = normalize_path(name)
        if norm is None:
            return None
        return posixpath.join(self.root, norm.lstrip("/")) if norm != "/" else self.root

    def set_upload_path(self, path: str) -> None:
        """OSC 482201: where plain ``file`` uploads go."""
        if path and len(path) < MAX_PATH:
            self.upload_path = path
            self.log.debug('Upload path set to "%s"', path)

    async def close(self) -> None:
        """Stop transfers and the SFTP session."""
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.sftp.exit()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # get --------------------------------------------------------------------------------
    def get(self, user: User, obj: int, name: str) -> None:
        """Answer a ``get``: a directory listing or file contents, as ``body``."""
        self._spawn(self._get(user, obj, name))

    async def _get(self, user: User, obj: int, name: str) -> None:
        path = self.translate(name)
        if path is None:
            self.log.info('Unable to generate real path for stream "%s"', name[:256])
            return
        try:
            attrs = await self.sftp.stat(path)
        except (asyncssh.Error, OSError) as exc:
            self.log.info('Unable to read file "%s": %s', path, exc)
            return
        if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
            await self._list(user, obj, name, path)
        elif self.disable_download:
            self.log.info("Downloads are disabled: not sending %s", path)
        else:
            await self._send_file(
                user, path, lambda s: b.body(obj, s, "application/octet-stream", name)
            )

    async def _list(self, user: User, obj: int, name: str, path: str) -> None:
        entries: dict[str, str] = {}
        try:
            async for entry in self.sftp.scandir(path):
                filename = entry.filename
                if not isinstance(filename, str) or not valid_filename(filename):
                    continue
                full = posixpath.join(name, filename) if name != "/" else "/" + filename
                attrs = entry.attrs
                if attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK:
                    with contextlib.suppress(asyncssh.Error, OSError):
                        attrs = await self.sftp.stat(posixpath.join(path, filename))
                directory = attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY
                entries[full] = STREAM_INDEX_MIMETYPE if directory else "application/octet-stream"
        except (asyncssh.Error, OSError) as exc:
            self.log.info('Unable to read directory "%s": %s', path, exc)
            return
        data = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        stream = user.alloc_stream()
        try:
            ack = user.expect_ack(stream)
            user.send(b.body(obj, stream, STREAM_INDEX_MIMETYPE, name))
            for i in range(0, len(data), LIST_BLOB):
                if (await ack)[1] != Status.SUCCESS:
                    return
                ack = user.expect_ack(stream)
                user.send(b.blob(stream, data[i : i + LIST_BLOB]))
            if (await ack)[1] == Status.SUCCESS:
                user.send(b.end(stream))
        except asyncio.CancelledError:
            return
        finally:
            user.free_stream(stream)

    async def _send_file(self, user: User, path: str, opener: Callable[[int], bytes]) -> None:
        """Stream a remote file: ``opener`` builds the ``body``/``file`` instruction."""
        try:
            f = await self.sftp.open(path, "rb", encoding=None)
        except (asyncssh.Error, OSError) as exc:
            self.log.info('Unable to read file "%s": %s', path, exc)
            return
        stream = user.alloc_stream()
        try:
            ack = user.expect_ack(stream)
            user.send(opener(stream))
            while True:
                _, status = await ack
                if status != Status.SUCCESS:
                    return
                data = cast(bytes, await f.read(FILE_BLOB))
                ack = user.expect_ack(stream)
                if not data:
                    user.send(b.end(stream))
                    return
                user.send(b.blob(stream, data))
        except (asyncssh.Error, OSError) as exc:
            self.log.info('Error reading file "%s": %s', path, exc)
            user.send(b.end(stream))
        except asyncio.CancelledError:
            return
        finally:
            user.free_stream(stream)
            with contextlib.suppress(Exception):
                await f.close()

    def download(self, user: User, path: str) -> None:
        """OSC 482200: send a remote file to ``user`` as a ``file`` stream."""
        if self.disable_download:
            self.log.info("Downloads are disabled: not sending %s", path)
            return
        filename = posixpath.basename(path) or path
        self._spawn(
            self._send_file(user, path, lambda s: b.file(s, "application/octet-stream", filename))
        )

    # Uploads ------------------------------------------------------------------------------
    def upload(self, user: User, stream: int, filename: str) -> _Upload | None:
        """A plain ``file`` stream: written to the upload directory."""
        if self.disable_upload:
            return None
        if not valid_filename(filename):
            user.ack(stream, "SFTP: Illegal filename", Status.CLIENT_BAD_REQUEST)
            return _Upload(self, user, stream, None)
        base = self.upload_path
        path = (base.rstrip("/") + "/" if base else "") + filename
        return _Upload(self, user, stream, path)

    def put(self, user: User, stream: int, name: str) -> _Upload | None:
        """A ``put`` on the filesystem object."""
        if self.disable_upload:
            return None
        path = self.translate(name)
        if path is None:
            user.ack(stream, "SFTP: Illegal filename", Status.CLIENT_BAD_REQUEST)
            return _Upload(self, user, stream, None)
        return _Upload(self, user, stream, path)


class _Upload:
    """An inbound file: blobs are written in order, each acknowledged after its write."""

    def __init__(self, fs: SFTPFilesystem, user: User, stream: int, path: str | None) -> None:
        self.fs = fs
        self.user = user
        self.stream = stream
        self.path = path
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._failed = path is None
        if path is not None:
            fs._spawn(self._run(path))

    def blob(self, data: bytes) -> None:
        if self._failed:
            self.user.ack(self.stream, "SFTP: Write failed", Status.SERVER_ERROR)
            return
        self._queued += len(data)
        if self._queued > UPLOAD_QUEUE_LIMIT:
            self._failed = True
            self.user.ack(self.stream, "SFTP: Too much data in flight", Status.CLIENT_OVERRUN)
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(data)

    def end(self) -> None:
        if self.path is not None:
            self._queue.put_nowait(None)

    async def _run(self, path: str) -> None:
        user, stream, log_ = self.user, self.stream, self.fs.log
        attrs = asyncssh.SFTPAttrs(permissions=0o600)
        try:
            f = await self.fs.sftp.open(path, "wb", attrs, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            log_.info('Unable to open file "%s": %s', path, exc)
            self._failed = True
            user.ack(stream, "SFTP: Open failed", sftp_status(exc))
            return
        user.ack(stream, "SFTP: File opened", Status.SUCCESS)
        try:
            while True:
                data = await self._queue.get()
                if data is None:
                    break
                self._queued -= len(data)
                await f.write(data)
                user.ack(stream, "SFTP: OK", Status.SUCCESS)
        except (asyncssh.Error, OSError) as exc:
            log_.info('Unable to write to file "%s": %s', path, exc)
            self._failed = True
            user.ack(stream, "SFTP: Write failed", Status.SERVER_ERROR)
        finally:
            try:
                await f.close()
                if not self._failed:
                    user.ack(stream, "SFTP: OK", Status.SUCCESS)
            except (asyncssh.Error, OSError):
                user.ack(stream, "SFTP: Close failed", Status.SERVER_ERROR)


# The side channel ---------------------------------------------------------------------


@dataclass(frozen=True)
class SFTPSettings:
    """guacd's 15 SFTP side-channel parameters (VNC, RDP)."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    private_key: str | None
    passphrase: str | None
    public_key: str | None
    host_key: str | None
    timeout: int
    alive_interval: int
    directory: str | None
    root: str
    disable_download: bool
    disable_upload: bool

    @classmethod
    def from_params(cls, p: Params, username: str | None = None) -> SFTPSettings | None:
        """None unless ``enable-sftp``; ``sftp-hostname`` defaults to ``hostname`` and
        ``sftp-username`` to ``username`` when given (RDP's username)."""
        if not p.get_bool("enable-sftp"):
            return None
        port = p.get_int("sftp-port", 22)
        return cls(
            hostname=p.get_opt("sftp-hostname") or p.get("hostname"),
            port=port if 0 < port < 65536 else 22,
            username=p.get_opt("sftp-username") or username,
            password=p.get_opt("sftp-password"),
            private_key=p.get_opt("sftp-private-key"),
            passphrase=p.get_opt("sftp-passphrase"),
            public_key=p.get_opt("sftp-public-key"),
            host_key=p.get_opt("sftp-host-key"),
            timeout=max(1, p.get_int("sftp-timeout", 10)),
            alive_interval=max(0, p.get_int("sftp-server-alive-interval", 0)),
            directory=p.get_opt("sftp-directory"),
            root=p.get("sftp-root-directory") or "/",
            disable_download=p.get_bool("sftp-disable-download"),
            disable_upload=p.get_bool("sftp-disable-upload"),
        )


class SFTPSideChannel:
    """A separate SSH connection whose SFTP session is offered as a filesystem (guacd's
    ``enable-sftp`` for VNC and RDP): exposed to the owner, uploads through ``file``."""

    def __init__(self, settings: SFTPSettings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.ssh: asyncssh.SSHClientConnection | None = None
        self.fs: SFTPFilesystem | None = None

    async def open(self) -> SFTPFilesystem:
        """Connect and start SFTP; raises GuacrError with guacd's statuses and texts."""
        s = self.settings
        if s.username is None:
            raise GuacrError("SFTP username is required if SFTP is enabled.", Status.SERVER_ERROR)
        self.log.debug("Connecting via SSH for SFTP filesystem access.")
        key = certificate = None
        if s.private_key is not None:
            try:
                key = ssh.import_key(s.private_key, s.passphrase)
            except (asyncssh.KeyImportError, ValueError):
                raise GuacrError("Private key unreadable.", Status.SERVER_ERROR) from None
            certificate = ssh.import_certificate(s.public_key)
        self.ssh = await ssh.connect(
            s.hostname,
            s.port,
            s.username,
            password=None if key is not None else (s.password or ""),
            key=key,
            certificate=certificate,
            host_key=s.host_key,
            timeout=float(s.timeout),
            alive_interval=s.alive_interval,
            params=None,
            log=self.log,
        )
        try:
            client = await self.ssh.start_sftp_client()
        except (asyncssh.Error, OSError) as exc:
            self.log.info("SFTP could not be started: %s", exc)
            raise UpstreamError("SSH SFTP connection failed.") from None
        fs = SFTPFilesystem(
            client,
            s.root,
            disable_download=s.disable_download,
            disable_upload=s.disable_upload,
            logger=self.log,
        )
        if s.directory is not None:
            fs.set_upload_path(s.directory)
        self.fs = fs
        self.log.debug("SFTP connection succeeded.")
        return fs

    # The handler hooks of a graphical protocol (VNC, RDP) route here; each answers
    # "refused" (None) while the side channel is not open or the object is not its own.
    def on_file(self, user: User, stream: int, filename: str) -> StreamSink | None:
        """A ``file`` upload from ``user``: into the upload directory."""
        return self.fs.upload(user, stream, filename) if self.fs is not None else None

    def on_get(self, user: User, obj: int, name: str) -> None:
        """A ``get`` on the filesystem object: listing or download."""
        if self.fs is not None and self.fs.owns(user, obj):
            self.fs.get(user, obj, name)

    def on_put(self, user: User, obj: int, stream: int, name: str) -> StreamSink | None:
        """A ``put`` on the filesystem object: upload to ``name``."""
        if self.fs is None or not self.fs.owns(user, obj):
            return None
        return self.fs.put(user, stream, name)

    def user_left(self, user: User) -> None:
        """Forget what ``user`` had open."""
        if self.fs is not None:
            self.fs.forget(user)

    async def close(self) -> None:
        """End transfers, the SFTP session and the SSH connection."""
        fs, self.fs = self.fs, None
        if fs is not None:
            with contextlib.suppress(Exception):
                await fs.close()
        conn, self.ssh = self.ssh, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2)
