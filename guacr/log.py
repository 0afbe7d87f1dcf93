"""Logging in guacd's format: ``guacr[<pid>]: <LEVEL>:\\t<message>`` on stderr.

guacd's levels are trace, debug, info, warning and error; ``trace`` is added below
DEBUG. Messages are cut at 2048 bytes like guacd's. ``log_format = json`` writes one
JSON object per line instead (for log collectors), and ``syslog_address`` (a socket
path such as ``/dev/log``, or ``host:port`` over UDP) sends every line to syslog as
well, as guacd logs to syslog. Never pass secrets to a logger: ``Params.loggable()``
masks them.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

MAX_MESSAGE = 2048


def _message(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + formatter.formatException(record.exc_info)
    return message[:MAX_MESSAGE]


class _GuacdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"guacr[{os.getpid()}]: {record.levelname}:\t" + _message(record, self)


class _JsonFormatter(logging.Formatter):
    """One object per line: time (UTC, ISO 8601), level, pid, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return json.dumps(
            {
                "time": f"{stamp}.{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "pid": os.getpid(),
                "logger": record.name,
                "message": _message(record, self),
            },
            ensure_ascii=False,
        )


class _SyslogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"guacr[{os.getpid()}]: " + _message(record, self)


def syslog_handler(address: str) -> logging.Handler:
    """A handler for ``address``: a socket path, or ``host:port`` (UDP)."""
    target: str | tuple[str, int]
    if address.startswith("/"):
        target = address
    else:
        host, _, port = address.rpartition(":")
        target = (host or "localhost", int(port or 514))
    handler = logging.handlers.SysLogHandler(
        target, facility=logging.handlers.SysLogHandler.LOG_DAEMON
    )
    handler.setFormatter(_SyslogFormatter())
    return handler


def setup(level: str = "info", fmt: str = "guacd", syslog_address: str = "") -> None:
    """Configure the root logger for a guacr process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _GuacdFormatter())
    handlers: list[logging.Handler] = [handler]
    if syslog_address:
        try:
            handlers.append(syslog_handler(syslog_address))
        except (OSError, ValueError) as exc:
            print(f"guacr: syslog_address {syslog_address!r} unusable: {exc}", file=sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(LEVELS.get(level, logging.INFO))
    # Library chatter (asyncssh logs every channel open at INFO) stays quiet unless debugging.
    logging.getLogger("asyncssh").setLevel(max(root.level, logging.WARNING))


def get(name: str) -> logging.Logger:
    """A module logger under the ``guacr`` namespace."""
    return logging.getLogger(name)
