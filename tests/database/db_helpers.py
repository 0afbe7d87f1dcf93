"""A terminal test client for the database consoles: keys, Ctrl+C, and file streams
(downloads acked blob by blob, uploads sent as a client does)."""

from __future__ import annotations

import base64

import numpy as np
from PIL import Image
from ssh.ssh_helpers import TermClient, reader

from guacr.protocol.parser import Instruction

CTRL, UP_KEY, PAGE_DOWN = 0xFFE3, 0xFF52, 0xFF56
HANDLERS = ",".join(
    (
        "mysql=guacr.handlers.database.handler:MySQLHandler",
        "mariadb=guacr.handlers.database.handler:MySQLHandler",
        "postgresql=guacr.handlers.database.handler:PostgreSQLHandler",
        "postgres=guacr.handlers.database.handler:PostgreSQLHandler",
    )
)


class DbTerm(TermClient):
    """TermClient that also answers downloads (``file``/``blob``/``end``) with ``ack``."""

    def __init__(self, term: TermClient) -> None:
        super().__init__(term.client)
        self.connection_id = term.connection_id
        self.downloads: dict[int, dict[str, object]] = {}
        self._screen: tuple[int, list[str]] = (-1, [])
        self.finished: list[dict[str, object]] = []

    def received(self, ins: Instruction) -> None:
        op = ins[0]
        if op == "file":
            stream = int(ins[1])
            self.downloads[stream] = {"mimetype": ins[2], "name": ins[3], "data": bytearray()}
            self.client.send("ack", stream, "OK", 0)
        elif op == "blob" and int(ins[1]) in self.downloads:
            self.downloads[int(ins[1])]["data"] += base64.b64decode(ins[2])  # type: ignore[operator]
            self.client.send("ack", ins[1], "OK", 0)
        elif op == "end" and int(ins[1]) in self.downloads:
            self.finished.append(self.downloads.pop(int(ins[1])))

    def screen(self) -> list[str]:
        """The screen's text, read again only after new drawing arrived."""
        frame = self.display.syncs  # the screen is read once per frame at most
        if self._screen[0] != frame:
            self._screen = (frame, _read_screen(self.display.layer(1)))
        return self._screen[1]

    def ctrl(self, letter: str) -> None:
        self.client.send("key", CTRL, 1)
        self.key(ord(letter))
        self.client.send("key", CTRL, 0)

    def upload(self, name: str, data: bytes, stream: int = 20) -> None:
        self.client.send("file", stream, "text/csv", name)
        for i in range(0, len(data), 4096):
            self.client.send("blob", stream, base64.b64encode(data[i : i + 4096]).decode())
        self.client.send("end", stream)

    def count_text(self, needle: str) -> int:
        return self.text().count(needle)

    def cell_colour(self, row: int, col: int) -> tuple[int, ...]:
        """Brightest colour drawn in the screen cell at (row, col)."""
        fonts = reader().fonts
        img = np.asarray(self.display.layer(1).convert("RGB"))
        cw, ch = fonts.cell_width, fonts.cell_height
        cell = img[row * ch : (row + 1) * ch, col * cw : (col + 1) * cw].reshape(-1, 3)
        return tuple(int(v) for v in cell[np.argmax(cell.sum(axis=1))])


def _read_screen(layer: Image.Image) -> list[str]:
    """The text layer's rows, as ``TextReader.screen`` reads them, but matching glyphs
    only in cells that are not one flat colour (most of a console is blank)."""
    r = reader()
    cw, ch = r.fonts.cell_width, r.fonts.cell_height
    img = np.asarray(layer.convert("RGB"))
    rows, cols = img.shape[0] // ch, img.shape[1] // cw
    if rows == 0 or cols == 0:
        return []
    cells = img[: rows * ch, : cols * cw].reshape(rows, ch, cols, cw, 3)
    flat = (cells == cells[:, :1, :, :1, :]).all(axis=(1, 3, 4))
    out = []
    for y in range(rows):
        chars = [" "] * cols
        for x in np.flatnonzero(~flat[y]):
            chars[x] = r.cell_char(cells[y, :, x, :, :])
        out.append("".join(chars).rstrip())
    return out
