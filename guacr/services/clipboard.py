"""The clipboard service, as guacd's ``guac_common_clipboard``: one per connection.

* Its size limit is ``clipboard-buffer-size`` clamped to 256 KiB .. 50 MiB (the
  owner's value); longer contents are cut, as guacd does.
* Copy (remote side -> users): the new contents go to every user as a ``clipboard``
  stream, unless the connection's ``disable-copy`` is set (guacd reads it from the
  owner's parameters).
* Paste (user -> remote side): decided per user, from that user's own
  ``disable-paste``, as guacd installs its clipboard handler per user. The core
  refuses such a user's ``clipboard`` stream outright (``Handler.accepts_clipboard``);
  :meth:`Clipboard.receive` checks again so no handler can get it wrong.
* A user joining later is sent the current contents.

Streams are user-level and sent to users only (not to the recording: the core records
inbound clipboard streams when ``recording-include-clipboard`` asks for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from guacr.protocol import builders as b

if TYPE_CHECKING:
    from guacr.contract.params import Params
    from guacr.contract.peers import Connection, User

CLIPBOARD_MIN: Final = 262144
CLIPBOARD_MAX: Final = 52428800
CLIPBOARD_BLOB: Final = 4096  # guacd's clipboard block size


def clipboard_limit(params: Params) -> int:
    """``clipboard-buffer-size`` clamped as guacd does (256 KiB .. 50 MiB)."""
    return min(CLIPBOARD_MAX, max(CLIPBOARD_MIN, params.get_int("clipboard-buffer-size", 0)))


def paste_allowed(user: User) -> bool:
    """Whether ``user`` may send its clipboard to the remote side (its ``disable-paste``)."""
    return not user.params.get_bool("disable-paste")


def clipboard_stream(user: User, mimetype: str, data: bytes) -> bytes:
    """The instructions carrying ``data`` as one clipboard stream to ``user``."""
    stream = user.alloc_stream()
    try:
        parts = [b.clipboard(stream, mimetype)]
        parts += [
            b.blob(stream, data[i : i + CLIPBOARD_BLOB])
            for i in range(0, len(data), CLIPBOARD_BLOB)
        ]
        parts.append(b.end(stream))
        return b"".join(parts)
    finally:
        user.free_stream(stream)


class Clipboard:
    """One connection's clipboard contents and policy."""

    def __init__(self, conn: Connection, limit: int = CLIPBOARD_MIN, disable_copy: bool = False):
        self.conn = conn
        self.limit = limit
        self.disable_copy = disable_copy
        self.data = b""
        self.mimetype = "text/plain"
        self.known = False  # anything was set yet (an empty clipboard is news too)

    @classmethod
    def from_params(cls, conn: Connection, params: Params) -> Clipboard:
        """The clipboard the (owner's) parameters describe."""
        return cls(conn, clipboard_limit(params), params.get_bool("disable-copy"))

    def copy(self, data: bytes, mimetype: str = "text/plain") -> bool:
        """The remote side's clipboard changed: store it and send it to every user.

        Returns False (and stores nothing) under ``disable-copy``.
        """
        if self.disable_copy:
            return False
        self._store(data, mimetype)
        for user in list(self.conn.users):
            self.send(user)
        return True

    def receive(self, user: User, mimetype: str, data: bytes) -> bytes | None:
        """A user's clipboard arrived: the (cut) contents for the remote side, or None
        when that user may not paste or it is not text."""
        if not paste_allowed(user) or not mimetype.startswith("text/"):
            return None
        self._store(data, mimetype)
        return self.data

    def send(self, user: User) -> None:
        """Send the current contents to one user (a joiner)."""
        if self.known:
            user.send(clipboard_stream(user, self.mimetype, self.data))

    def _store(self, data: bytes, mimetype: str) -> None:
        self.data = data[: self.limit]
        self.mimetype = mimetype
        self.known = True
