"""Drive redirection (guacd's ``enable-drive``): a local directory shared with the RDP
server over RDPDR (MS-RDPEFS) and offered to the owner as a Guacamole filesystem.

The server side is aardwolf's RDPDR channel and filesystem provider with the interop
fixes xrdp needs (its FUSE view of the drive, ``~/thinclient_drives``, was empty, every
file unreadable and no file could be renamed, truncated or deleted without them):

* a directory query carries the directory *and* the pattern (``\\*``, as Windows and
  FreeRDP send it); aardwolf matched names against the whole string, so nothing matched;
  and it answers with one entry per response (as FreeRDP), not all of them packed;
* FileBasicInformation and FileStandardInformation go back without their trailing
  reserved bytes (36 and 22 bytes, as FreeRDP sends them); xrdp checks those lengths
  exactly and fails the lookup otherwise;
* opening a file that does not exist answers STATUS_NO_SUCH_FILE (as FreeRDP), which
  xrdp turns into ENOENT, so a new file can be created; aardwolf's
  STATUS_OBJECT_NAME_NOT_FOUND became EIO;
* set-information requests are read as MS-RDPEFS lays them out: aardwolf's parser
  lost their SetBuffer (every rename, truncation and deletion failed, xrdp reported
  EEXIST) and read renames in the MS-FSCC layout; the answer carries its Length.

As guacd, a ``Download`` folder is made in the drive (unless ``disable-download``): a
file written there is sent to the owner as a ``file`` stream when the server closes it,
then removed from the drive (the folder is an outbox); a file the server moves into it
is sent from where it is and stays there (guacd answers the rename with success without
moving anything). The channel also counts the files the server holds open: guacd
defers a ``resize-method=reconnect`` while any is (a reconnect would break them).

The client side reuses the SFTP service's filesystem object (listing, downloads and
uploads paced by acks, guacd's path rules) over :class:`LocalFiles`, a small stand-in
for an SFTP client rooted at the drive path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat as stat_
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
from aardwolf.extensions.RDPEFS.channel import RDPDRChannel
from aardwolf.extensions.RDPEFS.provider import DriveDirCursor, DriveError
from aardwolf.extensions.RDPEFS.providers.filesystem import FilesystemDriveProvider
from aardwolf.extensions.RDPEFS.wintypes.ntstatus import NTStatus

DOS_NAME = "GUACFS"  # the drive's DOS name, as guacd announces it
OBJECT_NAME = "Shared Drive"  # the Guacamole filesystem object's name in guacd
DOWNLOAD_DIR = "Download"  # files written here go to the owner's browser
FILE_BASIC_INFORMATION, FILE_STANDARD_INFORMATION, FILE_RENAME_INFORMATION = 4, 5, 10
FILE_DISPOSITION_INFORMATION, FILE_ALLOCATION_INFORMATION = 13, 19
FILE_END_OF_FILE_INFORMATION = 20
INFO_SIZES = {FILE_BASIC_INFORMATION: 36, FILE_STANDARD_INFORMATION: 22}


class OneEntryCursor(DriveDirCursor):  # type: ignore[misc]
    """Directory entries one per response, as FreeRDP answers: xrdp reads only the
    first entry of a response, and its FUSE server died on packed lists."""

    def next(self, count: int | None = None) -> Any:
        return super().next(1)


class DriveProvider(FilesystemDriveProvider):  # type: ignore[misc]
    """aardwolf's local-directory provider, with the directory query fixed."""

    async def query_directory(self, handle: Any, pattern: str) -> Any:
        found = await super().query_directory(handle, pattern.rsplit("\\", 1)[-1] or "*")
        return OneEntryCursor(found._entries)


