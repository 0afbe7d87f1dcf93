"""Shared bits of the Telnet handler tests (the conftest and the test modules use them)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from servers import TelnetServer
from ssh.ssh_helpers import TermClient

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


class TelnetTerm(TermClient):
    """TermClient that reads a reset after the server's close as the end of the stream.

    The daemon closes its socket right after ``disconnect``/``error``; a ``sync`` reply
    the client sent just before then makes the kernel answer with RST, which ``recv``
    reports as ECONNRESET once the instructions before it have been read.
    """

    def pump(self, timeout: float = 0.05) -> bool:
        try:
            return super().pump(timeout)
        except ConnectionResetError:
            self.eof = True
            return False

    def ended(self) -> bool:
        """The server said ``disconnect`` or closed the connection."""
        return self.eof or any(i[0] == "disconnect" for i in self.log)


# The ``connect`` fixture: ``with connect(size=..., **params) as term:``.
Connect = Callable[..., AbstractContextManager[TelnetTerm]]
