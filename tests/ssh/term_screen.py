"""A test-side Guacamole display: replays drawing instructions onto images, then reads
the terminal's text back by matching each cell against the renderer's own glyph tiles.

It implements what a browser client does for the instructions a terminal sends (``size``,
``img``/``blob``/``end``, ``copy``, ``rect``+``cfill``, ``move``, ``shade``), so tests can
assert on what a user would really see, without OCR.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from guacr.render.glyphs import BOLD, FontSet, font_pixels, get_fontset

MODE_ROUT = 0x2


class Display:
    """Layers and buffers as RGBA images, updated instruction by instruction."""

    def __init__(self) -> None:
        self.layers: dict[int, Image.Image] = {0: Image.new("RGBA", (1, 1))}
        self.positions: dict[int, tuple[int, int, int]] = {}  # layer -> (parent, x, y)
        self.opacity: dict[int, int] = {}
        self._streams: dict[int, tuple[int, int, int, int, bytearray]] = {}
        self._path: dict[int, tuple[int, int, int, int]] = {}
        self.names: list[str] = []
        self.syncs = 0

    def layer(self, index: int) -> Image.Image:
        img = self.layers.get(index)
        if img is None:
            img = self.layers[index] = Image.new("RGBA", (1, 1))
        return img

    def _ensure(self, index: int, w: int, h: int) -> Image.Image:
        img = self.layer(index)
        if img.width < w or img.height < h:
            grown = Image.new("RGBA", (max(img.width, w), max(img.height, h)))
            grown.paste(img, (0, 0))
            self.layers[index] = img = grown
        return img

    def feed(self, ins: Sequence[str]) -> None:
        op, args = ins[0], ins[1:]
        if op == "size":
            index, w, h = int(args[0]), int(args[1]), int(args[2])
            old = self.layer(index)
            new = Image.new("RGBA", (max(w, 1), max(h, 1)))
            new.paste(old, (0, 0))
            self.layers[index] = new
        elif op == "img":
            stream, mode, layer = int(args[0]), int(args[1]), int(args[2])
            self._streams[stream] = (mode, layer, int(args[4]), int(args[5]), bytearray())
        elif op == "blob":
            s = self._streams.get(int(args[0]))
            if s is not None:
                s[4].extend(base64.b64decode(args[1]))
        elif op == "end":
            s = self._streams.pop(int(args[0]), None)
            if s is not None:
                _, layer, x, y, data = s
                img = Image.open(io.BytesIO(bytes(data))).convert("RGBA")
                target = self._ensure(layer, x + img.width, y + img.height)
                target.paste(img, (x, y))
        elif op == "copy":
            src, sx, sy, w, h = (int(v) for v in args[:5])
            dst, dx, dy = int(args[6]), int(args[7]), int(args[8])
            region = self.layer(src).crop((sx, sy, sx + w, sy + h))
            self._ensure(dst, dx + w, dy + h).paste(region, (dx, dy))
        elif op == "rect":
            self._path[int(args[0])] = tuple(int(v) for v in args[1:5])  # type: ignore[assignment]
        elif op == "cfill":
            mode, layer = int(args[0]), int(args[1])
            rgba = tuple(int(v) for v in args[2:6])
            x, y, w, h = self._path.pop(layer, (0, 0, 0, 0))
            img = self._ensure(layer, x + w, y + h)
            colour = (0, 0, 0, 0) if mode == MODE_ROUT else rgba
            img.paste(Image.new("RGBA", (w, h), colour), (x, y))  # type: ignore[arg-type]
        elif op == "move":
            self.positions[int(args[0])] = (int(args[1]), int(args[2]), int(args[3]))
        elif op == "shade":
            self.opacity[int(args[0])] = int(args[1])
        elif op == "name":
            self.names.append(args[0])
        elif op == "sync":
            self.syncs += 1

    def feed_all(self, instructions: Iterable[Sequence[str]]) -> None:
        for ins in instructions:
            self.feed(ins)


class TextReader:
    """Reads characters off a text layer by matching cells against glyph tiles."""

    def __init__(self, font: str = "monospace", points: int = 12, dpi: int = 96) -> None:
        self.fonts: FontSet = get_fontset(font, font_pixels(points, dpi))
        chars: list[str] = []
        shapes: list[np.ndarray] = []
        for flags in (0, BOLD):
            for code in range(33, 127):
                tid = self.fonts.tile(chr(code), flags)
                tile = self.fonts.tiles[tid].astype(np.float64)
                chars.append(chr(code))
                shapes.append((tile / tile.max()).ravel())
        self._chars = chars
        self._shapes = np.array(shapes)

    def cell_char(self, cell: np.ndarray) -> str:
        """The character in one cell image (RGB array), '?' when no glyph matches.

        The cell's pixels are bg + (fg - bg) * coverage: normalised by the strongest
        pixel they match one glyph's normalised coverage, whatever the colours.
        """
        flat = cell.reshape(-1, 3).astype(np.float64)
        colours, counts = np.unique(flat, axis=0, return_counts=True)
        if len(colours) == 1:
            return " "
        bg = colours[np.argmax(counts)]
        diff = flat - bg
        channel = int(np.argmax(np.abs(diff).max(axis=0)))
        rel = diff[:, channel]
        rel = rel / rel[np.argmax(np.abs(rel))]
        errors = np.abs(self._shapes - rel).max(axis=1)
        best = int(np.argmin(errors))
        return self._chars[best] if errors[best] < 0.2 else "?"

    def read(self, layer: Image.Image, cols: int, rows: int) -> list[str]:
        """Row strings (trailing blanks stripped) of a text layer."""
        cw, ch = self.fonts.cell_width, self.fonts.cell_height
        arr = np.asarray(layer.convert("RGB"))
        out = []
        for r in range(rows):
            chars = []
            for c in range(cols):
                cell = arr[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw]
                if cell.shape[0] < ch or cell.shape[1] < cw:
                    chars.append(" ")
                    continue
                chars.append(self.cell_char(cell))
            out.append("".join(chars).rstrip())
        return out

    def screen(self, display: Display, layer: int = 1) -> list[str]:
        """Text of the terminal's text layer as the client shows it."""
        img = display.layer(layer)
        cols = img.width // self.fonts.cell_width
        rows = img.height // self.fonts.cell_height
        return self.read(img, cols, rows)
