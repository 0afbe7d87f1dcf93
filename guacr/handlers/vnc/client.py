"""Sans-I/O RFB (VNC) client: bytes in, events out, bytes to send.

Usage, in any thread but one at a time::

    client = RFBClient(password="secret")
    events = client.receive_data(sock_bytes)    # parse what arrived
    sock.send(client.data_to_send())            # replies, handshake, input

After ``Connected`` the caller queues SetEncodings and FramebufferUpdateRequests and
reacts to ``FramebufferUpdateEnd``. Decoding happens inside ``receive_data``, which can
be CPU-heavy, so an asyncio caller should run it in a worker thread.
"""

from __future__ import annotations

import logging
import ssl
import struct
from collections.abc import Callable, Sequence

import numpy as np

from guacr.handlers.vnc import messages as msg
from guacr.handlers.vnc.constants import Encoding, SecurityType
from guacr.handlers.vnc.decoders import (
    DecoderState,
    decode_raw,
    decode_rre,
    decode_zlib,
)
from guacr.handlers.vnc.events import (
    Bell,
    ColourMapEntries,
    Connected,
    CopyRect,
    CursorShape,
    DesktopNameChanged,
    DesktopResized,
    Event,
    FramebufferUpdateEnd,
    FramebufferUpdateStart,
    RFBConnectionClosed,
    RFBError,
    RFBProtocolError,
    RFBStateError,
    Screen,
    ServerCutText,
)
from guacr.handlers.vnc.handshake import Handshake
from guacr.handlers.vnc.hextile import decode_hextile
from guacr.handlers.vnc.pixels import PixelConverter, PixelFormat
from guacr.handlers.vnc.security import TLSLayer, make_tls_context
from guacr.handlers.vnc.stream import Reader, Request, StartTLS, WaitCredentials, read_string
from guacr.handlers.vnc.tight import decode_tight
from guacr.handlers.vnc.zrle import decode_zrle

log = logging.getLogger(__name__)

_RECT = struct.Struct(">HHHHi")
_SCREEN = struct.Struct(">IHHHHI")
_DECODERS = {
    Encoding.RAW: decode_raw,
    Encoding.RRE: decode_rre,
    Encoding.HEXTILE: decode_hextile,
    Encoding.ZLIB: decode_zlib,
    Encoding.TIGHT: decode_tight,
    Encoding.ZRLE: decode_zrle,
}
MAX_CURSOR = 512
# Larger framebuffers are refused (guacd's display stops at 8192; leave room above).
MAX_DIMENSION = 16384
# Cut text beyond this is a protocol error; beyond max_clipboard it is truncated.
MAX_CUT_TEXT = 64 << 20
MAX_LEGACY_CUT_TEXT = (1 << 20) - 1
_COMPACT_AT = 1 << 16
_BIG_READ = 1 << 12
# What guacd asks for by default: 32 bpp, depth 24, little-endian BGRX.
DEFAULT_PIXEL_FORMAT = PixelFormat()


