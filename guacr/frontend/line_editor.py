"""A sans-I/O line editor for consoles drawn on the terminal front end.

Handlers without a remote shell (database consoles, later others) still want the
editing people know from readline: the editor takes the bytes a terminal's keyboard
sends (what :class:`guacr.terminal.KeyEncoder` produces: UTF-8 text, C0 controls, CSI and
SS3 sequences, bracketed paste) and returns the bytes to draw plus at most one event.
It never reads or writes anything itself, so it is tested without a terminal.

Keys: printable text inserts; Backspace/Delete; Left/Right, Ctrl+B/F; Ctrl+Left/Right
and Alt+B/F by word; Home/End and Ctrl+A/E (start/end of the current line); Ctrl+K,
Ctrl+U, Ctrl+W and Alt+Backspace kill (Ctrl+Y yanks the last kill back); Up/Down and
Ctrl+P/N walk the history; Ctrl+L clears the screen; Ctrl+C interrupts; Ctrl+D deletes
or, on an empty line, ends input; Enter submits, unless the ``needs_more`` hook says the
text so far is incomplete (a SQL statement without its ``;``): then a new line starts
with the continuation prompt and the whole multi-line text stays editable.

Drawing: the text is laid out in rows of ``width`` cells (wide characters take two and
never straddle a row end); a change redraws from the prompt's first row, except typing at
the end of a row, which just echoes the character.
"""

from __future__ import annotations

import codecs
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ClearScreen",
    "EndOfInput",
    "Event",
    "FeedResult",
    "History",
    "Interrupt",
    "LineEditor",
    "Submit",
    "cell_width",
]

PASTE_START: Final = "\x1b[200~"
PASTE_END: Final = "\x1b[201~"
TAB_SPACES: Final = "  "
MAX_TEXT: Final = 1 << 20  # characters; more input is dropped rather than hoarded


@dataclass(frozen=True)
class Submit:
    """Enter on complete text: ``text`` (lines joined with ``\\n``) is the user's input."""

    text: str


@dataclass(frozen=True)
class Interrupt:
    """Ctrl+C: the line was abandoned (or, to the caller, a running command cancelled)."""


@dataclass(frozen=True)
class EndOfInput:
    """Ctrl+D on an empty line."""


@dataclass(frozen=True)
class ClearScreen:
    """Ctrl+L: the screen was cleared and the line redrawn (informational)."""


Event = Submit | Interrupt | EndOfInput | ClearScreen


@dataclass(frozen=True)
class FeedResult:
    """What one ``feed`` produced: bytes to draw, an event, and input left unread.

    After a :class:`Submit`, :class:`Interrupt` or :class:`EndOfInput` the editor is
    idle; ``rest`` is the input that followed (typed or pasted ahead), to be fed again
    after :meth:`LineEditor.start`.
    """

    output: bytes
    event: Event | None = None
    rest: bytes = b""


def cell_width(ch: str) -> int:
    """Terminal cells taken by one code point: 0 combining, 2 East Asian wide, else 1."""
    if ch < "\u0300":
        return 1
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    """Cells taken by ``text`` on one row."""
    return sum(cell_width(c) for c in text)


class History:
    """Entries newest last, without consecutive duplicates, at most ``size``."""

    def __init__(self, size: int = 500) -> None:
        self.size = size
        self.entries: list[str] = []

    def add(self, text: str) -> None:
        """Remember ``text`` unless blank or equal to the newest entry."""
        if not text.strip() or (self.entries and self.entries[-1] == text):
            return
        self.entries.append(text)
        if len(self.entries) > self.size:
            del self.entries[: len(self.entries) - self.size]


