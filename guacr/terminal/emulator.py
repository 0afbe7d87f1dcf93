"""`Terminal`: the VT emulator behind guacr's SSH, Telnet and database consoles.

Engine choice (measured on this project's 2-core box, 10 MB of
`ls -laR --color=always /usr` fed in 4 KiB writes):

* pyte 0.8.2: ~1 MB/s stock, ~3 MB/s with a fast path, and no alternate screen,
  REP or SU/SD. Too slow by 5x.
* libvterm 0.1.4 (Debian `libvterm0`) with its own screen layer: 25 MB/s at 80x24
  but only 10.5 MB/s at 200x50 *in pure C with no Python at all* (8.1 MB/s with
  scrollback), because that layer memmoves the whole screen for every scrolled
  line. No binding of it can reach the 15 MB/s target at 200x50.
* Chosen: libvterm's parser and state layer (all VT semantics: SGR 16/256/RGB,
  DECCKM, REP, SU/SD, ICH/DCH/IL/DL, tab stops, wide and combining characters,
  alternate screen, DSR/DA answers) under a small C cell store (`_vtscreen.c`)
  where scrolling rotates line pointers and scrolled-off lines move into the
  scrollback ring without copying. No Python runs per character or per line:
  `feed()` is one ctypes call that releases the GIL, and results are pulled in
  bulk. `benchmarks/bench_terminal.py` has the figures (~40 MB/s at both sizes).
  A pre-scanner in the same C file tracks the modes libvterm keeps private and
  contains the libvterm 0.1.4 defects fuzzing found (hangs and out-of-bounds
  writes on hostile input); the list is at the top of `_vtscreen.c`.

Not thread-safe: use one `Terminal` from one thread at a time (it may be a
worker thread, since `feed()` does not hold the GIL).
"""

from __future__ import annotations

import ctypes
import struct
import threading
import weakref
from collections.abc import Iterable

from guacr.terminal import native
from guacr.terminal.colors import Palette, format_x11_color, parse_x11_color
from guacr.terminal.model import (
    Cell,
    CursorShape,
    CursorState,
    Damage,
    MouseEncoding,
    MouseMode,
    OscEvent,
    Run,
    ScrollEvent,
)

__all__ = ["MAX_COLS", "MAX_ROWS", "Terminal"]

#: Largest screen guacd allows; callers clamp the client's size to this.
MAX_COLS = 1024
MAX_ROWS = 1024

_F_OSC = 1  # gvt_feed also reports 2 (output pending) and 4 (reset)
_M_APP_CURSOR, _M_APP_KEYPAD, _M_PASTE, _M_FOCUS, _M_ALT, _M_REVERSE = 1, 2, 4, 8, 16, 32
_CLUSTER = 0x8000
_MAX_SCROLLS = 32
_NCH = 3  # code points per cell in the C store


class _Scratch(threading.local):
    """Buffers the C layer fills and Python copies out at once: one set per thread
    rather than per terminal (about 45 kB each, which idle sessions would hold)."""

    def __init__(self) -> None:
        self.dmg = (ctypes.c_int32 * (4 + 3 * _MAX_SCROLLS + MAX_ROWS))()
        self.runs = (ctypes.c_int32 * (7 * MAX_COLS))()
        self.text = (ctypes.c_uint32 * (_NCH * MAX_COLS))()
        self.ntext = ctypes.c_int32()


_SCRATCH = _Scratch()