class RFBClient:
    """One RFB connection's protocol state. Not thread-safe; never blocks."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        shared: bool = True,
        pixel_format: PixelFormat | None = DEFAULT_PIXEL_FORMAT,
        swap_red_blue: bool = False,
        security_types: Sequence[int] | None = None,
        clipboard_encoding: str = "latin-1",
        max_clipboard: int = 256 * 1024,
        tls_context: Callable[[bool], ssl.SSLContext] = make_tls_context,
    ) -> None:
        """``pixel_format`` None keeps the server's format; ``security_types`` limits the
        security types / VeNCrypt sub-types we accept (default: all we implement)."""
        if pixel_format is not None:
            pixel_format.validate()
        self._username = username
        self._password = password
        self._requested_pf = pixel_format
        self._swap = swap_red_blue
        self._clip_encoding = clipboard_encoding
        self._max_clipboard = max_clipboard
        self._tls_context = tls_context
        self._in = bytearray()
        self._pos = 0
        self._out = bytearray()
        self._events: list[Event] = []
        self._tls: TLSLayer | None = None
        self._eof = False
        self._credentials_updated = False
        self._connected = False
        self._closed = False
        self._handshake = Handshake(
            self._send,
            self._events.append,
            lambda: (self._username, self._password),
            shared=shared,
            security_types=security_types,
        )
        self.width = 0
        self.height = 0
        self.name = ""
        self.pixel_format: PixelFormat | None = None
        self.screens: tuple[Screen, ...] = ()
        self.supports_set_desktop_size = False
        self._decoders: DecoderState | None = None
        self._server_clip_flags = 0
        self._server_clip_text_size = 0
        self._local_clipboard: str | None = None
        self._gen: Reader[None] | None = self._main()
        self._request: Request = next(self._gen)
        self._error: BaseException | None = None

    # --- state ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True between ``Connected`` and the end of the stream."""
        return self._connected and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def extended_clipboard(self) -> bool:
        """The server announced ExtendedClipboard (UTF-8 cut text)."""
        return bool(self._server_clip_flags)

    @property
    def tls_cipher(self) -> str | None:
        return self._tls.cipher[0] if self._tls is not None and self._tls.cipher else None

    # --- I/O -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the server (b"" for end of stream); returns the new events."""
        if self._error is not None:
            raise RFBStateError("client already failed") from self._error
        if not data:
            self._eof = True
        if self._tls is not None:
            try:
                self._in += self._tls.receive_wire(data)
            except RFBError as exc:
                self._fail(exc)
                raise
            self._out += self._tls.wire_data()
            if self._tls.closed:
                self._eof = True
        else:
            self._in += data
        self._pump()
        if self._eof and not self._closed:
            self._closed = True
            if not self._connected and self._gen is not None:
                raise RFBConnectionClosed("server closed the connection during the handshake")
        return self.events()

    def events(self) -> list[Event]:
        """Drain queued events (including those of a call that later raised)."""
        events = self._events[:]
        self._events.clear()
        return events

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def provide_credentials(
        self, username: str | None = None, password: str | None = None
    ) -> list[Event]:
        """Answer ``AuthRequired``; resumes the handshake with any buffered bytes."""
        if username is not None:
            self._username = username
        if password is not None:
            self._password = password
        self._credentials_updated = True
        if isinstance(self._request, WaitCredentials):
            self._pump()
        return self.events()

    def _send(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls.write(data)
            self._out += self._tls.wire_data()
        else:
            self._out += data

    def _pump(self) -> None:
        """Run the parser as far as buffered bytes allow."""
        buf = self._in
        gen = self._gen
        try:
            while gen is not None:
                req = self._request
                if type(req) is int:
                    end = self._pos + req
                    if end > len(buf):
                        break
                    if req > _BIG_READ:
                        with memoryview(buf) as view:  # one copy instead of two
                            data = view[self._pos : end].tobytes()
                    else:
                        data = bytes(buf[self._pos : end])
                    self._pos = end
                    self._request = gen.send(data)
                elif isinstance(req, WaitCredentials):
                    if not self._credentials_updated:
                        break
                    self._credentials_updated = False
                    self._request = gen.send(b"")
                elif isinstance(req, StartTLS):
                    self._start_tls(req)
                    self._request = gen.send(b"")
                else:  # pragma: no cover - exhaustive
                    raise AssertionError(req)
        except StopIteration:
            self._gen = None
            self._closed = True
        except RFBError as exc:
            self._fail(exc)
            raise
        except (IndexError, ValueError, KeyError, struct.error) as exc:
            error = RFBProtocolError(f"malformed server data: {exc}")
            self._fail(error)
            raise error from exc
        finally:
            if self._pos >= len(buf):
                buf.clear()
                self._pos = 0
            elif self._pos > _COMPACT_AT:
                del buf[: self._pos]
                self._pos = 0

    def _fail(self, exc: BaseException) -> None:
        self._gen = None
        self._closed = True
        self._error = exc

    def _start_tls(self, req: StartTLS) -> None:
        pending = bytes(self._in[self._pos :])
        self._in.clear()
        self._pos = 0
        self._tls = TLSLayer(self._tls_context(req.anonymous))
        self._in += self._tls.receive_wire(pending)
        self._out += self._tls.wire_data()

    # --- server messages -----------------------------------------------------------------

    def _main(self) -> Reader[None]:
        init = yield from self._handshake.run()
        if init is None:
            return
        self._check_size(init.width, init.height)
        self.width, self.height, self.name = init.width, init.height, init.name
        pf = self._requested_pf
        if pf is not None:
            self._send(msg.set_pixel_format(pf))
        else:
            pf = init.pixel_format
            try:
                pf.validate()
            except ValueError as exc:
                raise RFBProtocolError(f"server pixel format unusable: {exc}") from exc
        self.pixel_format = pf
        self._decoders = DecoderState(PixelConverter(pf, self._swap))
        log.debug("RFB %d.%d connected, security type %d", *init.version, init.security_type)
        self._connected = True
        self._events.append(
            Connected(
                init.width,
                init.height,
                init.name,
                pf,
                init.pixel_format,
                init.security_type,
                init.version,
            )
        )
        while True:
            kind = (yield 1)[0]
            if kind == 0:
                yield from self._read_update()
            elif kind == 1:
                yield from self._read_colour_map()
            elif kind == 2:
                self._events.append(Bell())
            elif kind == 3:
                yield from self._read_cut_text()
            else:
                raise RFBProtocolError(f"unknown server message type {kind}")

    def _read_update(self) -> Reader[None]:
        head = yield 3
        remaining = struct.unpack_from(">H", head, 1)[0]
        emit = self._events.append
        emit(FramebufferUpdateStart(remaining))
        dec = self._decoders
        assert dec is not None
        while remaining:
            remaining -= 1
            x, y, w, h, enc = _RECT.unpack((yield 12))
            decoder = _DECODERS.get(enc)
            if decoder is not None:
                self._check_bounds(x, y, w, h)
                event = yield from decoder(dec, x, y, w, h)
                if event is not None:
                    emit(event)
            elif enc == Encoding.COPYRECT:
                sx, sy = struct.unpack((">HH"), (yield 4))
                self._check_bounds(x, y, w, h)
                self._check_bounds(sx, sy, w, h)
                emit(CopyRect(x, y, w, h, sx, sy))
            elif enc == Encoding.LAST_RECT:
                break
            elif enc == Encoding.CURSOR:
                yield from self._read_cursor(x, y, w, h)
            elif enc == Encoding.DESKTOP_SIZE:
                self._check_size(w, h)
                self.width, self.height = w, h
                emit(DesktopResized(w, h))
            elif enc == Encoding.EXTENDED_DESKTOP_SIZE:
                yield from self._read_extended_desktop_size(x, y, w, h)
            elif enc == Encoding.DESKTOP_NAME:
                raw = yield from read_string(1 << 16, "desktop name")
                self.name = raw.decode("utf-8", "replace")
                emit(DesktopNameChanged(self.name))
            else:
                raise RFBProtocolError(f"rectangle with unsupported encoding {enc}")
        emit(FramebufferUpdateEnd())

    @staticmethod
    def _check_size(w: int, h: int) -> None:
        if w > MAX_DIMENSION or h > MAX_DIMENSION:
            raise RFBProtocolError(f"framebuffer {w}x{h} exceeds {MAX_DIMENSION} pixels")

    def _check_bounds(self, x: int, y: int, w: int, h: int) -> None:
        if x + w > self.width or y + h > self.height:
            raise RFBProtocolError(
                f"rectangle {w}x{h}+{x}+{y} outside framebuffer {self.width}x{self.height}"
            )

    def _read_cursor(self, x: int, y: int, w: int, h: int) -> Reader[None]:
        if w > MAX_CURSOR or h > MAX_CURSOR:
            raise RFBProtocolError(f"cursor of {w}x{h} is too large")
        assert self._decoders is not None
        conv = self._decoders.converter
        size = w * h * conv.bpp
        row = (w + 7) // 8
        data = (yield size + row * h) if w and h else b""
        if not (w and h):
            self._events.append(CursorShape(x, y, 0, 0, b""))
            return
        rgb = conv.to_rgb(np.frombuffer(data, np.uint8, size).reshape(h, w, conv.bpp))
        bits = np.frombuffer(data, np.uint8, row * h, size).reshape(h, row)
        alpha = np.unpackbits(bits, axis=1)[:, :w] * np.uint8(255)
        rgba = np.dstack((rgb, alpha)).tobytes()
        self._events.append(CursorShape(x, y, w, h, rgba))

    def _read_extended_desktop_size(self, reason: int, status: int, w: int, h: int) -> Reader[None]:
        count = (yield 4)[0]
        raw = (yield count * 16) if count else b""
        screens = tuple(Screen(*_SCREEN.unpack_from(raw, i * 16)) for i in range(count))
        self.supports_set_desktop_size = True
        if reason != 1 or status == 0:
            self._check_size(w, h)
            self.width, self.height, self.screens = w, h, screens
        self._events.append(DesktopResized(self.width, self.height, reason, status, screens))

    def _read_colour_map(self) -> Reader[None]:
        _, first, count = struct.unpack(">BHH", (yield 5))
        data = (yield count * 6) if count else b""
        rgb16 = np.frombuffer(data, ">u2").reshape(count, 3)
        assert self._decoders is not None
        rgb8 = self._decoders.converter.set_colour_map(first, rgb16)
        self._events.append(ColourMapEntries(first, rgb8))

    def _read_cut_text(self) -> Reader[None]:
        length = struct.unpack(">3xi", (yield 7))[0]
        size = -length if length < 0 else length
        if size > MAX_CUT_TEXT:
            raise RFBProtocolError(f"cut text of {size} bytes")
        data = (yield size) if size else b""
        if length >= 0:
            text = data[: self._max_clipboard].decode(self._clip_encoding, "replace")
            self._events.append(ServerCutText(text))
            return
        message = msg.parse_extended_clipboard(data, self._max_clipboard)
        if message.action == msg.CLIP_CAPS:
            self._server_clip_flags = message.flags
            sizes = dict(zip(_bits(message.formats), message.sizes, strict=False))
            self._server_clip_text_size = sizes.get(msg.CLIP_TEXT, 0)
            self._send(msg.clipboard_caps(self._max_clipboard))
        elif message.action == msg.CLIP_NOTIFY:
            if message.formats & msg.CLIP_TEXT:
                self._send(msg.clipboard_request())
        elif message.action == msg.CLIP_REQUEST:
            if message.formats & msg.CLIP_TEXT and self._local_clipboard is not None:
                self._send(msg.clipboard_provide(self._local_clipboard))
        elif message.action == msg.CLIP_PEEK:
            self._send(msg.clipboard_notify(self._local_clipboard is not None))
        elif message.action == msg.CLIP_PROVIDE and message.text is not None:
            self._events.append(ServerCutText(message.text, extended=True))

    # --- client messages -----------------------------------------------------------------

    def _require_connected(self) -> None:
        if not self.connected:
            raise RFBStateError("RFB session is not established")

    def set_pixel_format(self, pf: PixelFormat) -> None:
        """Change the pixel format. Call only with no update request outstanding: rects
        already in flight would otherwise be read with the new format."""
        self._require_connected()
        pf.validate()
        self._send(msg.set_pixel_format(pf))
        self.pixel_format = pf
        assert self._decoders is not None
        self._decoders.set_converter(PixelConverter(pf, self._swap))

    def set_encodings(self, encodings: Sequence[int]) -> None:
        self._require_connected()
        self._send(msg.set_encodings(encodings))

    def framebuffer_update_request(
        self,
        incremental: bool = True,
        x: int = 0,
        y: int = 0,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        """Request an update; the whole screen by default."""
        self._require_connected()
        w = self.width - x if width is None else width
        h = self.height - y if height is None else height
        self._send(msg.framebuffer_update_request(incremental, x, y, w, h))

    def key_event(self, keysym: int, down: bool) -> None:
        self._require_connected()
        self._send(msg.key_event(keysym, down))

    def pointer_event(self, x: int, y: int, mask: int) -> None:
        self._require_connected()
        x = min(max(x, 0), max(self.width - 1, 0))
        y = min(max(y, 0), max(self.height - 1, 0))
        self._send(msg.pointer_event(x, y, mask))

    def client_cut_text(self, text: str) -> None:
        """Set the server clipboard.

        Classic ClientCutText in ``clipboard_encoding`` (Latin-1 by default) always goes
        out; when the server announced ExtendedClipboard the UTF-8 text follows as well.
        Both, because libvncserver-based servers (x11vnc 0.9.16) advertise the extension
        yet ignore UTF-8 text unless built with a hook x11vnc lacks, while TigerVNC keeps
        the later UTF-8 copy. Classic text is capped at 1 MiB, where libvncserver would
        drop the connection.
        """
        self._require_connected()
        legacy = text.encode(self._clip_encoding, "replace")[:MAX_LEGACY_CUT_TEXT]
        self._send(msg.client_cut_text(legacy))
        flags = self._server_clip_flags
        if not flags:
            return
        self._local_clipboard = text
        size = len(text.encode()) + text.count("\n") + 1
        if flags & msg.CLIP_PROVIDE and size <= self._server_clip_text_size:
            self._send(msg.clipboard_provide(text))
        elif flags & msg.CLIP_NOTIFY:
            self._send(msg.clipboard_notify(True))

    def set_desktop_size(self, width: int, height: int) -> bool:
        """Ask the server to resize (ExtendedDesktopSize). False if it cannot.

        The server answers with an ExtendedDesktopSize rectangle (reason 1) inside a
        FramebufferUpdate, so an update request must be outstanding to see it."""
        self._require_connected()
        if not self.supports_set_desktop_size:
            return False
        first = self.screens[0] if self.screens else Screen(0, 0, 0, width, height, 0)
        screen = Screen(first.id, 0, 0, width, height, first.flags)
        self._send(msg.set_desktop_size(width, height, [screen]))
        return True

    @property
    def security_type(self) -> int:
        """The security type (or VeNCrypt sub-type) negotiated, 0 before that."""
        return self._handshake.security_type

    @property
    def uses_tls(self) -> bool:
        return self._tls is not None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._connected else "handshake"
        return f"<RFBClient {state} {self.width}x{self.height} sec={self.security_type}>"


def _bits(formats: int) -> list[int]:
    return [1 << i for i in range(16) if formats & (1 << i)]


__all__ = ["RFBClient", "SecurityType"]
