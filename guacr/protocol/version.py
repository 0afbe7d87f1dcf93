"""Guacamole protocol versions as guacd 1.6.1 negotiates them.

guacd always offers ``VERSION_1_5_0``; the client's first ``connect`` element names
the version it speaks. An empty string means 1.0.0; anything unknown ranks below all.
"""

from __future__ import annotations

from enum import IntEnum


class ProtocolVersion(IntEnum):
    """Ordered versions; features compare with ``>=``."""

    UNKNOWN = 0
    V1_0_0 = 0x010000
    V1_1_0 = 0x010100
    V1_3_0 = 0x010300
    V1_5_0 = 0x010500

    @classmethod
    def parse(cls, text: str) -> ProtocolVersion:
        """Map a ``connect`` version element to a version (never raises)."""
        if text == "":
            return cls.V1_0_0
        return _BY_NAME.get(text, cls.UNKNOWN)

    @property
    def wire(self) -> str:
        """The wire spelling, e.g. ``VERSION_1_5_0``."""
        if self is ProtocolVersion.UNKNOWN:
            return ""
        v = int(self)
        return f"VERSION_{v >> 16}_{(v >> 8) & 0xFF}_{v & 0xFF}"

    @property
    def supports_required(self) -> bool:
        """``required`` prompts need 1.3.0 or later."""
        return self >= ProtocolVersion.V1_3_0

    @property
    def supports_msg(self) -> bool:
        """``msg`` join/leave notices need 1.5.0 or later."""
        return self >= ProtocolVersion.V1_5_0


_BY_NAME = {
    "VERSION_1_0_0": ProtocolVersion.V1_0_0,
    "VERSION_1_1_0": ProtocolVersion.V1_1_0,
    "VERSION_1_3_0": ProtocolVersion.V1_3_0,
    "VERSION_1_5_0": ProtocolVersion.V1_5_0,
}

SERVER_VERSION = ProtocolVersion.V1_5_0
