"""Log formats (guacd's text or JSON lines) and syslog, as guacd logs.

guacd sends every message to syslog (ident with its pid, facility DAEMON) and to
stderr. guacr does the same in both formats:

* ``text``: ``guacr[<pid>]: <LEVEL>:\\t<message>`` (guacd's; ``guacd`` is accepted as
  another name for it);
* ``json``: one object per line with ``time``, ``level``, ``role`` (main, listener,
  worker-N), ``pid``, ``logger``, ``message`` and, when known, ``connection``, ``user``
  and ``protocol`` (set per task with :func:`bind`).

Syslog is a non-blocking datagram socket: a full receiver drops lines (counted) instead
of stalling an event loop. When the syslog socket is missing at start-up a warning goes
to stderr at once, before the daemon detaches, so it never runs with its logs going
nowhere; sending is retried every few seconds in case the socket appears.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

MAX_MESSAGE = 2048  # guacd truncates here
DEFAULT_SYSLOG = "/dev/log"
FACILITY_DAEMON = 3
RETRY_CONNECT = 5.0
_SEVERITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7, "TRACE": 7}

_role = "main"
connection_var: contextvars.ContextVar[str] = contextvars.ContextVar("guacr_connection", default="")
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("guacr_user", default="")
protocol_var: contextvars.ContextVar[str] = contextvars.ContextVar("guacr_protocol", default="")


def set_role(role: str) -> None:
    """Name this process in JSON logs (``main``, ``listener``, ``worker-<slot>``)."""
    global _role
    _role = role


@contextlib.contextmanager
def bind(connection: str = "", user: str = "", protocol: str = "") -> Iterator[None]:
    """Tag log records of the current task (and tasks it creates) with these ids."""
    tokens = []
    for var, value in ((connection_var, connection), (user_var, user), (protocol_var, protocol)):
        if value:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _message(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + formatter.formatException(record.exc_info)
    return message[:MAX_MESSAGE]


class TextFormatter(logging.Formatter):
    """guacd's stderr format."""

    def format(self, record: logging.LogRecord) -> str:
        return f"guacr[{os.getpid()}]: {record.levelname}:\t{_message(record, self)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        t = record.created
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
            + f".{int(t % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "role": _role,
            "pid": os.getpid(),
            "logger": record.name,
            "message": _message(record, self),
        }
        for key, var in (
            ("connection", connection_var),
            ("user", user_var),
            ("protocol", protocol_var),
        ):
            value = getattr(record, key, None) or var.get()
            if value:
                out[key] = str(value)
        return out

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), ensure_ascii=False, separators=(",", ":"))


class SyslogHandler(logging.Handler):
    """RFC 3164 lines to a local syslog socket (or ``host:port`` over UDP), never blocking."""

    def __init__(self, address: str, body: logging.Formatter) -> None:
        super().__init__()
        self.address = address
        self.body = body
        self.sock: socket.socket | None = None
        self.dropped = 0
        self._next_try = 0.0
        self.connect()

    def _target(self) -> tuple[int, str | tuple[str, int]]:
        if self.address.startswith("/"):
            return socket.AF_UNIX, self.address
        host, _, port = self.address.rpartition(":")
        return socket.AF_INET, (host.strip("[]") or "127.0.0.1", int(port or 514))

    def connect(self) -> bool:
        """Open the socket; False (and retry later) when the receiver is missing."""
        self._next_try = time.monotonic() + RETRY_CONNECT
        family, target = self._target()
        if family == socket.AF_INET and ":" in str(target[0]):
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(target)
        except OSError:
            sock.close()
            return False
        self.sock = sock
        return True

    def line(self, record: logging.LogRecord) -> bytes:
        # "<pri>guacr[pid]: message": the receiver (rsyslog, journald) adds the time.
        priority = FACILITY_DAEMON * 8 + _SEVERITY.get(record.levelname, 6)
        return f"<{priority}>guacr[{os.getpid()}]: {self.body.format(record)}".encode()

    def emit(self, record: logging.LogRecord) -> None:
        if self.sock is None and (time.monotonic() < self._next_try or not self.connect()):
            self.dropped += 1
            return
        assert self.sock is not None
        try:
            self.sock.send(self.line(record))
        except BlockingIOError:
            self.dropped += 1  # receiver full: drop rather than stall the event loop
        except OSError:
            self.dropped += 1
            self.sock.close()
            self.sock = None
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        super().close()


class _SyslogBody(logging.Formatter):
    """The part after ``guacr[pid]: ``: the message (text) or the JSON object."""

    def __init__(self, json_format: bool) -> None:
        super().__init__()
        self.json = JsonFormatter() if json_format else None

    def format(self, record: logging.LogRecord) -> str:
        if self.json is not None:
            return self.json.format(record)
        return _message(record, self)


def syslog_warning(address: str) -> str | None:
    """Why syslog at ``address`` will not receive anything now, or None."""
    if not address.startswith("/"):
        return None
    if not os.path.exists(address):
        return f"syslog socket {address} does not exist; logging to stderr only"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(address)
    except OSError as exc:
        return f"cannot log to syslog at {address} ({exc.strerror}); logging to stderr only"
    finally:
        probe.close()
    return None


def configure(
    level: int,
    log_format: str = "text",
    syslog_address: str | None = DEFAULT_SYSLOG,
    role: str | None = None,
    stream: IO[str] | None = None,
    warn: bool = True,
) -> list[logging.Handler]:
    """Install stderr (+ syslog) handlers on the root logger; returns them.

    ``syslog_address`` empty or None: no syslog. ``warn``: print the missing-socket
    warning on stderr (the main process does, before detaching; children need not).
    ``role``: see :func:`set_role` (None: unchanged).
    """
    if log_format not in ("text", "guacd", "json"):
        raise ValueError(f"unknown log_format {log_format!r} (want text or json)")
    if role is not None:
        set_role(role)
    json_format = log_format == "json"
    err = stream if stream is not None else sys.stderr
    handler: logging.Handler = logging.StreamHandler(err)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    handlers = [handler]
    if syslog_address:
        problem = syslog_warning(syslog_address)
        if problem and warn:
            print(f"guacr[{os.getpid()}]: WARNING:\t{problem}", file=err, flush=True)
        handlers.append(SyslogHandler(syslog_address, _SyslogBody(json_format)))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, SyslogHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    return handlers
