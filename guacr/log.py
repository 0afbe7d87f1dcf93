"""Logging in guacd's format: ``guacr[<pid>]: <LEVEL>:\\t<message>`` on stderr.

guacd's levels are trace, debug, info, warning and error; ``trace`` is added below
DEBUG. Messages are cut at 2048 bytes like guacd's. Never pass secrets to a logger:
``Params.loggable()`` masks them.
"""

from __future__ import annotations

import logging
import os
import sys

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


class _GuacdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        prefix = f"guacr[{os.getpid()}]: {record.levelname}:\t"
        return prefix + message[:MAX_MESSAGE]


def setup(level: str = "info") -> None:
    """Configure the root logger for a guacr process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_GuacdFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    # Library chatter (asyncssh logs every channel open at INFO) stays quiet unless debugging.
    logging.getLogger("asyncssh").setLevel(max(root.level, logging.WARNING))


def get(name: str) -> logging.Logger:
    """A module logger under the ``guacr`` namespace."""
    return logging.getLogger(name)
