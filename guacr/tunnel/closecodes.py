"""Guacamole status -> WebSocket close code, as guacamole-client maps them.

guacamole-client's ``GuacamoleStatus`` pairs every status with a fixed close code and
sends the decimal status as the close reason; guacamole-common-js reads the reason
first (``parseInt``) and only falls back to the code when the reason is empty. So the
reason carries the exact status and the code is what generic WebSocket tooling sees.
"""

from __future__ import annotations

from guacr.protocol.status import Status

NORMAL = 1000
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
NO_STATUS = 1005
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011

_CLOSE_CODES: dict[Status, int] = {
    Status.SUCCESS: NORMAL,
    Status.UNSUPPORTED: INTERNAL_ERROR,
    Status.SERVER_ERROR: INTERNAL_ERROR,
    Status.SERVER_BUSY: POLICY_VIOLATION,
    Status.UPSTREAM_TIMEOUT: INTERNAL_ERROR,
    Status.UPSTREAM_ERROR: INTERNAL_ERROR,
    Status.RESOURCE_NOT_FOUND: PROTOCOL_ERROR,
    Status.RESOURCE_CONFLICT: POLICY_VIOLATION,
    Status.RESOURCE_CLOSED: PROTOCOL_ERROR,
    Status.UPSTREAM_NOT_FOUND: INTERNAL_ERROR,
    Status.UPSTREAM_UNAVAILABLE: INTERNAL_ERROR,
    Status.SESSION_CONFLICT: POLICY_VIOLATION,
    Status.SESSION_TIMEOUT: PROTOCOL_ERROR,
    Status.SESSION_CLOSED: PROTOCOL_ERROR,
    Status.CLIENT_BAD_REQUEST: PROTOCOL_ERROR,
    Status.CLIENT_UNAUTHORIZED: POLICY_VIOLATION,
    Status.CLIENT_FORBIDDEN: POLICY_VIOLATION,
    Status.CLIENT_TIMEOUT: PROTOCOL_ERROR,
    Status.CLIENT_OVERRUN: MESSAGE_TOO_BIG,
    Status.CLIENT_BAD_TYPE: UNSUPPORTED_DATA,
    Status.CLIENT_TOO_MANY: POLICY_VIOLATION,
}


def close_code(status: Status) -> int:
    """The WebSocket close code guacamole-client uses for ``status``."""
    return _CLOSE_CODES[status]


def close_reason(status: Status) -> str:
    """The close reason guacamole-client sends: the status in decimal."""
    return str(int(status))
