"""Typed builders for every instruction the server sends to clients.

Each returns wire bytes. The argument order follows the Guacamole protocol reference
(guacd 1.6.1). Hot builders (``sync``, ``mouse``, ``copy``, ``rect``, ``cfill``,
``img``, ``blob``) are written out as single f-strings: see benchmarks/bench_codec.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator

from guacr.protocol.instruction import _SMALL_INTS, encode
from guacr.protocol.status import Status

_g = _SMALL_INTS.get

# Composite modes (Porter/Duff) used by copy/cfill/img: guacd's guac_composite_mode.
MODE_ROUT = 0x2
MODE_ATOP = 0x6
MODE_XOR = 0xA
MODE_ROVER = 0xB
MODE_OVER = 0xE
MODE_PLUS = 0xF
MODE_RIN = 0x1
MODE_IN = 0x4
MODE_OUT = 0x8
MODE_RATOP = 0x9
MODE_SRC = 0xC

# Largest raw chunk per blob, as guacd uses (8064 base64 characters).
BLOB_CHUNK = 6048


def _n(value: int) -> str:
    s = str(value)
    return f"{len(s)}.{s}"


def _s(value: str) -> str:
    return f"{len(value)}.{value}"


def _i(value: int) -> str:
    return _g(value) or _n(value)


def sync(timestamp: int, frames: int = 0) -> bytes:
    """End of frame; the client echoes ``sync,<timestamp>``."""
    return f"4.sync,{_g(timestamp) or _n(timestamp)},{_g(frames) or _n(frames)};".encode()


def mouse(x: int, y: int, mask: int, timestamp: int) -> bytes:
    """Another user's pointer position (and recordings)."""
    return (
        f"5.mouse,{_g(x) or _n(x)},{_g(y) or _n(y)},{_g(mask) or _n(mask)},"
        f"{_g(timestamp) or _n(timestamp)};"
    ).encode()


def key(keysym: int, pressed: bool, timestamp: int) -> bytes:
    """A key event (recordings only)."""
    return f"3.key,{_i(keysym)},{'1.1' if pressed else '1.0'},{_i(timestamp)};".encode()


def copy(
    src: int, sx: int, sy: int, w: int, h: int, mode: int, dst: int, dx: int, dy: int
) -> bytes:
    """Copy a rectangle between layers (scrolling, moves, glyph reuse)."""
    return (
        f"4.copy,{_i(src)},{_i(sx)},{_i(sy)},{_i(w)},{_i(h)},{_i(mode)},"
        f"{_i(dst)},{_i(dx)},{_i(dy)};"
    ).encode()


def transfer(
    src: int, sx: int, sy: int, w: int, h: int, function: int, dst: int, dx: int, dy: int
) -> bytes:
    """Raster-operation transfer between layers."""
    return encode("transfer", src, sx, sy, w, h, function, dst, dx, dy)


def rect(layer: int, x: int, y: int, w: int, h: int) -> bytes:
    """Set a rectangular path on ``layer`` (followed by cfill)."""
    return f"4.rect,{_i(layer)},{_i(x)},{_i(y)},{_i(w)},{_i(h)};".encode()


def cfill(mode: int, layer: int, r: int, g: int, b: int, a: int = 255) -> bytes:
    """Fill the current path with a colour."""
    return f"5.cfill,{_i(mode)},{_i(layer)},{_i(r)},{_i(g)},{_i(b)},{_i(a)};".encode()


def fill_rect(
    layer: int, x: int, y: int, w: int, h: int, rgb: tuple[int, int, int], mode: int = MODE_OVER
) -> bytes:
    """``rect`` + ``cfill`` in one buffer: a solid rectangle."""
    return rect(layer, x, y, w, h) + cfill(mode, layer, rgb[0], rgb[1], rgb[2], 255)


def img(stream: int, mode: int, layer: int, mimetype: str, x: int, y: int) -> bytes:
    """Start an image stream that will be drawn at (x, y) on ``layer``."""
    return (
        f"3.img,{_i(stream)},{_i(mode)},{_i(layer)},{len(mimetype)}.{mimetype},{_i(x)},{_i(y)};"
    ).encode()


