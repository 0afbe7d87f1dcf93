"""What the control service needs from the listener: its registry and its workers.

:class:`ControlBackend` is the seam between the gRPC servicer and the daemon. The
listener implements it over its session registry and the request/response control
channel to its workers; the unit tests implement it in memory. Nothing in here knows
about gRPC or protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from guacr.control.events import EventBus
from guacr.control.model import (
    CreatedSession,
    InstanceInfo,
    SessionInfo,
    SharedSession,
)


class ControlBackend(Protocol):
    """The registry plus the ability to ask workers."""

    events: EventBus

    async def list_sessions(self) -> Sequence[SessionInfo]:
        """Every live session (the servicer filters, sorts and pages)."""
        ...

    async def get_session(self, session_id: str) -> SessionInfo | None:
        """One live session, as fresh as the worker can tell; None if unknown."""
        ...

    async def terminate(self, session_id: str, reason: str, status: int) -> int | None:
        """End a session: its users get ``error reason status`` + ``disconnect``.

        Returns how many users were told, or None if no such session is live.
        """
        ...

    async def create_session(
        self, protocol: str, parameters: Mapping[str, str], ttl: float
    ) -> CreatedSession:
        """Mint a one-time token that opens a new session on the WebSocket door.

        Raises :class:`guacr.control.model.ControlError` (unknown protocol, draining,
        no WebSocket door, ...).
        """
        ...

    async def share_session(self, session_id: str, read_only: bool, ttl: float) -> SharedSession:
        """Mint a token that joins a live session; ControlError if unknown."""
        ...

    async def set_draining(self, draining: bool) -> None:
        """Enter or leave drain mode (and remember it across listener restarts)."""
        ...

    def instance(self) -> InstanceInfo:
        """Drain state and counts, now."""
        ...
