"""What handlers, the display engine, the terminal front end and the shared services
may use of a connection and of a user.

These are structural types (``typing.Protocol``): the core's concrete classes in
``guacr.server`` satisfy them without inheriting, and mypy checks that wherever the
core hands itself to a handler. Code below ``guacr.server`` is typed against these
only, so the core can change how users and connections are built (processes,
transports, sans-I/O sessions) without touching a handler, and a test can drive a
handler with a small fake.

Keep them small and stable: every member here is a promise to every handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from guacr.contract.params import Params
from guacr.errors import GuacrError
from guacr.protocol.handshake import ClientInfo
from guacr.protocol.status import Status

Log = logging.LoggerAdapter[logging.Logger]


class IndexAllocator(Protocol):
    """Hands out integer indices (layers, buffers, objects) and takes them back."""

    def alloc(self) -> int:
        """A free index; raises OverflowError when none is left."""
        ...

    def free(self, value: int) -> None:
        """Give ``value`` back."""
        ...


class User(Protocol):
    """One client attached to a connection (its owner or a joiner)."""

    @property
    def id(self) -> str:
        """``@<uuid>``, as guacd names users."""
        ...

    @property
    def owner(self) -> bool:
        """True for the user whose handshake created the connection."""
        ...

    @property
    def read_only(self) -> bool:
        """Its ``read-only`` parameter: the core passes none of its input on."""
        ...

    @property
    def info(self) -> ClientInfo:
        """What the client declared in its handshake (size, DPI, mimetypes, version)."""
        ...

    @property
    def params(self) -> Params:
        """This user's own ``connect`` values (guacd decides some things per user,
        e.g. ``disable-paste``)."""
        ...

    @property
    def peer(self) -> str:
        """The client's address, ``host:port`` (``[v6]:port``) when its socket is at hand,
        else the host the listener saw; ``""`` when unknown. For logs and audits."""
        ...

    @property
    def closed(self) -> bool:
        """True once the user left; sending to it does nothing then."""
        ...

    @property
    def congested(self) -> bool:
        """True while its socket buffer is over the high-water mark."""
        ...

    @property
    def objects(self) -> IndexAllocator:
        """Its ``filesystem`` object indices."""
        ...

    def send(self, data: bytes) -> None:
        """Write wire bytes to this user only."""
        ...

    def ack(self, stream: int, message: str, status: Status | int) -> None:
        """Answer one of its inbound streams."""
        ...

    def alloc_stream(self) -> int:
        """A user-level outbound stream index."""
        ...

    def free_stream(self, index: int) -> None:
        """Release an outbound stream index."""
        ...

    def expect_ack(self, stream: int) -> asyncio.Future[tuple[str, int]]:
        """A future resolved with (message, status) by the client's next ``ack``."""
        ...


class Connection(Protocol):
    """One remote connection and the users sharing it."""

    @property
    def id(self) -> str:
        """``$<uuid>``: what joiners select."""
        ...

    @property
    def log(self) -> Log:
        """The connection's logger (never give it secrets)."""
        ...

    @property
    def users(self) -> Sequence[User]:
        """Users attached now, the owner first while it stays."""
        ...

    @property
    def owner(self) -> User | None:
        """The owner, also after it left (check ``owner in users``)."""
        ...

    @property
    def closed(self) -> bool:
        """True once the connection ended."""
        ...

    @property
    def lag(self) -> int:
        """Processing lag in ms, the worst of all users."""
        ...

    @property
    def congested(self) -> bool:
        """True while any user's socket is congested: hold frames back."""
        ...

    @property
    def layers(self) -> IndexAllocator:
        """Visible layer indices (positive)."""
        ...

    @property
    def buffers(self) -> IndexAllocator:
        """Off-screen buffer indices (negative)."""
        ...

    def broadcast(self, data: bytes) -> None:
        """Send wire bytes to every user and to the recording."""
        ...

    def send_to_owner(self, data: bytes) -> None:
        """Send to the owner only, while it is attached."""
        ...

    def timestamp(self) -> int:
        """The current protocol timestamp (ms)."""
        ...

    def end_frame(self, frames: int = 0, extra: bytes = b"") -> None:
        """Broadcast ``extra`` then ``sync``."""
        ...

    def alloc_stream(self) -> int:
        """A connection-level outbound stream index (broadcast streams)."""
        ...

    def free_stream(self, index: int) -> None:
        """Release a connection-level stream index."""
        ...

    def end(self, error: GuacrError | None = None) -> None:
        """End the connection for every user (with ``error`` if given)."""
        ...
