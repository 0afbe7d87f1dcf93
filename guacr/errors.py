"""Error hierarchy: every guacr error carries the Guacamole status it ends with.

The server turns any escaping `GuacrError` into `error,<message>,<status>` for the
affected users, so handlers raise these instead of inventing their own replies.
"""

from __future__ import annotations

from guacr.protocol.status import Status


class GuacrError(Exception):
    """Base class: a failure with a Guacamole status and a client-visible message."""

    status: Status = Status.SERVER_ERROR

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class ProtocolError(GuacrError):
    """The peer broke the Guacamole wire format or the handshake rules."""

    status = Status.CLIENT_BAD_REQUEST


class InstructionTooLong(ProtocolError):
    """An element, instruction or element count exceeded guacd's parser limits."""

    status = Status.CLIENT_OVERRUN


class ClientTimeout(GuacrError):
    """The client said nothing for too long."""

    status = Status.CLIENT_TIMEOUT


class UpstreamError(GuacrError):
    """The remote desktop/terminal server failed after connecting."""

    status = Status.UPSTREAM_ERROR


class UpstreamNotFound(GuacrError):
    """The remote server could not be reached at all (refused, DNS, unreachable)."""

    status = Status.UPSTREAM_NOT_FOUND


class UpstreamTimeout(GuacrError):
    """The remote server did not answer in time."""

    status = Status.UPSTREAM_TIMEOUT


class Unauthorized(GuacrError):
    """The remote server rejected the credentials."""

    status = Status.CLIENT_UNAUTHORIZED


_BY_STATUS: dict[Status, type[GuacrError]] = {
    cls.status: cls
    for cls in (
        ProtocolError,
        ClientTimeout,
        UpstreamError,
        UpstreamNotFound,
        UpstreamTimeout,
        Unauthorized,
    )
}


def error_from_status(status: Status | int, message: str) -> GuacrError:
    """Build the most specific error class for a status received from elsewhere."""
    st = Status(status)
    return _BY_STATUS.get(st, GuacrError)(message, st)
