"""Guacamole status codes, exactly as guacd 1.6.1 defines them.

They travel in `error` and `ack` instructions; clients map them to messages, so the
numeric values must match guacd's bit for bit.
"""

from enum import IntEnum


class Status(IntEnum):
    """All 21 Guacamole protocol status codes."""

    SUCCESS = 0x0000
    UNSUPPORTED = 0x0100
    SERVER_ERROR = 0x0200
    SERVER_BUSY = 0x0201
    UPSTREAM_TIMEOUT = 0x0202
    UPSTREAM_ERROR = 0x0203
    RESOURCE_NOT_FOUND = 0x0204
    RESOURCE_CONFLICT = 0x0205
    RESOURCE_CLOSED = 0x0206
    UPSTREAM_NOT_FOUND = 0x0207
    UPSTREAM_UNAVAILABLE = 0x0208
    SESSION_CONFLICT = 0x0209
    SESSION_TIMEOUT = 0x020A
    SESSION_CLOSED = 0x020B
    CLIENT_BAD_REQUEST = 0x0300
    CLIENT_UNAUTHORIZED = 0x0301
    CLIENT_FORBIDDEN = 0x0303
    CLIENT_TIMEOUT = 0x0308
    CLIENT_OVERRUN = 0x030D
    CLIENT_BAD_TYPE = 0x030F
    CLIENT_TOO_MANY = 0x031D
