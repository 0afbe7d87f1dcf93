"""Test helpers: a Guacamole client canvas that replays drawing instructions.

It implements what the display engine emits (``size``, ``img``/``blob``/``end``,
``copy``, ``rect``/``cfill``, ``cursor``, ``sync``, ``mouse``) the way
guacamole-common-js does: layers keep their content in the overlap when resized,
buffers (negative indices) grow to fit what is drawn, images decode with Pillow and
composite OVER (alpha blend) or SRC (replace), and a ``rect`` path is filled by the
next ``cfill`` on that layer.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image

from guacr.protocol.parser import Instruction, Parser

RGBA = npt.NDArray[np.uint8]
MODE_SRC = 0xC


@dataclass
class _Stream:
    mode: int
    layer: int
    mimetype: str
    x: int
    y: int
    data: bytearray = field(default_factory=bytearray)
    kind: str = "img"


class Canvas:
    """The state a Guacamole client would show after the instructions fed so far."""

    def __init__(self) -> None:
        self.layers: dict[int, RGBA] = {0: np.zeros((0, 0, 4), np.uint8)}
        self.streams: dict[int, _Stream] = {}
        self.paths: dict[int, list[tuple[int, int, int, int]]] = {}
        self.cursor: tuple[int, int, RGBA] | None = None  # hotspot x, y, image
        self.mouse: tuple[int, int] | None = None
        self.syncs = 0
        self.sync_timestamps: list[int] = []
        self.mimetypes: list[str] = []
        self.opcodes: list[str] = []
        self.copies: list[tuple[int, ...]] = []
        self.clipboard: list[tuple[str, bytes]] = []
        self.names: list[str] = []
        self._parser = Parser()

    # ------------------------------------------------------------------ input
    def feed_bytes(self, data: bytes) -> list[Instruction]:
        instructions = self._parser.receive_data(data)
        for ins in instructions:
            self.feed(ins)
        return instructions

    def feed(self, ins: Instruction) -> None:
        op = ins[0]
        self.opcodes.append(op)
        handler = getattr(self, "_op_" + op, None)
        if handler is not None:
            handler(*ins[1:])

    # ------------------------------------------------------------------ output
    @property
    def size(self) -> tuple[int, int]:
        h, w = self.layers[0].shape[:2]
        return w, h

    def rgb(self, layer: int = 0) -> npt.NDArray[np.uint8]:
        """The layer's RGB content (what the user sees on an opaque display)."""
        return self.layers[layer][..., :3].copy()

    # ------------------------------------------------------------------ helpers
    def _layer(self, index: int) -> RGBA:
        if index not in self.layers:
            self.layers[index] = np.zeros((0, 0, 4), np.uint8)
        return self.layers[index]

    def _ensure(self, index: int, w: int, h: int) -> RGBA:
        """Buffers grow to fit drawing (common-js autosize); visible layers clip."""
        layer = self._layer(index)
        if index < 0 and (layer.shape[1] < w or layer.shape[0] < h):
            self._resize(index, max(w, layer.shape[1]), max(h, layer.shape[0]))
        return self.layers[index]

    def _resize(self, index: int, w: int, h: int) -> None:
        old = self._layer(index)
        new = np.zeros((h, w, 4), np.uint8)
        ch, cw = min(h, old.shape[0]), min(w, old.shape[1])
        new[:ch, :cw] = old[:ch, :cw]
        self.layers[index] = new

    @staticmethod
    def _composite(dst: RGBA, src: RGBA, mode: int) -> None:
        if mode == MODE_SRC:
            dst[...] = src
            return
        alpha = src[..., 3:4].astype(np.uint16)
        if (alpha == 255).all():
            dst[...] = src
            return
        out = (src[..., :3] * alpha + dst[..., :3] * (255 - alpha) + 127) // 255
        dst[..., :3] = out.astype(np.uint8)
        dst[..., 3] = np.maximum(dst[..., 3], src[..., 3])

    def _draw(self, index: int, x: int, y: int, src: RGBA, mode: int) -> None:
        h, w = src.shape[:2]
        layer = self._ensure(index, x + w, y + h)
        lh, lw = layer.shape[:2]
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(lw, x + w), min(lh, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        self._composite(layer[y0:y1, x0:x1], src[y0 - y : y1 - y, x0 - x : x1 - x], mode)

    # ------------------------------------------------------------------ opcodes
    def _op_size(self, layer: str, w: str, h: str) -> None:
        self._resize(int(layer), int(w), int(h))

    def _op_img(self, stream: str, mode: str, layer: str, mimetype: str, x: str, y: str) -> None:
        self.streams[int(stream)] = _Stream(int(mode), int(layer), mimetype, int(x), int(y))
        self.mimetypes.append(mimetype)

    def _op_blob(self, stream: str, data: str) -> None:
        s = self.streams.get(int(stream))
        if s is not None:
            s.data += base64.b64decode(data)

    def _op_end(self, stream: str) -> None:
        s = self.streams.pop(int(stream), None)
        if s is None:
            return
        if s.kind == "clipboard":
            self.clipboard.append((s.mimetype, bytes(s.data)))
        elif s.mimetype.startswith("image/"):
            with Image.open(io.BytesIO(bytes(s.data))) as im:
                src = np.asarray(im.convert("RGBA"))
            self._draw(s.layer, s.x, s.y, src, s.mode)

    def _op_copy(self, *args: str) -> None:
        src, sx, sy, w, h, mode, dst, dx, dy = (int(a) for a in args)
        self.copies.append((src, sx, sy, w, h, dx, dy))
        layer = self._layer(src)
        region = layer[sy : sy + h, sx : sx + w].copy()
        self._draw(dst, dx, dy, region, mode)

    def _op_rect(self, layer: str, x: str, y: str, w: str, h: str) -> None:
        self.paths.setdefault(int(layer), []).append((int(x), int(y), int(w), int(h)))

    def _op_cfill(self, mode: str, layer: str, r: str, g: str, b: str, a: str) -> None:
        index = int(layer)
        colour = np.array([int(r), int(g), int(b), int(a)], np.uint8)
        for x, y, w, h in self.paths.pop(index, []):
            src = np.empty((h, w, 4), np.uint8)
            src[...] = colour
            self._draw(index, x, y, src, int(mode))

    def _op_cursor(self, hx: str, hy: str, src: str, sx: str, sy: str, w: str, h: str) -> None:
        layer = self._layer(int(src))
        x, y, ww, hh = int(sx), int(sy), int(w), int(h)
        self.cursor = (int(hx), int(hy), layer[y : y + hh, x : x + ww].copy())

    def _op_sync(self, timestamp: str, *frames: str) -> None:
        self.syncs += 1
        self.sync_timestamps.append(int(timestamp))

    def _op_mouse(self, x: str, y: str, *rest: str) -> None:
        self.mouse = (int(x), int(y))

    def _op_name(self, name: str) -> None:
        self.names.append(name)

    def _op_clipboard(self, stream: str, mimetype: str) -> None:
        self.streams[int(stream)] = _Stream(0, 0, mimetype, 0, 0, kind="clipboard")

    def clipboard_text(self) -> str | None:
        """The last complete clipboard received, as text."""
        if not self.clipboard:
            return None
        return self.clipboard[-1][1].decode("utf-8", "replace")