class Terminal:
    """A VT/xterm screen fed with bytes from the host.

    Rows are addressed 0..rows-1 on the screen; negative rows reach into the
    scrollback (-1 is the newest history line), so a scrolled-back view can read
    any line with the same calls.
    """

    def __init__(
        self,
        cols: int,
        rows: int,
        scrollback: int = 1000,
        *,
        palette: Palette | None = None,
        answerback: bytes = b"GUACAMOLE",
    ) -> None:
        _check_size(cols, rows)
        if scrollback < 0:
            raise ValueError("scrollback must be >= 0")
        self._lib = lib = native.load()
        handle = lib.gvt_new(rows, cols, scrollback)
        if not handle:
            raise MemoryError("cannot allocate terminal")
        self._h: int = handle
        self._finalizer = weakref.finalize(self, lib.gvt_free, handle)
        lib.gvt_set_answerback(handle, answerback, len(answerback))
        self._cols = cols
        self._rows = rows
        self._base_palette = palette.copy() if palette is not None else Palette()
        self._palette = self._base_palette.copy()
        self._title = ""
        self._title_changed = False
        self._force_full = False
        self._osc_events: list[OscEvent] = []
        self._reply = bytearray()  # answers produced here (OSC queries)
        self._i32x6 = (ctypes.c_int32 * 6)()

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Free the native screen now (also happens on garbage collection)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    # ---------------------------------------------------------------- input

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Process output from the host."""
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        flags = self._lib.gvt_feed(self._h, data, len(data))
        if flags & _F_OSC:
            self._drain_osc()

    def reset(self) -> None:
        """Full reset (RIS), as if the host had sent ESC c."""
        self.feed(b"\x1bc")

    def resize(self, cols: int, rows: int) -> None:
        """Change the screen size; content is kept, history refills a taller screen."""
        _check_size(cols, rows)
        if (cols, rows) == (self._cols, self._rows):
            return
        self._lib.gvt_resize(self._h, rows, cols)
        self._cols = cols
        self._rows = rows

    # --------------------------------------------------------------- output

    def output_to_host(self) -> bytes:
        """Bytes the terminal must send back to the host (DSR/DA/ENQ/OSC answers)."""
        out = b""
        n = self._lib.gvt_output_len(self._h)
        if n:
            buf = ctypes.create_string_buffer(n)
            got = self._lib.gvt_take_output(self._h, buf, n)
            out = buf.raw[:got]
        if self._reply:
            out += bytes(self._reply)
            self._reply.clear()
        return out

    def take_osc(self) -> list[OscEvent]:
        """OSC commands the engine did not handle itself, oldest first."""
        events, self._osc_events = self._osc_events, []
        return events

    def take_damage(self) -> Damage:
        """Changes since the last call: scrolls to replay, then rows to redraw."""
        n = self._lib.gvt_take_damage(self._h, _SCRATCH.dmg, len(_SCRATCH.dmg))
        v = _SCRATCH.dmg[:n]
        full = bool(v[0]) or self._force_full
        bell = v[3] != 0
        title = self._title if self._title_changed else None
        self._title_changed = False
        if full:
            self._force_full = False
            return Damage(True, (), tuple(range(self._rows)), bell, title)
        nscroll, ndirty = v[1], v[2]
        k = 4 + 3 * nscroll
        scrolls = tuple(ScrollEvent(v[i], v[i + 1], v[i + 2]) for i in range(4, k, 3))
        return Damage(False, scrolls, tuple(v[k : k + ndirty]), bell, title)

    def invalidate(self) -> None:
        """Make the next `take_damage()` a full redraw (e.g. for a newly joined user)."""
        self._force_full = True

    # -------------------------------------------------------------- content

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def rows(self) -> int:
        return self._rows

    def row_runs(self, row: int) -> list[Run]:
        """Runs of identical attributes tiling the row (negative rows: scrollback)."""
        nr = self._lib.gvt_line_runs(
            self._h,
            row,
            self._cols,
            _SCRATCH.runs,
            MAX_COLS,
            _SCRATCH.text,
            len(_SCRATCH.text),
            ctypes.byref(_SCRATCH.ntext),
        )
        if nr < 0:
            raise IndexError(row)
        text = ctypes.string_at(_SCRATCH.text, _SCRATCH.ntext.value * 4).decode("utf-32-le")
        r = _SCRATCH.runs[: nr * 7]
        return [
            Run(
                r[i],
                r[i + 1],
                text[r[i + 2] : r[i + 2] + r[i + 3]],
                r[i + 4],
                r[i + 5],
                r[i + 6] & 0x7FFF,
                bool(r[i + 6] & _CLUSTER),
            )
            for i in range(0, nr * 7, 7)
        ]

    def row_cells(self, row: int) -> list[Cell]:
        """One `Cell` per column (slower than `row_runs`; for tests and tools)."""
        cells: list[Cell] = []
        for run in self.row_runs(row):
            if run.cluster:
                cells.append(Cell(run.text, run.width, run.fg, run.bg, run.attrs))
                cells.extend(Cell("", 0, run.fg, run.bg, run.attrs) for _ in range(run.width - 1))
            else:
                cells.extend(Cell(ch, 1, run.fg, run.bg, run.attrs) for ch in run.text)
        return cells

    def row_text(self, row: int) -> str:
        """The row's characters, trailing blanks removed."""
        return "".join(run.text for run in self.row_runs(row)).rstrip(" ")

    def row_wrapped(self, row: int) -> bool:
        """True if the row continues the row above after an automatic wrap."""
        self._check_row(row)
        return bool(self._lib.gvt_line_wrapped(self._h, row))

    def lines(self) -> list[str]:
        """The text of every screen row (for tests and logs)."""
        return [self.row_text(y) for y in range(self._rows)]

    def text_range(self, start: tuple[int, int], end: tuple[int, int]) -> str:
        """Text from `start` (row, col) up to `end` (row, col, exclusive), in flow order.

        Rows are joined with newlines except where a row was soft-wrapped; trailing
        blanks of each row are dropped; a wide character cut by either end is
        included whole. Rows may be negative (scrollback).
        """
        (r0, c0), (r1, c1) = sorted((start, end))
        parts: list[str] = []
        for y in range(max(r0, -self.scrollback_len), min(r1, self._rows - 1) + 1):
            a = c0 if y == r0 else 0
            b = c1 if y == r1 else self._cols
            line = self._slice(y, a, b)
            to_end = b >= self._cols
            if to_end:
                line = line.rstrip(" ")
            if parts and not self.row_wrapped(y):
                parts.append("\n")
            parts.append(line)
        return "".join(parts)

    def text_block(self, start: tuple[int, int], end: tuple[int, int]) -> str:
        """Text of the rectangle spanned by two corners (Alt+drag selection)."""
        (r0, r1), (c0, c1) = sorted((start[0], end[0])), sorted((start[1], end[1]))
        rows = range(max(r0, -self.scrollback_len), min(r1, self._rows - 1) + 1)
        return "\n".join(self._slice(y, c0, c1 + 1).rstrip(" ") for y in rows)

    def _slice(self, row: int, a: int, b: int) -> str:
        out: list[str] = []
        for run in self.row_runs(row):
            lo, hi = run.col, run.col + run.width
            if hi <= a or lo >= b:
                continue
            if run.cluster:
                out.append(run.text)
            else:
                out.append(run.text[max(a, lo) - lo : min(b, hi) - lo])
        return "".join(out)

    def _check_row(self, row: int) -> None:
        if not -self.scrollback_len <= row < self._rows:
            raise IndexError(f"row {row} out of range")

    # ----------------------------------------------------------- scrollback

    def _geometry(self) -> tuple[int, ...]:
        self._lib.gvt_geometry(self._h, self._i32x6)
        return tuple(self._i32x6)

    @property
    def scrollback_len(self) -> int:
        """History lines available above the screen."""
        return self._geometry()[2]

    @property
    def scrollback_limit(self) -> int:
        return self._geometry()[3]

    @property
    def scrollback_pushed(self) -> int:
        """Lines ever pushed into history: lets a scrolled-back view stay put."""
        g = self._geometry()
        return g[4] | (g[5] << 31)

    def scrollback_row(self, index: int) -> list[Run]:
        """Runs of history line `index` (0 is the oldest)."""
        n = self.scrollback_len
        if not 0 <= index < n:
            raise IndexError(index)
        return self.row_runs(index - n)

    def set_scrollback_limit(self, lines: int) -> None:
        """Change the history size at run time (guacd's OSC 482204), keeping the newest."""
        if not self._lib.gvt_set_scrollback(self._h, max(0, lines)):
            raise MemoryError("cannot resize scrollback")

    def clear_scrollback(self) -> None:
        self._lib.gvt_clear_scrollback(self._h)

    # ---------------------------------------------------------------- state

    @property
    def cursor(self) -> CursorState:
        v = (ctypes.c_int32 * 5)()
        self._lib.gvt_cursor(self._h, v)
        shape = v[4] if v[4] in (1, 2, 3) else 1
        return CursorState(v[0], v[1], bool(v[2]), bool(v[3]), CursorShape(shape))

    @property
    def title(self) -> str:
        """Window title set by OSC 0/2 (guacd sends it to the client as `name`)."""
        return self._title

    @property
    def palette(self) -> Palette:
        """Colours in effect: the configured scheme plus OSC 4/10/11 changes."""
        return self._palette

    def _modes(self) -> int:
        return int(self._lib.gvt_modes(self._h))

    @property
    def application_cursor_keys(self) -> bool:
        """DECCKM: cursor keys send ESC O x instead of ESC [ x."""
        return bool(self._modes() & _M_APP_CURSOR)

    @property
    def application_keypad(self) -> bool:
        """DECKPAM (ESC =) or DECNKM: keypad sends application sequences."""
        return bool(self._modes() & _M_APP_KEYPAD)

    @property
    def bracketed_paste(self) -> bool:
        """Mode 2004: wrap pasted text in ESC [200~ ... ESC [201~."""
        return bool(self._modes() & _M_PASTE)

    @property
    def focus_events(self) -> bool:
        """Mode 1004: the host wants ESC [I / ESC [O on focus changes."""
        return bool(self._modes() & _M_FOCUS)

    @property
    def mouse_mode(self) -> MouseMode:
        return MouseMode((self._modes() >> 8) & 7)

    @property
    def mouse_encoding(self) -> MouseEncoding:
        return MouseEncoding((self._modes() >> 12) & 3)

    @property
    def mouse_sgr(self) -> bool:
        """Mode 1006: SGR mouse encoding."""
        return self.mouse_encoding is MouseEncoding.SGR

    @property
    def alt_screen_active(self) -> bool:
        return bool(self._modes() & _M_ALT)

    @property
    def reverse_video(self) -> bool:
        """DECSCNM: the whole screen is drawn with colours swapped."""
        return bool(self._modes() & _M_REVERSE)

    # ------------------------------------------------------------------ OSC

    def _drain_osc(self) -> None:
        n = self._lib.gvt_osc_len(self._h)
        buf = ctypes.create_string_buffer(n)
        got = self._lib.gvt_take_osc(self._h, buf, n)
        raw = buf.raw[:got]
        pos = 0
        while pos + 5 <= len(raw):
            (length,) = struct.unpack_from("<I", raw, pos)
            kind = raw[pos + 4]
            if kind == ord("R"):  # full reset (RIS) marker, in order with the OSCs
                pos += 5
                self._palette = self._base_palette.copy()
                self._force_full = True
                continue
            terminator = b"\x07" if kind == 7 else b"\x1b\\"
            payload = raw[pos + 5 : pos + 5 + length].decode("utf-8", "replace")
            pos += 5 + length
            self._handle_osc(payload, terminator)

    def _handle_osc(self, payload: str, st: bytes) -> None:
        num, _, rest = payload.partition(";")
        if not (num.isascii() and num.isdigit()):
            return
        cmd = int(num)
        if cmd in (0, 2):
            if rest != self._title or not self._title_changed:
                self._title = rest
                self._title_changed = True
        elif cmd == 1:
            pass  # icon name: nothing to show it on
        elif cmd == 4:
            self._osc_palette(rest, st)
        elif cmd in (10, 11):
            self._osc_default_color(cmd, rest, st)
        elif cmd == 104:
            self._osc_reset_palette(rest)
        elif cmd in (110, 111):
            base = self._base_palette
            if cmd == 110:
                self._palette.foreground = base.foreground
            else:
                self._palette.background = base.background
            self._force_full = True
        else:
            self._osc_events.append(OscEvent(cmd, rest))

    def _osc_palette(self, rest: str, st: bytes) -> None:
        items = rest.split(";")
        for i in range(0, len(items) - 1, 2):
            idx_s, spec = items[i], items[i + 1]
            if not (idx_s.isascii() and idx_s.isdigit()) or int(idx_s) > 255:
                continue
            idx = int(idx_s)
            if spec == "?":
                rgb = format_x11_color(self._palette.colors[idx])
                self._reply += f"\x1b]4;{idx};{rgb}".encode() + st
                continue
            color = parse_x11_color(spec)
            if color is not None:
                self._palette.colors[idx] = color
                self._force_full = True

    def _osc_default_color(self, cmd: int, rest: str, st: bytes) -> None:
        # OSC 10;a;b sets foreground then background (xterm); '?' queries
        for offset, spec in enumerate(rest.split(";")):
            which = cmd + offset
            if which not in (10, 11):
                break
            if spec == "?":
                rgb = self._palette.foreground if which == 10 else self._palette.background
                self._reply += f"\x1b]{which};{format_x11_color(rgb)}".encode() + st
                continue
            color = parse_x11_color(spec)
            if color is None:
                continue
            if which == 10:
                self._palette.foreground = color
            else:
                self._palette.background = color
            self._force_full = True

    def _osc_reset_palette(self, rest: str) -> None:
        indices: Iterable[int]
        if rest:
            indices = (int(s) for s in rest.split(";") if s.isascii() and s.isdigit())
        else:
            indices = range(256)
        for idx in indices:
            if idx <= 255:
                self._palette.colors[idx] = self._base_palette.colors[idx]
        self._force_full = True


def _check_size(cols: int, rows: int) -> None:
    if not (1 <= cols <= MAX_COLS and 1 <= rows <= MAX_ROWS):
        raise ValueError(f"terminal size {cols}x{rows} outside 1..{MAX_COLS}x1..{MAX_ROWS}")
