"""Protocol handler registry.

Handlers are found by protocol name. Built-in handlers are listed here as import
strings and loaded lazily; third parties add theirs with an entry point in the
``guacr.handlers`` group (``name = "package.module:HandlerClass"``), which also lets
them replace a built-in.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guacr.contract.handler import Handler

BUILTIN: dict[str, str] = {
    "ssh": "guacr.handlers.ssh:SSHHandler",
    "vnc": "guacr.handlers.vnc.handler:VNCHandler",
    "telnet": "guacr.handlers.telnet.handler:TelnetHandler",
    "rdp": "guacr.handlers.rdp.handler:RDPHandler",
    "mysql": "guacr.handlers.database.handler:MySQLHandler",
    "mariadb": "guacr.handlers.database.handler:MySQLHandler",
    "postgresql": "guacr.handlers.database.handler:PostgreSQLHandler",
    "postgres": "guacr.handlers.database.handler:PostgreSQLHandler",
}

_extra: dict[str, str] = {}
_loaded: dict[str, type[Handler]] = {}


def register(name: str, target: str) -> None:
    """Register a handler import string at run time (tests, embedding)."""
    _extra[name] = target
    _loaded.pop(name, None)


def available() -> dict[str, str]:
    """Protocol name -> import string, entry points winning over built-ins."""
    found = dict(BUILTIN)
    for ep in entry_points(group="guacr.handlers"):
        found[ep.name] = ep.value
    found.update(_extra)
    return found


def load(name: str) -> type[Handler] | None:
    """Import and return the handler class for ``name``, or None if unknown."""
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    target = available().get(name)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    loaded: type[Handler] = getattr(importlib.import_module(module_name), attr)
    _loaded[name] = loaded
    return loaded
