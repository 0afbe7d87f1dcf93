"""Session recordings (``recording-*`` parameters), in guacd's ``.guac`` format.

The file is the server-to-client instruction stream itself (what ``guacenc`` renders)
plus, when asked, user input as ``key``/``mouse``/``touch`` instructions carrying a
timestamp, and inbound clipboard streams. Input is reported once, by the core as it
dispatches each user's instruction (never by handlers: a broadcast of the pointer to
other users is not input). No header. As guacd: mode 0640, an exclusive ``fcntl``
lock while in progress, ``.1`` .. ``.255`` suffixes instead of overwriting, and the
directory created with mode 0750 on request.

Writes are buffered and reach the disk in 64 KiB blocks (and at the end), so the
event loop does one small system call per block rather than per instruction.
"""

from __future__ import annotations

import logging
import os

from guacr.contract.clock import monotonic_ms
from guacr.contract.params import Params
from guacr.files import open_unique
from guacr.protocol import builders as b
from guacr.protocol.instruction import encode

log = logging.getLogger("guacr.recording")

FLUSH_AT = 65536


class Recording:
    """One connection's recording file."""

    def __init__(self, fd: int, path: str, params: Params) -> None:
        self.fd = fd
        self.path = path
        self.include_output = not params.get_bool("recording-exclude-output")
        self.include_mouse = not params.get_bool("recording-exclude-mouse")
        self.include_touch = not params.get_bool("recording-exclude-touch")
        self.include_keys = params.get_bool("recording-include-keys")
        self.include_clipboard = params.get_bool("recording-include-clipboard")
        self._buffer = bytearray()
        self._stream = 0

    @classmethod
    def from_params(cls, params: Params) -> Recording | None:
        """Open the recording the parameters ask for; None when they ask for none."""
        directory = params.get("recording-path")
        if not directory:
            return None
        try:
            fd, path = open_unique(
                directory,
                params.get("recording-name") or "recording",
                file_mode=0o640,
                create_dir=params.get_bool("create-recording-path"),
                dir_mode=0o750,
                write_existing=params.get_bool("recording-write-existing"),
                lock=True,
            )
        except OSError as exc:
            log.error("Unable to create recording in %s: %s", directory, exc)
            return None
        log.info("Recording of session will be saved to %s", path)
        return cls(fd, path, params)

    def write(self, data: bytes) -> None:
        """Append raw instruction bytes."""
        if self.fd < 0:
            return
        self._buffer += data
        if len(self._buffer) >= FLUSH_AT:
            self.flush()

    def output(self, data: bytes) -> None:
        """Tee of everything broadcast to the connection's users."""
        if self.include_output:
            self.write(data)

    def key(self, keysym: int, pressed: bool) -> None:
        """A user's key event."""
        if self.include_keys:
            self.write(b.key(keysym, pressed, monotonic_ms()))

    def mouse(self, x: int, y: int, mask: int) -> None:
        """A user's pointer event."""
        if self.include_mouse:
            self.write(b.mouse(x, y, mask, monotonic_ms()))

    def touch(
        self, touch_id: int, x: int, y: int, rx: int, ry: int, angle: float, force: float
    ) -> None:
        """A user's touch event (RDP; ``recording-exclude-touch`` leaves it out)."""
        if self.include_touch:
            self.write(
                encode("touch", touch_id, x, y, rx, ry, _num(angle), _num(force), monotonic_ms())
            )

    def clipboard(self, mimetype: str, data: bytes) -> None:
        """A clipboard stream received from a user."""
        if self.include_clipboard:
            self._stream += 1
            index = -self._stream  # negative: never clashes with the stream's own indices
            self.write(b.clipboard(index, mimetype) + b"".join(b.blobs(index, data)) + b.end(index))

    def flush(self) -> None:
        """Write the buffer to disk."""
        if self.fd < 0 or not self._buffer:
            return
        try:
            os.write(self.fd, self._buffer)
        except OSError as exc:
            log.error("Writing recording %s failed: %s; recording stopped", self.path, exc)
            self.close()
        self._buffer.clear()

    def close(self) -> None:
        """Flush, release the lock and close the file."""
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            if self._buffer:
                os.write(fd, self._buffer)
        except OSError as exc:
            log.error("Writing recording %s failed: %s", self.path, exc)
        finally:
            self._buffer.clear()
            os.close(fd)


def _num(value: float) -> str:
    """A real number as guacd writes it (no trailing ``.0`` for whole values)."""
    return f"{value:g}"
