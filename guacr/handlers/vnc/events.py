"""Events produced by the sans-I/O RFB client, and its exception types.

Events are small frozen dataclasses so the handler can ``match`` on them. Pixel payloads
are numpy arrays shaped ``(h, w, 3)`` (uint8 RGB); they may be non-contiguous views
(e.g. a BGRX buffer read backwards), so consumers should copy them into their own
framebuffer rather than keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc.pixels import PixelFormat

RGBArray = npt.NDArray[np.uint8]


# --- errors -------------------------------------------------------------------------------


class RFBError(Exception):
    """Base class for everything the RFB core raises."""


class RFBProtocolError(RFBError):
    """The server sent bytes that do not follow RFB (or an encoding we asked for)."""


class RFBSecurityError(RFBError):
    """No security type in common, or the server refused the connection with a reason."""


class RFBTLSError(RFBError):
    """The VeNCrypt TLS layer failed (handshake or record error)."""


class RFBStateError(RFBError):
    """A local API call that is not allowed in the current state (e.g. input before init)."""


class RFBConnectionClosed(RFBError):
    """The server closed the stream before the handshake finished."""


# --- events -------------------------------------------------------------------------------


class Event:
    """Base class of all RFB client events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AuthRequired(Event):
    """Credentials are needed; call ``provide_credentials``. ``kinds`` ⊆ {username, password}."""

    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthFailed(Event):
    """The server rejected the credentials; the connection is finished."""

    reason: str


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """ServerInit received; the session is usable and client messages may be queued."""

    width: int
    height: int
    name: str
    pixel_format: PixelFormat
    server_pixel_format: PixelFormat
    security_type: int
    version: tuple[int, int]


@dataclass(frozen=True, slots=True)
class FramebufferUpdateStart(Event):
    """A FramebufferUpdate began. ``rect_count`` is 65535 when the server uses LastRect."""

    rect_count: int


@dataclass(frozen=True, slots=True)
class FramebufferUpdateEnd(Event):
    """All rectangles of the update were delivered: a good frame boundary."""


@dataclass(frozen=True, slots=True, eq=False)
class RectDecoded(Event):
    """Decoded pixels for a rectangle, ``pixels`` shaped ``(height, width, 3)`` RGB."""

    x: int
    y: int
    width: int
    height: int
    pixels: RGBArray
    encoding: int


@dataclass(frozen=True, slots=True)
class SolidRect(Event):
    """A rectangle of one colour (Tight fill, RRE background...): maps to rect + cfill."""

    x: int
    y: int
    width: int
    height: int
    rgb: tuple[int, int, int]
    encoding: int


@dataclass(frozen=True, slots=True)
class JpegRect(Event):
    """A Tight JPEG sub-rectangle, left undecoded so it can be relayed as ``image/jpeg``."""

    x: int
    y: int
    width: int
    height: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CopyRect(Event):
    """Copy ``width``x``height`` from (src_x, src_y) to (x, y) within the framebuffer."""

    x: int
    y: int
    width: int
    height: int
    src_x: int
    src_y: int


@dataclass(frozen=True, slots=True)
class Screen:
    """One screen of an ExtendedDesktopSize layout."""

    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int


@dataclass(frozen=True, slots=True)
class DesktopResized(Event):
    """The framebuffer size changed (DesktopSize / ExtendedDesktopSize).

    ``reason``: 0 server, 1 this client, 2 another client. ``status`` != 0 means a resize
    this client asked for was refused; width/height then repeat the current size.
    """

    width: int
    height: int
    reason: int = 0
    status: int = 0
    screens: tuple[Screen, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class DesktopNameChanged(Event):
    """The desktop name changed (DesktopName pseudo-encoding)."""

    name: str


@dataclass(frozen=True, slots=True)
class CursorShape(Event):
    """A new pointer image: ``rgba`` is width*height*4 bytes, straight (not premultiplied)."""

    hotspot_x: int
    hotspot_y: int
    width: int
    height: int
    rgba: bytes


@dataclass(frozen=True, slots=True)
class Bell(Event):
    """The server rang the bell."""


@dataclass(frozen=True, slots=True)
class ServerCutText(Event):
    """Server clipboard text; ``extended`` when it came as UTF-8 ExtendedClipboard."""

    text: str
    extended: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class ColourMapEntries(Event):
    """SetColourMapEntries: ``colours`` is (n, 3) uint8 RGB for indices first..first+n-1."""

    first: int
    colours: RGBArray
