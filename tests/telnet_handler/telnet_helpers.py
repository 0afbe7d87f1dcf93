"""Shared bits of the Telnet handler tests (the conftest and the test modules use them)."""

from __future__ import annotations

from servers import TelnetServer

HANDLERS = "telnet=guacr.handlers.telnet.handler:TelnetHandler"


def telnet_values(telnetd: TelnetServer, **extra: str) -> dict[str, str]:
    """Parameters for the test telnetd: automatic login with guacd's default regexes."""
    values = {
        "hostname": telnetd.host,
        "port": str(telnetd.port),
        "username": telnetd.username,
        "password": telnetd.password,
    }
    values.update(extra)
    return values
