"""Emulator rows to the view's cell keys: the terminal front end's bridge between the
sans-I/O emulator (runs of attributes) and the renderer (one hashable key per cell).

Keys are interned, so equal cells are the same object and the renderer compares rows
by identity; colours are resolved once per (fg, bg, attributes). Non-ASCII texts seen
for the first time are collected so the session can let the font look up fallbacks
off the event loop before drawing them.
"""

from __future__ import annotations

from guacr.render.glyphs import BOLD, ITALIC, STRIKE, UNDERLINE, WIDE, CellKey, continuation
from guacr.terminal import ATTR_BOLD, ATTR_ITALIC, ATTR_STRIKE, ATTR_UNDERLINE, Terminal

INTERN_MAX = 65536  # the intern table starts over past this many keys


def pack(rgb: tuple[int, int, int]) -> int:
    """0xRRGGBB."""
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _intern(table: dict[CellKey, CellKey], key: CellKey) -> CellKey:
    found = table.get(key)
    if found is None:
        table[key] = found = key
    return found


class CellKeys:
    """Interned cell keys and resolved colours for one terminal."""

    __slots__ = ("_colours", "_keys", "_styles", "new_texts")

    def __init__(self) -> None:
        self._keys: dict[CellKey, CellKey] = {}
        # per (fg, bg, flags): character -> its interned key, so that a row of known
        # characters costs one dict lookup per cell and no tuple (every echo redraws one)
        self._styles: dict[tuple[int, int, int], dict[str, CellKey]] = {}
        self._colours: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.new_texts: set[str] = set()  # non-ASCII texts not drawn before

    def row(self, term: Terminal, y: int) -> list[CellKey]:
        """The cell keys of emulator row ``y`` (negative: history)."""
        keys: list[CellKey] = []
        intern = self._keys
        styles = self._styles
        colours = self._colours
        palette = term.palette
        reverse = term.reverse_video
        for run in term.row_runs(y):
            attrs = run.attrs
            ck = (run.fg, run.bg, attrs | (reverse << 15))
            pair = colours.get(ck)
            if pair is None:
                f, g = palette.cell_rgb(run.fg, run.bg, attrs, reverse)
                pair = colours[ck] = (pack(f), pack(g))
            fg, bg = pair
            flags = (
                (BOLD if attrs & ATTR_BOLD else 0)
                | (ITALIC if attrs & ATTR_ITALIC else 0)
                | (UNDERLINE if attrs & ATTR_UNDERLINE else 0)
                | (STRIKE if attrs & ATTR_STRIKE else 0)
            )
            if run.cluster:
                if run.width >= 2:
                    k = (run.text, fg, bg, flags | WIDE)
                    key = intern.get(k) or self._new_key(k)
                    keys.append(key)
                    keys.append(_intern(intern, continuation(key)))
                    blank = _intern(intern, ("", fg, bg, flags))
                    keys.extend([blank] * (run.width - 2))
                else:
                    k = (run.text, fg, bg, flags)
                    keys.append(intern.get(k) or self._new_key(k))
                continue
            text = run.text
            core = text.rstrip(" ")  # a prompt line is mostly trailing blanks: at once
            if core:
                style = styles.get((fg, bg, flags))
                if style is None:
                    style = styles[(fg, bg, flags)] = {}
                get = style.get
                for ch in core:
                    found = get(ch)
                    if found is None:
                        k = (ch if ch != " " else "", fg, bg, flags)
                        found = style[ch] = intern.get(k) or self._new_key(k)
                    keys.append(found)
            tail = len(text) - len(core) if core else run.width
            if tail:
                keys.extend([_intern(intern, ("", fg, bg, flags))] * tail)
        if len(intern) > INTERN_MAX:
            intern.clear()
            styles.clear()
        return keys

    def _new_key(self, key: CellKey) -> CellKey:
        """Intern a key not seen before; note text the font may need a fallback for."""
        self._keys[key] = key
        if not key[0].isascii():
            self.new_texts.add(key[0])
        return key

    def highlight(self, row: list[CellKey], c0: int, c1: int) -> list[CellKey]:
        """``row`` with columns ``c0``..``c1`` in reverse video (a selection)."""
        out = list(row)
        intern = self._keys
        for c in range(max(0, c0), min(len(row) - 1, c1) + 1):
            k = row[c]
            out[c] = _intern(intern, (k[0], k[2], k[1], k[3]))
        return out

    def take_new_texts(self) -> set[str]:
        """The new non-ASCII texts since the last call."""
        texts, self.new_texts = self.new_texts, set()
        return texts

    def forget_colours(self) -> None:
        """The palette changed: resolve colours anew."""
        self._colours.clear()

    def clear(self) -> None:
        """Start over (a new font: every text is new to it)."""
        self._keys.clear()
        self._styles.clear()