class DriveChannel(RDPDRChannel):  # type: ignore[misc]
    """aardwolf's RDPDR channel, answering as FreeRDP does where xrdp depends on it,
    and reporting files written into ``\\Download\\`` once closed (guacd then sends
    them to the owner)."""

    def __init__(self, iosettings: Any) -> None:
        super().__init__(iosettings)
        # Called with a Guacamole filesystem path and whether to remove the file once
        # it is being sent; None when downloads are disabled.
        self.on_download: Callable[[str, bool], None] | None = getattr(
            iosettings, "guacr_drive_download", None
        )
        self._written: set[int] = set()
        iosettings.guacr_drive_channel = self  # the client asks it for open_files

    @property
    def open_files(self) -> int:
        """Files and directories the server has open on the drive."""
        return len(self._handles)

    async def _irp_write(self, request: Any) -> Any:
        result = await super()._irp_write(request)
        self._written.add(request.FileId)
        return result

    async def _irp_close(self, request: Any) -> Any:
        handle = self._handles.get(request.FileId)
        written = request.FileId in self._written
        self._written.discard(request.FileId)
        result = await super()._irp_close(request)
        path = getattr(handle, "path", "")
        if written and self.on_download is not None and download_path(path) is not None:
            self.on_download(fs_path(path), True)
        return result

    async def _irp_set_information(self, request: Any) -> Any:
        """Set-information requests with their SetBuffer read as MS-RDPEFS lays it out
        (aardwolf's parser dropped it, so truncation, deletion and renames all failed);
        as guacd, a file moved into ``\\Download\\`` is sent to the owner from where
        it is, the rename answered as done without moving it."""
        handle = self._handle(request)
        provider = self._devices[handle.device_id]
        # FsInformationClass (4), Length (4), Padding (24), SetBuffer (Length)
        info_class = int.from_bytes(request.payload[0:4], "little")
        length = int.from_bytes(request.payload[4:8], "little")
        data = bytes(request.payload[32 : 32 + length])
        if info_class == FILE_RENAME_INFORMATION:
            replace, target = rename_information(data)
            if self.on_download is not None and download_path(target) is not None:
                self.on_download(fs_path(handle.path), False)
            else:
                await provider.rename(handle, target, replace)
        elif info_class in (FILE_END_OF_FILE_INFORMATION, FILE_ALLOCATION_INFORMATION):
            if len(data) < 8:
                raise DriveError(NTStatus.INVALID_PARAMETER)
            size = int.from_bytes(data[:8], "little", signed=True)
            if info_class == FILE_END_OF_FILE_INFORMATION:
                await provider.set_end_of_file(handle, size)
        elif info_class == FILE_DISPOSITION_INFORMATION:
            await provider.set_disposition(handle, bool(data[:1] != b"\0") if data else True)
        elif info_class != FILE_BASIC_INFORMATION:
            return NTStatus.NOT_SUPPORTED, b""
        # DR_DRIVE_SET_INFORMATION_RSP: the request's Length, as FreeRDP and guacd echo it
        return NTStatus.SUCCESS, bytes(request.payload[4:8])

    async def _irp_create(self, provider: Any, request: Any) -> Any:
        try:
            return await super()._irp_create(provider, request)
        except DriveError as exc:
            if exc.status == NTStatus.OBJECT_NAME_NOT_FOUND:
                raise DriveError(NTStatus.NO_SUCH_FILE) from None
            raise

    async def _irp_query_information(self, request: Any) -> Any:
        status, payload = await super()._irp_query_information(request)
        info_class = int.from_bytes(request.payload[0:4], "little")
        size = INFO_SIZES.get(info_class)
        if status == 0 and size is not None and len(payload) >= 4 + size:
            payload = size.to_bytes(4, "little") + payload[4 : 4 + size]
        return status, payload


def rename_information(data: bytes) -> tuple[bool, str]:
    """RDP_FILE_RENAME_INFORMATION (MS-RDPEFS 2.2.3.3.9): ReplaceIfExists (1 byte),
    RootDirectory (1), FileNameLength (4), FileName (UTF-16). aardwolf reads the MS-FSCC
    layout (a 20-byte header), so xrdp's renames got a garbled name and failed."""
    if len(data) < 6:
        raise DriveError(NTStatus.INVALID_PARAMETER)
    length = int.from_bytes(data[2:6], "little")
    name = data[6 : 6 + length].decode("utf-16-le", "replace").rstrip("\0")
    return bool(data[0]), name


