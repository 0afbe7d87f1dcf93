"""Client-to-server RFB message encoders and the ExtendedClipboard wire format.

Pure functions returning bytes; the client object decides when they may be sent.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from guacr.handlers.vnc.constants import ClientMsg
from guacr.handlers.vnc.events import RFBProtocolError, Screen
from guacr.handlers.vnc.pixels import PixelFormat

# ExtendedClipboard flags (high byte: action, low 16 bits: formats).
CLIP_TEXT = 1 << 0
CLIP_CAPS = 1 << 24
CLIP_REQUEST = 1 << 25
CLIP_PEEK = 1 << 26
CLIP_NOTIFY = 1 << 27
CLIP_PROVIDE = 1 << 28
CLIP_ACTION_MASK = 0xFF000000


def set_pixel_format(pf: PixelFormat) -> bytes:
    return struct.pack(">B3x", ClientMsg.SET_PIXEL_FORMAT) + pf.pack()


def set_encodings(encodings: Sequence[int]) -> bytes:
    return struct.pack(
        f">BxH{len(encodings)}i", ClientMsg.SET_ENCODINGS, len(encodings), *encodings
    )


def framebuffer_update_request(incremental: bool, x: int, y: int, w: int, h: int) -> bytes:
    return struct.pack(
        ">BBHHHH", ClientMsg.FRAMEBUFFER_UPDATE_REQUEST, int(incremental), x, y, w, h
    )


def key_event(keysym: int, down: bool) -> bytes:
    return struct.pack(">BBxxI", ClientMsg.KEY_EVENT, int(down), keysym & 0xFFFFFFFF)


def pointer_event(x: int, y: int, mask: int) -> bytes:
    return struct.pack(">BBHH", ClientMsg.POINTER_EVENT, mask & 0xFF, x, y)


def client_cut_text(data: bytes) -> bytes:
    return struct.pack(">B3xI", ClientMsg.CLIENT_CUT_TEXT, len(data)) + data


def set_desktop_size(width: int, height: int, screens: Sequence[Screen]) -> bytes:
    head = struct.pack(">BxHHBx", ClientMsg.SET_DESKTOP_SIZE, width, height, len(screens))
    body = b"".join(
        struct.pack(">IHHHHI", s.id, s.x, s.y, s.width, s.height, s.flags) for s in screens
    )
    return head + body


# --- ExtendedClipboard ------------------------------------------------------------------


def _extended(payload: bytes) -> bytes:
    """ClientCutText carrying an extended clipboard payload: the length is negated."""
    return struct.pack(">B3xi", ClientMsg.CLIENT_CUT_TEXT, -len(payload)) + payload


def clipboard_caps(max_text: int) -> bytes:
    flags = CLIP_CAPS | CLIP_TEXT | CLIP_REQUEST | CLIP_PEEK | CLIP_NOTIFY | CLIP_PROVIDE
    return _extended(struct.pack(">II", flags, max_text))


def clipboard_notify(has_text: bool) -> bytes:
    return _extended(struct.pack(">I", CLIP_NOTIFY | (CLIP_TEXT if has_text else 0)))


def clipboard_request() -> bytes:
    return _extended(struct.pack(">I", CLIP_REQUEST | CLIP_TEXT))


def clipboard_provide(text: str) -> bytes:
    """Text as NUL-terminated UTF-8 with CRLF line ends, zlib-compressed after the flags."""
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\0"
    # A sync-flushed (unterminated) stream, as TigerVNC writes it: libvncserver 0.9.14
    # drops the client when the zlib stream ends inside its 4-byte length read.
    deflater = zlib.compressobj()
    body = deflater.compress(struct.pack(">I", len(data)) + data)
    body += deflater.flush(zlib.Z_SYNC_FLUSH)
    return _extended(struct.pack(">I", CLIP_PROVIDE | CLIP_TEXT) + body)


@dataclass(frozen=True, slots=True)
class ClipboardMessage:
    """A parsed server ExtendedClipboard message."""

    action: int
    formats: int
    sizes: tuple[int, ...] = ()
    text: str | None = None
    flags: int = 0


def parse_extended_clipboard(payload: bytes, max_text: int) -> ClipboardMessage:
    if len(payload) < 4:
        raise RFBProtocolError("extended clipboard message too short")
    flags = struct.unpack_from(">I", payload)[0]
    action = flags & CLIP_ACTION_MASK
    formats = flags & 0xFFFF
    if action & CLIP_CAPS:
        count = bin(formats).count("1")
        if len(payload) < 4 + 4 * count:
            raise RFBProtocolError("extended clipboard caps truncated")
        sizes = struct.unpack_from(f">{count}I", payload, 4)
        return ClipboardMessage(CLIP_CAPS, formats, tuple(sizes), flags=flags)
    if action == CLIP_PROVIDE:
        return ClipboardMessage(
            action, formats, text=_provided_text(payload[4:], formats, max_text)
        )
    if action in (CLIP_REQUEST, CLIP_PEEK, CLIP_NOTIFY):
        return ClipboardMessage(action, formats)
    raise RFBProtocolError(f"invalid extended clipboard action {action:#x}")


def _provided_text(compressed: bytes, formats: int, max_text: int) -> str | None:
    """The text format of a Provide message (the first format present), or None."""
    if not formats & CLIP_TEXT:
        return None
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(compressed, 4)
        if len(head) < 4:
            raise RFBProtocolError("extended clipboard provide truncated")
        length = struct.unpack(">I", head)[0]
        if length > max_text:
            return None
        data = inflater.decompress(inflater.unconsumed_tail, length)
    except zlib.error as exc:
        raise RFBProtocolError(f"extended clipboard: corrupt zlib data ({exc})") from exc
    if len(data) < length:
        raise RFBProtocolError("extended clipboard provide truncated")
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    return text.replace("\r\n", "\n")
