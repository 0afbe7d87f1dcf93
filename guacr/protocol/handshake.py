"""Sans-I/O handshake, as guacd 1.6.1 runs it.

The listener reads ``select`` with :func:`parse_select`. After the server has sent
``args``, :class:`Handshake` takes the client's instructions one at a time until
``connect`` completes it. Unknown opcodes are ignored, repeated ones overwrite earlier
ones (the last ``size`` wins), exactly like guacd.

Where guacd misbehaves, this raises a :class:`ProtocolError` with a clear message so
the server can send ``error`` and close: a wrong ``connect`` value count (guacd hangs
silently) and a handshake without ``image`` (guacd's connection process crashes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from guacr.errors import ProtocolError
from guacr.protocol.parser import Instruction
from guacr.protocol.status import Status
from guacr.protocol.version import ProtocolVersion

MAX_PROTOCOL_NAME = 256
DEFAULT_DPI = 96


def parse_select(ins: Instruction) -> str:
    """Validate the first instruction and return its target.

    The target is a protocol name, or ``$<id>`` to join a running connection.
    """
    if ins[0] != "select":
        raise ProtocolError(f'Expected "select" but received "{ins[0][:32]}"')
    if len(ins) != 2:
        raise ProtocolError('Bad number of arguments to "select" (expected 1)')
    target = ins[1]
    if not target:
        raise ProtocolError('Empty protocol name in "select"')
    if len(target) > MAX_PROTOCOL_NAME:
        raise ProtocolError("Protocol name is too long", Status.CLIENT_OVERRUN)
    return target


@dataclass
class ClientInfo:
    """Everything a user declared during the handshake."""

    version: ProtocolVersion = ProtocolVersion.UNKNOWN
    width: int = 0
    height: int = 0
    dpi: int = DEFAULT_DPI
    audio: list[str] = field(default_factory=list)
    video: list[str] = field(default_factory=list)
    image: list[str] = field(default_factory=list)
    timezone: str | None = None
    name: str = ""
    values: dict[str, str] = field(default_factory=dict)

    @property
    def supports_webp(self) -> bool:
        """The client offered ``image/webp``."""
        return "image/webp" in self.image

    @property
    def supports_jpeg(self) -> bool:
        """The client offered ``image/jpeg`` (every browser client does)."""
        return "image/jpeg" in self.image


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f'Invalid {what} value "{text[:32]}"') from None


class Handshake:
    """Collects ``size``/``audio``/``video``/``image``/``timezone``/``name`` until ``connect``."""

    def __init__(self, arg_names: Sequence[str]) -> None:
        self.arg_names = tuple(arg_names)
        self.info = ClientInfo()
        self._image_seen = False
        self.done = False

    def receive(self, ins: Instruction) -> bool:
        """Apply one instruction; returns True once ``connect`` completed the handshake."""
        if self.done:
            raise ProtocolError("Handshake already complete")
        opcode = ins[0]
        handler = self._HANDLERS.get(opcode)
        if handler is None:
            return False  # guacd logs "Handler not found" at DEBUG and carries on
        return handler(self, ins[1:])

    def _size(self, args: tuple[str, ...]) -> bool:
        if len(args) < 2:
            raise ProtocolError('"size" needs at least width and height')
        self.info.width = _int(args[0], "width")
        self.info.height = _int(args[1], "height")
        if len(args) > 2:
            self.info.dpi = _int(args[2], "dpi") or DEFAULT_DPI
        return False

    def _audio(self, args: tuple[str, ...]) -> bool:
        self.info.audio = list(args)
        return False

    def _video(self, args: tuple[str, ...]) -> bool:
        self.info.video = list(args)
        return False

    def _image(self, args: tuple[str, ...]) -> bool:
        self.info.image = list(args)
        self._image_seen = True
        return False

    def _timezone(self, args: tuple[str, ...]) -> bool:
        self.info.timezone = args[0] if args and args[0] else None
        return False

    def _name(self, args: tuple[str, ...]) -> bool:
        self.info.name = args[0] if args else ""
        return False

    def _connect(self, args: tuple[str, ...]) -> bool:
        if not args:
            raise ProtocolError('"connect" carries no protocol version')
        values = args[1:]
        if len(values) != len(self.arg_names):
            raise ProtocolError(
                "Client did not return the expected number of arguments "
                f"(expected {len(self.arg_names)}, received {len(values)})"
            )
        if not self._image_seen:
            raise ProtocolError(
                'Handshake is missing the "image" instruction (supported image types)'
            )
        self.info.version = ProtocolVersion.parse(args[0])
        self.info.values = dict(zip(self.arg_names, values, strict=True))
        self.done = True
        return True

    _HANDLERS = {
        "size": _size,
        "audio": _audio,
        "video": _video,
        "image": _image,
        "timezone": _timezone,
        "name": _name,
        "connect": _connect,
    }
