"""The query audit: one JSON line per statement, written off the event loop.

With ``audit-path`` (a directory; ``create-audit-path`` creates it, mode 0750) every
statement a console runs is appended to ``<audit-path>/audit.jsonl``. Lines go through
one writer thread per process, so a slow disk never stalls a worker's event loop; the
file is opened ``O_APPEND`` and each line is one ``write``, so connections sharing the
file never interleave. A writer that falls far behind drops lines (and says so in the
log) rather than growing without bound. Records never contain the password: the
handler fills them from the connection's identity, not its parameters.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

log = logging.getLogger(__name__)

FILE_NAME: Final = "audit.jsonl"
STATEMENT_LIMIT: Final = 4096  # characters of statement text kept per record
MAX_PENDING: Final = 10000  # lines queued for the writer before new ones are dropped

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid = 0


def _writer() -> ThreadPoolExecutor:
    """The process's writer thread (created after any fork, in the process that writes)."""
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(1, thread_name_prefix="guacr-audit")
            _executor_pid = os.getpid()
        return _executor


def timestamp() -> str:
    """UTC time in ISO 8601 with milliseconds."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Appends records to one audit file; ``write`` never blocks."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self._pending = 0
        self._dropped = 0
        self._closed = False

    @classmethod
    def open(cls, directory: str, create: bool = False) -> AuditLog:
        """Open ``directory/audit.jsonl`` for appending (OSError when impossible)."""
        if create:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        path = os.path.join(directory, FILE_NAME)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return cls(fd, path)

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record as a JSON line."""
        if self._closed:
            return
        statement = record.get("statement")
        if isinstance(statement, str) and len(statement) > STATEMENT_LIMIT:
            record["statement"] = statement[:STATEMENT_LIMIT]
            record["statement_truncated"] = True
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        if self._pending >= MAX_PENDING:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("Audit writer is behind; dropping records for %s", self.path)
            return
        self._pending += 1
        _writer().submit(self._write, line)

    def _write(self, line: bytes) -> None:
        try:
            os.write(self.fd, line)
        except OSError as exc:
            log.error("Audit record could not be written to %s: %s", self.path, exc)
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Close the file once queued lines are written (also off the loop)."""
        if self._closed:
            return
        self._closed = True
        _writer().submit(os.close, self.fd)

    def flush(self, timeout: float = 5.0) -> None:
        """Block until queued lines are written (tests and benchmarks only)."""
        done = threading.Event()
        _writer().submit(done.set)
        done.wait(timeout)
