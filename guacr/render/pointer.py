"""Pointer position broadcast, as guacd's ``guac_common_cursor``.

When one user moves the mouse, every *other* user is sent ``mouse`` so its client can
draw where the pointer is; the user who moved it already knows. This goes to users
only, never to the recording: the core reports each user's input to the recording
once (and not at all with ``recording-exclude-mouse``), so writing the broadcast there
too would record every event twice.

A user joining later is told the last position with the rest of the display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guacr.protocol import builders as b

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User


class PointerBroadcast:
    """The shared pointer of one connection's display."""

    __slots__ = ("conn", "mask", "moved", "timestamp", "user", "x", "y")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.x = self.y = self.mask = 0
        self.timestamp = 0
        self.user: User | None = None  # who moved it last
        self.moved = False

    def update(self, user: User, x: int, y: int, mask: int) -> None:
        """``user`` moved the pointer: tell the other users."""
        self.x, self.y, self.mask, self.user, self.moved = x, y, mask, user, True
        self.timestamp = ts = self.conn.timestamp()
        users = self.conn.users
        if len(users) < 2:
            return
        data = b.mouse(x, y, mask, ts)
        for other in users:
            if other is not user:
                other.send(data)

    def state(self) -> bytes:
        """The last position for a joining user (nothing before the first move)."""
        if not self.moved:
            return b""
        return b.mouse(self.x, self.y, self.mask, self.timestamp)