class _Decoder:
    """Splits terminal input into keys: text characters and whole escape sequences."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""

    def keys(self, data: bytes) -> list[str]:
        text = self._pending + self._utf8.decode(data)
        self._pending = ""
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch != "\x1b":
                out.append(ch)
                i += 1
                continue
            end = _escape_end(text, i)
            if end < 0:  # incomplete: keep for the next chunk
                self._pending = text[i:]
                break
            out.append(text[i:end])
            i = end
        return out

    def flush_pending(self) -> list[str]:
        """A lone ESC with nothing after it is a key of its own."""
        p, self._pending = self._pending, ""
        return [p] if p else []


def _escape_end(text: str, i: int) -> int:
    """End index of the escape sequence at ``i``, or -1 when it is not complete yet."""
    n = len(text)
    if i + 1 >= n:
        return -1
    c = text[i + 1]
    if c == "[":
        j = i + 2
        while j < n:
            if "\x40" <= text[j] <= "\x7e" and not (j == i + 2 and text[j] == "["):
                return j + 1
            if text[j] == "[" and j == i + 2:  # Linux console F1-F5: ESC [ [ A
                if j + 1 < n:
                    return j + 2
                return -1
            j += 1
        return -1
    if c == "O":
        return i + 3 if i + 2 < n else -1
    return i + 2  # Alt+key: ESC prefix and one character


_HOME_KEYS: Final = frozenset({"\x1b[H", "\x1bOH", "\x1b[1~", "\x1b[7~", "\x01"})
_END_KEYS: Final = frozenset({"\x1b[F", "\x1bOF", "\x1b[4~", "\x1b[8~", "\x05"})
_LEFT_KEYS: Final = frozenset({"\x1b[D", "\x1bOD", "\x02"})
_RIGHT_KEYS: Final = frozenset({"\x1b[C", "\x1bOC", "\x06"})
_UP_KEYS: Final = frozenset({"\x1b[A", "\x1bOA", "\x10"})
_DOWN_KEYS: Final = frozenset({"\x1b[B", "\x1bOB", "\x0e"})
_WORD_LEFT_KEYS: Final = frozenset({"\x1b[1;5D", "\x1b[1;3D", "\x1bb", "\x1bB"})
_WORD_RIGHT_KEYS: Final = frozenset({"\x1b[1;5C", "\x1b[1;3C", "\x1bf", "\x1bF"})
_ENTER_KEYS: Final = frozenset({"\r", "\n"})


class LineEditor:
    """Edits one (possibly multi-line) input; see the module docstring for keys."""

    def __init__(
        self,
        *,
        prompt: str = "> ",
        continuation_prompt: str = "-> ",
        needs_more: Callable[[str], bool] | None = None,
        width: int = 80,
        history: History | None = None,
    ) -> None:
        self.prompt = prompt
        self.continuation_prompt = continuation_prompt
        self.needs_more = needs_more
        self.width = max(2, width)
        self.history = history if history is not None else History()
        self.text = ""
        self.cursor = 0
        self.active = False
        self._row = 0  # terminal row of the cursor, relative to the prompt's first row
        self._decoder = _Decoder()
        self._pasting = False
        self._kill = ""
        self._hist_index = 0
        self._draft = ""

    # Lifecycle --------------------------------------------------------------------------
    def start(self, prompt: str | None = None) -> bytes:
        """Begin a new input at the cursor's row: returns the prompt to draw."""
        if prompt is not None:
            self.prompt = prompt
        self.text, self.cursor, self._row = "", 0, 0
        self._hist_index = len(self.history.entries)
        self._draft = ""
        self.active = True
        return self._redraw(from_row=0, clear=False).encode("utf-8")

    def resize(self, width: int) -> None:
        """The terminal's width changed (the next redraw lays out anew)."""
        self.width = max(2, width)

    def feed(self, data: bytes) -> FeedResult:
        """Process typed input; stops at the first Submit/Interrupt/EndOfInput."""
        keys = self._decoder.keys(data)
        if not keys and not self._pasting and data == b"\x1b":
            keys = self._decoder.flush_pending()
        return self._run(keys)

    def _run(self, keys: list[str]) -> FeedResult:
        out: list[str] = []
        info: Event | None = None  # ClearScreen: reported, but input goes on
        for n, key in enumerate(keys):
            if not self.active:
                return FeedResult(_b(out), info, _b(keys[n:]))
            event = self._key(key, out)
            if isinstance(event, ClearScreen):
                info = event
            elif event is not None:
                return FeedResult(_b(out), event, _b(keys[n + 1 :]))
        return FeedResult(_b(out), info)

    # Keys ---------------------------------------------------------------------------------
    def _key(self, key: str, out: list[str]) -> Event | None:
        if self._pasting:
            if key == PASTE_END:
                self._pasting = False
                return None
            if key in _ENTER_KEYS:
                return self._enter(out)
            if key == "\t":
                self._insert(TAB_SPACES, out)
            elif key >= " " and key != "\x7f" and not key.startswith("\x1b"):
                self._insert(key, out)
            return None  # other controls inside a paste are dropped
        if key == PASTE_START:
            self._pasting = True
            return None
        if key in _ENTER_KEYS:
            return self._enter(out)
        if len(key) == 1 and (key >= " " and key != "\x7f"):
            self._insert(key, out)
            return None
        if key == "\t":
            self._insert(TAB_SPACES, out)
        elif key in ("\x7f", "\x08"):
            if self.cursor > 0:
                self._edit(self.text[: self.cursor - 1] + self.text[self.cursor :], -1, out)
        elif key == "\x1b[3~":
            self._delete_forward(out)
        elif key == "\x04":
            if not self.text:
                self.active = False
                out.append("\r\n")
                return EndOfInput()
            self._delete_forward(out)
        elif key == "\x03":
            self._move(len(self.text), out)
            out.append("^C\r\n")
            self.active = False
            return Interrupt()
        elif key == "\x0c":
            out.append("\x1b[H\x1b[2J")
            self._row = 0
            out.append(self._redraw(from_row=0, clear=False))
            return ClearScreen()
        elif key in _LEFT_KEYS:
            self._move(self.cursor - 1, out)
        elif key in _RIGHT_KEYS:
            self._move(self.cursor + 1, out)
        elif key in _HOME_KEYS:
            self._move(self._line_start(), out)
        elif key in _END_KEYS:
            self._move(self._line_end(), out)
        elif key in _WORD_LEFT_KEYS:
            self._move(self._word_start(), out)
        elif key in _WORD_RIGHT_KEYS:
            self._move(self._word_end(), out)
        elif key == "\x0b":  # Ctrl+K
            end = self._line_end()
            self._kill_range(self.cursor, end, out)
        elif key == "\x15":  # Ctrl+U
            start = self._line_start()
            self._kill_range(start, self.cursor, out)
        elif key in ("\x17", "\x1b\x7f", "\x1b\x08"):  # Ctrl+W, Alt+Backspace
            self._kill_range(self._word_start(), self.cursor, out)
        elif key == "\x19":  # Ctrl+Y
            if self._kill:
                self._insert(self._kill, out)
        elif key in _UP_KEYS:
            self._recall(-1, out)
        elif key in _DOWN_KEYS:
            self._recall(1, out)
        return None

    def _enter(self, out: list[str]) -> Event | None:
        if self.needs_more is not None and self.needs_more(self.text):
            self.cursor = len(self.text)
            self._edit(self.text + "\n", 0, out, cursor=len(self.text) + 1)
            return None
        self._move(len(self.text), out)
        out.append("\r\n")
        self.active = False
        self.history.add(self.text)
        return Submit(self.text)

    # Editing ------------------------------------------------------------------------------
    def _insert(self, s: str, out: list[str]) -> None:
        room = MAX_TEXT - len(self.text)
        if room <= 0:
            return
        s = s[:room]
        at_end = self.cursor == len(self.text)
        row, col = self._position(len(self.text))
        w = text_width(s)
        if at_end and len(s) == 1 and w > 0 and col + w < self.width and row == self._row:
            self.text += s
            self.cursor += 1
            out.append(s)  # the common case: typing at the end echoes the character
            return
        new = self.text[: self.cursor] + s + self.text[self.cursor :]
        self._edit(new, len(s), out)

    def _delete_forward(self, out: list[str]) -> None:
        if self.cursor < len(self.text):
            self._edit(self.text[: self.cursor] + self.text[self.cursor + 1 :], 0, out)

    def _kill_range(self, start: int, end: int, out: list[str]) -> None:
        if end <= start:
            return
        self._kill = self.text[start:end]
        self._edit(self.text[:start] + self.text[end:], 0, out, cursor=start)

    def _edit(self, new: str, delta: int, out: list[str], cursor: int | None = None) -> None:
        self.text = new
        self.cursor = cursor if cursor is not None else max(0, self.cursor + delta)
        out.append(self._redraw(from_row=self._row, clear=True))

    def _recall(self, step: int, out: list[str]) -> None:
        entries = self.history.entries
        index = self._hist_index + step
        if not 0 <= index <= len(entries):
            return
        if self._hist_index == len(entries):
            self._draft = self.text
        self._hist_index = index
        text = entries[index] if index < len(entries) else self._draft
        self._edit(text, 0, out, cursor=len(text))

    # Cursor -------------------------------------------------------------------------------
    def _move(self, index: int, out: list[str]) -> None:
        index = max(0, min(index, len(self.text)))
        if index == self.cursor:
            return
        r0, c0 = self._position(self.cursor)
        r1, c1 = self._position(index)
        self.cursor = index
        out.append(_relative(r0, c0, r1, c1))
        self._row = r1

    def _line_start(self) -> int:
        return self.text.rfind("\n", 0, self.cursor) + 1

    def _line_end(self) -> int:
        end = self.text.find("\n", self.cursor)
        return len(self.text) if end < 0 else end

    def _word_start(self) -> int:
        i = self.cursor
        while i > 0 and not _word_char(self.text[i - 1]):
            i -= 1
        while i > 0 and _word_char(self.text[i - 1]):
            i -= 1
        return i

    def _word_end(self) -> int:
        i, n = self.cursor, len(self.text)
        while i < n and not _word_char(self.text[i]):
            i += 1
        while i < n and _word_char(self.text[i]):
            i += 1
        return i

    # Layout and drawing --------------------------------------------------------------------
    def _layout(self) -> tuple[list[str], list[tuple[int, int]]]:
        """Rows of text to draw, and the (row, col) where each index (0..len) goes."""
        width = self.width
        rows: list[str] = []
        row = ""
        col = 0
        positions: list[tuple[int, int]] = []

        def put_prompt(p: str) -> None:
            nonlocal row, col
            for ch in p:
                w = cell_width(ch)
                if col + w > width:
                    rows.append(row)
                    row, col = "", 0
                row += ch
                col += w

        put_prompt(self.prompt)
        for ch in self.text:
            if ch == "\n":
                positions.append(_norm(len(rows), col, width))
                rows.append(row)
                row, col = "", 0
                put_prompt(self.continuation_prompt)
                continue
            w = cell_width(ch)
            if col + w > width:
                rows.append(row)
                row, col = "", 0
            positions.append(_norm(len(rows), col, width))
            row += ch
            col += w
        positions.append(_norm(len(rows), col, width))
        rows.append(row)
        return rows, positions

    def _position(self, index: int) -> tuple[int, int]:
        return self._layout()[1][index]

    def _redraw(self, *, from_row: int, clear: bool) -> str:
        rows, positions = self._layout()
        out = []
        if from_row > 0:
            out.append(f"\x1b[{from_row}A")
        out.append("\r")
        if clear:
            out.append("\x1b[J")
        out.append("\r\n".join(rows))
        end_row, end_col = positions[-1]
        last = len(rows) - 1
        if end_row > last:  # the text fills its last row exactly: move to the next one
            out.append("\r\n")
        cur_row, cur_col = positions[self.cursor]
        out.append(_relative(end_row, end_col, cur_row, cur_col))
        self._row = cur_row
        return "".join(out)


def _norm(row: int, col: int, width: int) -> tuple[int, int]:
    """A position at the right edge is the start of the next row."""
    return (row + 1, 0) if col >= width else (row, col)


def _relative(r0: int, c0: int, r1: int, c1: int) -> str:
    """Cursor motion from (r0, c0) to (r1, c1) (rows relative, columns absolute)."""
    out = []
    if r1 < r0:
        out.append(f"\x1b[{r0 - r1}A")
    elif r1 > r0:
        out.append(f"\x1b[{r1 - r0}B")
    if c1 != c0:
        out.append("\r")
        if c1 > 0:
            out.append(f"\x1b[{c1}C")
    return "".join(out)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _b(parts: list[str]) -> bytes:
    return "".join(parts).encode("utf-8")
