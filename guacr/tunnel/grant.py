"""What a verified token allows, and the guacd handshake a worker runs from it.

A browser never speaks the guacd handshake over the tunnel: guacamole-common-js sends
nothing until the server's first ``""`` instruction. The handshake values come from
the token and the query string instead, and the worker feeds
:meth:`Grant.client_instructions` into the same :class:`~guacr.protocol.Handshake`
a 4822 client goes through, so both doors share every check and default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from guacr.errors import GuacrError
from guacr.protocol.parser import Instruction
from guacr.protocol.status import Status
from guacr.protocol.version import ProtocolVersion

QueryValue = str | list[str]
Query = dict[str, QueryValue]
"""A parsed query string: a key given once maps to its string, a repeated key to a list
(what Node's ``querystring`` gives guacamole-lite)."""

MAX_QUERY_LENGTH = 16384


class TokenRefused(GuacrError):
    """The token is missing, unreadable, tampered with, expired or already used.

    ``message`` goes to the client; ``reason`` only to the log, and never contains the
    token itself.
    """

    status = Status.CLIENT_UNAUTHORIZED

    def __init__(self, reason: str) -> None:
        super().__init__("Token validation failed")
        self.reason = reason


def parse_query(raw: str) -> Query:
    """Parse a query string the way guacamole-lite's ``Url.parse(url, true)`` does.

    Blank values are kept, ``+`` is a space, a repeated key becomes a list.
    ``?undefined`` (what guacamole-common-js sends when ``connect()`` gets no data) is
    just a key without a value.
    """
    out: Query = {}
    for key, value in parse_qsl(raw[:MAX_QUERY_LENGTH], keep_blank_values=True):
        old = out.get(key)
        if old is None:
            out[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            out[key] = [old, value]
    return out


def first(query: Mapping[str, object], *keys: str) -> str | None:
    """The first value of the first key present (a repeated key gives its first)."""
    for key in keys:
        value = query.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return str(value)
    return None


def every(query: Mapping[str, object], *keys: str) -> list[str] | None:
    """All values of the first key present, or None when none is."""
    for key in keys:
        value = query.get(key)
        if value is None:
            continue
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return None


@dataclass(frozen=True)
class Grant:
    """A verified request: which connection to open or join, with what values."""

    selector: str
    """Protocol name, or ``$<id>`` of the connection to join."""
    values: Mapping[str, str]
    """Connect-argument values by name; an argument not listed is sent as ``""``."""
    version: ProtocolVersion
    """The version the worker answers ``args`` with."""
    width: str = "1024"
    height: str = "768"
    dpi: str = "96"
    audio: Sequence[str] = ()
    video: Sequence[str] = ()
    image: Sequence[str] = ("image/png", "image/jpeg")
    timezone: Sequence[str] = ()
    name: str = ""
    kind: str = "guacr"
    """``guacamole-lite`` or ``guacr``: which token it came from (for logs)."""
    connection: str = ""
    """The ``$id`` a new connection must get (a guacr token's ``c``); '' lets the
    worker pick one."""

    def to_wire(self) -> dict[str, object]:
        """A JSON-safe form, for handing the grant to a worker with its socket."""
        return {
            "selector": self.selector,
            "values": dict(self.values),
            "version": int(self.version),
            "width": self.width,
            "height": self.height,
            "dpi": self.dpi,
            "audio": list(self.audio),
            "video": list(self.video),
            "image": list(self.image),
            "timezone": list(self.timezone),
            "name": self.name,
            "kind": self.kind,
            "connection": self.connection,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Grant:
        """Rebuild a grant from :meth:`to_wire` (raises ValueError/TypeError/KeyError)."""

        def strs(key: str) -> tuple[str, ...]:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError(key)
            return tuple(value)

        values = data["values"]
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise TypeError("values")
        return cls(
            selector=str(data["selector"]),
            values=values,
            version=ProtocolVersion(int(data["version"])),
            width=str(data["width"]),
            height=str(data["height"]),
            dpi=str(data["dpi"]),
            audio=strs("audio"),
            video=strs("video"),
            image=strs("image"),
            timezone=strs("timezone"),
            name=str(data["name"]),
            kind=str(data["kind"]),
            connection=str(data.get("connection") or ""),
        )

    @property
    def is_join(self) -> bool:
        """True when the grant joins a running connection."""
        return self.selector.startswith("$")

    def client_instructions(self, arg_names: Sequence[str]) -> list[Instruction]:
        """What a client would send after ``args``: size, audio, video, image,
        timezone (1.1.0 and later, as guacamole-lite and guacamole-client send it),
        name (only when set) and ``connect``."""
        out: list[Instruction] = [
            ("size", self.width, self.height, self.dpi),
            ("audio", *self.audio),
            ("video", *self.video),
            ("image", *self.image),
        ]
        if self.version >= ProtocolVersion.V1_1_0:
            out.append(("timezone", *self.timezone))
        if self.name:
            out.append(("name", self.name))
        out.append(("connect", self.version.wire, *(self.values.get(n, "") for n in arg_names)))
        return out
