"""Typescript recordings (``typescript-*`` parameters) in ``scriptreplay`` format."""

from __future__ import annotations

import os
import time
from typing import Final

from guacr.files import open_unique


class Typescript:
    """A typescript recording: raw host output plus a ``scriptreplay`` timing file.

    As guacd: the data file is wrapped in ``[BEGIN TYPESCRIPT]``/``[END TYPESCRIPT]``
    lines (``scriptreplay`` skips the first line as a header), the timing file has one
    ``<seconds since previous> <bytes>`` line per flush, name collisions get ``.1`` ..
    ``.255`` suffixes unless ``write_existing``; files are 0600, a created directory 0700.
    """

    HEADER: Final = b"[BEGIN TYPESCRIPT]\n"
    FOOTER: Final = b"\n[END TYPESCRIPT]\n"
    MAX_SUFFIX: Final = 255
    MAX_DELAY_MS: Final = 86400000
    BUFFER: Final = 4096

    def __init__(self, data_fd: int, timing_fd: int, path: str) -> None:
        self.path = path
        self._data = data_fd
        self._timing = timing_fd
        self._buffer = bytearray()
        self._last = time.monotonic()
        os.write(self._data, self.HEADER)

    @classmethod
    def create(
        cls, directory: str, name: str, create_path: bool = False, write_existing: bool = False
    ) -> Typescript:
        """Open the two files (raises OSError when impossible)."""
        data_fd, path = open_unique(
            directory,
            name,
            file_mode=0o600,
            create_dir=create_path,
            dir_mode=0o700,
            write_existing=write_existing,
        )
        flags = os.O_CREAT | os.O_WRONLY | (os.O_TRUNC if write_existing else os.O_EXCL)
        try:
            timing_fd = os.open(path + ".timing", flags, 0o600)
        except OSError:
            os.close(data_fd)
            raise
        return cls(data_fd, timing_fd, path)

    def write(self, data: bytes) -> None:
        """Record host output (flushed with the next frame or when the buffer is full)."""
        self._buffer += data
        if len(self._buffer) >= self.BUFFER:
            self.flush()

    def flush(self) -> None:
        """Write buffered output with its timing line."""
        if not self._buffer:
            return
        now = time.monotonic()
        elapsed = min(int((now - self._last) * 1000), self.MAX_DELAY_MS)
        self._last = now
        os.write(self._timing, f"{elapsed / 1000:.6f} {len(self._buffer)}\n".encode())
        os.write(self._data, bytes(self._buffer))
        self._buffer.clear()

    def close(self) -> None:
        """Flush, write the footer and close both files."""
        try:
            self.flush()
            os.write(self._data, self.FOOTER)
        finally:
            os.close(self._data)
            os.close(self._timing)