def fs_path(rdp_path: str) -> str:
    """A drive path as the server names it (``\\a\\b``) -> the Guacamole filesystem's
    (``/a/b``)."""
    return "/" + rdp_path.lstrip("\\").replace("\\", "/")


def download_path(rdp_path: str) -> str | None:
    """A file under ``\\Download\\`` (guacd's rule) -> its path in the Guacamole
    filesystem, else None."""
    prefix = f"\\{DOWNLOAD_DIR}\\"
    if rdp_path.startswith(prefix) and len(rdp_path) > len(prefix):
        return "/" + rdp_path[1:].replace("\\", "/")
    return None


def prepare(path: str, create: bool, downloads: bool = True) -> Path:
    """The drive directory (created, owner-only, when ``create-drive-path`` is set, as
    guacd); raises OSError when it is not a usable directory."""
    root = Path(path)
    if create:
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=0o700)
    if not root.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    if downloads:  # guacd creates the Download folder unless downloads are disabled
        with contextlib.suppress(FileExistsError):
            (root / DOWNLOAD_DIR).mkdir()
    return root


class LocalFiles:
    """What :class:`~guacr.services.sftp.SFTPFilesystem` uses of an SFTP client, on a
    local directory: absolute paths are inside ``root``, symlinks are not followed out
    of it, and file I/O runs in a thread (never blocking the event loop)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.open_files = 0  # guacd counts these too before a reconnect
        self._consume: set[Path] = set()

    def _real(self, path: str) -> Path:
        real = (self.root / path.lstrip("/")).resolve()
        if real != self.root and self.root not in real.parents:
            raise asyncssh.SFTPNoSuchFile("outside the drive")
        return real

    @staticmethod
    def _attrs(st: os.stat_result) -> asyncssh.SFTPAttrs:
        kind = (
            asyncssh.FILEXFER_TYPE_DIRECTORY
            if stat_.S_ISDIR(st.st_mode)
            else asyncssh.FILEXFER_TYPE_REGULAR
        )
        return asyncssh.SFTPAttrs(type=kind, size=st.st_size, mtime=int(st.st_mtime))

    async def stat(self, path: str) -> asyncssh.SFTPAttrs:
        try:
            return self._attrs(await asyncio.to_thread(os.stat, self._real(path)))
        except FileNotFoundError:
            raise asyncssh.SFTPNoSuchFile(path) from None

    async def scandir(self, path: str) -> AsyncIterator[asyncssh.SFTPName]:
        real = self._real(path)
        names = await asyncio.to_thread(os.listdir, real)
        for name in sorted(names):
            with contextlib.suppress(OSError):
                st = await asyncio.to_thread(os.stat, real / name)
                yield asyncssh.SFTPName(name, attrs=self._attrs(st))

    async def open(self, path: str, mode: str, *_: Any, **__: Any) -> _File:
        real = self._real(path)
        f = await asyncio.to_thread(open, real, mode)
        if real in self._consume:  # sent from the Download folder: gone once open
            self._consume.discard(real)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.unlink, real)
        return _File(f, self)

    def consume(self, path: str) -> None:
        """Remove ``path`` from the drive as soon as it is opened for sending (guacd
        deletes a file written into Download once its download starts)."""
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            self._consume.add(self._real(path))

    def exit(self) -> None:
        pass


class _File:
    def __init__(self, f: Any, files: LocalFiles) -> None:
        self._f = f
        self._files: LocalFiles | None = files
        files.open_files += 1

    async def read(self, size: int) -> bytes:
        data: bytes = await asyncio.to_thread(self._f.read, size)
        return data

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._f.write, data)

    async def close(self) -> None:
        files, self._files = self._files, None
        if files is not None:
            files.open_files -= 1
        await asyncio.to_thread(self._f.close)
