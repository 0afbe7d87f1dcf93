"""What the terminal-based handlers (SSH, Telnet, ...) share: users and input go to
their ``TerminalSession``, and a ``STDIN`` pipe types into the remote side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from guacr.contract.handler import Handler, StreamSink
from guacr.frontend.session import StdinPipe, TerminalSession

if TYPE_CHECKING:
    from guacr.contract.peers import User


class TerminalHandler(Handler):
    """A handler drawing through ``self.session``; subclasses set it and send bytes
    to the remote side with ``_write``."""

    session: TerminalSession

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def user_joined(self, user: User) -> None:
        self.session.user_joined(user)

    def user_left(self, user: User) -> None:
        self.session.user_left(user)

    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        self.session.key(user, keysym, pressed)

    def on_mouse(self, user: User, x: int, y: int, mask: int) -> None:
        self.session.mouse(user, x, y, mask)

    def on_size(self, user: User, width: int, height: int) -> None:
        self.session.resize(user, width, height)

    def on_clipboard(self, user: User, mimetype: str, data: bytes) -> None:
        self.session.set_clipboard(user, mimetype, data)

    def on_argv(self, user: User, name: str, value: str) -> None:
        self.session.argv(user, name, value)

    def on_pipe(self, user: User, stream: int, mimetype: str, name: str) -> StreamSink | None:
        if name == "STDIN":
            return StdinPipe(self._write, user, stream)
        return None