def blob(stream: int, data: bytes) -> bytes:
    """One chunk of stream data (base64); callers keep chunks <= BLOB_CHUNK bytes."""
    b64 = base64.b64encode(data)
    return b"4.blob," + _i(stream).encode() + b"," + str(len(b64)).encode() + b"." + b64 + b";"


def blobs(stream: int, data: bytes) -> Iterator[bytes]:
    """Split ``data`` into guacd-sized blobs."""
    for i in range(0, len(data), BLOB_CHUNK):
        yield blob(stream, data[i : i + BLOB_CHUNK])


def end(stream: int) -> bytes:
    """End a stream."""
    return f"3.end,{_i(stream)};".encode()


def image(stream: int, mode: int, layer: int, mimetype: str, x: int, y: int, data: bytes) -> bytes:
    """A whole image: ``img`` + blobs + ``end`` in one buffer."""
    return img(stream, mode, layer, mimetype, x, y) + b"".join(blobs(stream, data)) + end(stream)


def size(layer: int, width: int, height: int) -> bytes:
    """Resize a layer (layer 0 is the display)."""
    return f"4.size,{_i(layer)},{_i(width)},{_i(height)};".encode()


def move(layer: int, parent: int, x: int, y: int, z: int) -> bytes:
    """Move a layer within its parent."""
    return encode("move", layer, parent, x, y, z)


def shade(layer: int, alpha: int) -> bytes:
    """Set a layer's opacity."""
    return encode("shade", layer, alpha)


def dispose(layer: int) -> bytes:
    """Free a layer or buffer on the client."""
    return encode("dispose", layer)


def set_parameter(layer: int, name: str, value: str) -> bytes:
    """The ``set`` instruction (layer parameters such as ``multi-touch``)."""
    return encode("set", layer, name, value)


def cursor(hx: int, hy: int, src: int, sx: int, sy: int, w: int, h: int) -> bytes:
    """Set the mouse pointer from a rectangle of ``src``."""
    return encode("cursor", hx, hy, src, sx, sy, w, h)


def nop() -> bytes:
    """Keep-alive."""
    return b"3.nop;"


def error(message: str, status: Status | int) -> bytes:
    """Fatal error for the user; normally followed by ``disconnect``."""
    return encode("error", message, int(status))


def disconnect() -> bytes:
    """The connection is over."""
    return b"10.disconnect;"


def args(version: str, names: Iterable[str]) -> bytes:
    """Handshake: the protocol version followed by the parameter names."""
    return encode("args", version, *names)


def ready(connection_id: str) -> bytes:
    """Handshake complete: the connection id (``$uuid``)."""
    return encode("ready", connection_id)


def required(*names: str) -> bytes:
    """Ask the owner for parameter values (protocol 1.3.0+)."""
    return encode("required", *names)


def argv(stream: int, mimetype: str, name: str) -> bytes:
    """Open a stream carrying a parameter's value."""
    return encode("argv", stream, mimetype, name)


def msg(code: int, *params: str) -> bytes:
    """Notify the owner (1 = user joined, 2 = user left; protocol 1.5.0+)."""
    return encode("msg", code, *params)


def ack(stream: int, message: str, status: Status | int) -> bytes:
    """Acknowledge (or refuse) an inbound stream's data."""
    return encode("ack", stream, message, int(status))


def clipboard(stream: int, mimetype: str) -> bytes:
    """Open an outbound clipboard stream."""
    return encode("clipboard", stream, mimetype)


def file(stream: int, mimetype: str, filename: str) -> bytes:
    """Open an outbound file (download) stream."""
    return encode("file", stream, mimetype, filename)


def pipe(stream: int, mimetype: str, name: str) -> bytes:
    """Open an outbound named pipe stream."""
    return encode("pipe", stream, mimetype, name)


def audio(stream: int, mimetype: str) -> bytes:
    """Open an outbound audio stream."""
    return encode("audio", stream, mimetype)


def filesystem(obj: int, name: str) -> bytes:
    """Expose a filesystem object (SFTP, RDP drive)."""
    return encode("filesystem", obj, name)


def body(obj: int, stream: int, mimetype: str, name: str) -> bytes:
    """Answer a ``get`` with a stream."""
    return encode("body", obj, stream, mimetype, name)


def undefine(obj: int) -> bytes:
    """Withdraw a filesystem object."""
    return encode("undefine", obj)


def name(title: str) -> bytes:
    """Window or terminal title."""
    return encode("name", title)
