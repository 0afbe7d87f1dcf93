"""Logging in guacd's format: ``guacr[<pid>]: <LEVEL>:\\t<message>`` on stderr.

guacd's levels are trace, debug, info, warning and error; ``trace`` is added below
DEBUG. Messages are cut at 2048 bytes like guacd's. ``log_format = json`` writes one
JSON object per line instead (for log collectors), and ``syslog_address`` (a socket
path such as ``/dev/log``, or ``host:port`` over UDP) sends every line to syslog as
well, as guacd logs to syslog. Never pass secrets to a logger: ``Params.loggable()``
masks them.
"""

from __future__ import annotations

import logging

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


def set_role(role: str) -> None:
    """Name this process (main, listener, worker-N) in JSON log lines."""
    from guacr.control import logs

    logs.set_role(role)


def setup(
    level: str = "info", fmt: str = "guacd", syslog_address: str = "", warn: bool = False
) -> None:
    """Configure the root logger for a guacr process (guacr.control.logs does the work:
    formats, syslog, the missing-socket warning when ``warn``)."""
    from guacr.control import logs

    logs.configure(LEVELS.get(level, logging.INFO), fmt, syslog_address, warn=warn)
    root = logging.getLogger()
    # Library chatter (asyncssh logs every channel open at INFO) stays quiet unless debugging.
    logging.getLogger("asyncssh").setLevel(max(root.level, logging.WARNING))


def get(name: str) -> logging.Logger:
    """A module logger under the ``guacr`` namespace."""
    return logging.getLogger(name)
