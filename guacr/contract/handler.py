"""The handler contract: what a protocol plugin implements (the other half of the
contract, what a handler may use, is :mod:`guacr.contract.peers`).

A handler is one remote connection (one SSH session, one VNC desktop). The core owns
sockets, the handshake, users, stream and layer bookkeeping; a handler only turns
upstream traffic into instructions (``self.conn.broadcast`` / ``user.send``) and user
input into upstream traffic. Keep the contract small: every hook has a safe default.

Lifecycle, driven by guacr.server.connection:

1. ``cls(conn, params)`` after the owner's ``connect``; ``params`` are the owner's values.
2. ``await run()``: connect upstream and pump until the session ends. Returning ends the
   connection normally (users get ``disconnect``); raising ``GuacrError`` ends it with
   that status; cancellation means the last user left or the server is stopping.
3. ``user_joined(user)`` for the owner right after ``run`` starts and for each joiner:
   send that user the full current state (the owner usually gets nothing yet).
4. Input hooks, called only for users allowed to give input (read-only users are
   filtered by the core).
5. ``user_left(user)``; ``await close()`` once, after ``run`` ended or was cancelled.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from guacr.contract.params import Param, Params
from guacr.contract.peers import Connection, User


class StreamSink(Protocol):
    """Receives an inbound stream's data (uploads, pipes)."""

    def blob(self, data: bytes) -> None:
        """One chunk of data arrived."""

    def end(self) -> None:
        """The client closed the stream."""


class Handler:
    """Base class for protocol handlers. Subclasses set ``protocol`` and ``PARAMS``."""

    protocol: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    # Parameters the client may change live with an ``argv`` stream (acked 0; others 771).
    ARGV: ClassVar[frozenset[str]] = frozenset()
    # guacd installs the ``argv`` handler for the owner even when it is read-only in
    # VNC and RDP, so a read-only owner can still answer a ``required`` prompt.
    READ_ONLY_OWNER_ARGV: ClassVar[bool] = False
    # Largest inbound clipboard the core assembles for ``on_clipboard`` (guacd's
    # ``clipboard-buffer-size``; see guacr.services.clipboard).
    clipboard_limit: int = 262144

    def __init__(self, conn: Connection, params: Params) -> None:
        self.conn = conn
        self.params = params
        self.log = conn.log

    def accepts_argv(self, name: str) -> bool:
        """Whether a live ``argv`` update of ``name`` is allowed now (else ack 771).

        Defaults to ``ARGV``; handlers override it for names allowed only at times,
        such as VNC credentials while a ``required`` prompt is pending.
        """
        return name in self.ARGV

    def accepts_clipboard(self, user: User) -> bool:
        """Whether ``user`` may send its clipboard (else the core refuses the stream
        with guacd's "Clipboard unsupported", 256).

        As guacd, decided per user from that user's own ``disable-paste``.
        """
        return not user.params.get_bool("disable-paste")

    @classmethod
    def input_read_only(cls, params: Params, owner: bool) -> bool:
        """Whether a user with these ``connect`` values may only watch (no input).

        guacd's ``read-only``; handlers where the owner's ``read-only`` means something
        else (read-only SQL in the database consoles) override it.
        """
        return params.get_bool("read-only")

    @classmethod
    def arg_names(cls) -> list[str]:
        """Parameter names in guacd's exact order, as sent in ``args``."""
        return [p.name for p in cls.PARAMS]

    async def run(self) -> None:
        """Connect upstream and pump until the session ends."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release upstream resources; called once."""

    # Users -----------------------------------------------------------------------
    def user_joined(self, user: User) -> None:
        """Send ``user`` the current state (a joiner sees the screen at once)."""

    def user_left(self, user: User) -> None:
        """A user left; the connection goes on while any user remains."""

    # Input -----------------------------------------------------------------------
    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        """X11 keysym pressed or released."""

    def on_mouse(self, user: User, x: int, y: int, mask: int) -> None:
        """Pointer at (x, y); mask bits 1 left, 2 middle, 4 right, 8 up, 16 down."""

    def on_size(self, user: User, width: int, height: int) -> None:
        """The user's display size changed."""

    def on_touch(self, user: User, args: tuple[str, ...]) -> None:
        """Touch event (RDP only)."""

    def on_clipboard(self, user: User, mimetype: str, data: bytes) -> None:
        """A whole clipboard stream arrived (already assembled by the core)."""

    def on_argv(self, user: User, name: str, value: str) -> None:
        """A live parameter update for a name in ``ARGV``."""

    def on_file(self, user: User, stream: int, mimetype: str, filename: str) -> StreamSink | None:
        """An upload; return a sink to accept it (it sends its own ``ack``s), None refuses."""
        return None

    def on_pipe(self, user: User, stream: int, mimetype: str, name: str) -> StreamSink | None:
        """A named pipe from the client; None refuses."""
        return None

    def on_audio(self, user: User, stream: int, mimetype: str) -> StreamSink | None:
        """Inbound audio; None refuses with 256."""
        return None

    def on_get(self, user: User, obj: int, name: str) -> None:
        """Filesystem object read (answer with ``body``)."""

    def on_put(
        self, user: User, obj: int, stream: int, mimetype: str, name: str
    ) -> StreamSink | None:
        """Filesystem object write; None refuses."""
        return None
