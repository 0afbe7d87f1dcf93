"""guacr.terminal: the terminal emulation engine for SSH, Telnet and database consoles.

Sans-I/O: bytes from the host go in, screen state and bytes for the host come out.
The engine is libvterm's parser/state layer under a small C cell store (see
`guacr.terminal.emulator` for why and the measurements). Runtime dependency: the
Debian package ``libvterm0``; build (``python -m guacr.terminal.build``): ``gcc``
and ``libvterm-dev``. Call ``guacr.terminal.native.load()`` at worker start-up to
fail early (`NativeLibraryError` names the missing package) rather than on the
first connection.

Typical session loop (the renderer and session live elsewhere)::

    term = Terminal(cols, rows, scrollback=1000, palette=parse_color_scheme(scheme))
    keys = KeyEncoder(backspace=127, terminal_type="linux", func_keys_and_keypad="")

    # host output (may run in a worker thread: feed() releases the GIL)
    term.feed(data)
    if reply := term.output_to_host():      # DSR/DA/ENQ/OSC answers
        channel.write(reply)
    for ev in term.take_osc():              # e.g. guacd's OSC 482200 download
        ...

    # once per frame
    damage = term.take_damage()
    for s in damage.scrolls:                # replay as Guacamole `copy`, in order
        copy(rows s.top + s.lines .. s.bottom) -> row s.top   (negative: downwards)
    for y in damage.rows:                   # then redraw these rows
        for run in term.row_runs(y):        # runs tile the row: col, width, text,
            draw(run)                       # fg, bg, attrs, cluster
    if damage.title is not None: send `name`
    cursor = term.cursor                    # row, col, visible, blink, shape

    # user input
    result = keys.key(keysym, pressed,
                      application_cursor=term.application_cursor_keys,
                      application_keypad=term.application_keypad)
    match result.action: INPUT -> send result.data; PASTE -> send
        encode_paste(clipboard, term.bracketed_paste); SCROLL_PAGE_* -> move view
    if term.mouse_mode is not MouseMode.NONE:   # host wants the mouse
        send(reporter.update(col, row, mask, mode=term.mouse_mode,
                             encoding=term.mouse_encoding))

Colours in runs and cells are ints: `DEFAULT_COLOR` (-1, so the colour scheme's
default foreground/background applies), 0-255 palette indices, or
``TRUECOLOR | 0xRRGGBB``. `Terminal.palette.cell_rgb(fg, bg, attrs,
term.reverse_video)` gives the final RGB pair the way guacd draws it (bold brightens
colours 0-7, faint halves the foreground, reverse swaps).

Scrollback: `scrollback_len` lines sit above the screen; `row_runs(-1)` is the newest
history line, `scrollback_row(0)` the oldest. `scrollback_pushed` counts every line
ever pushed, so a scrolled-back view can stay on the same text while output arrives.
Selection text: `text_range((row, col), (row, col))` (end exclusive, soft-wrapped rows
joined without a newline) and `text_block` for rectangles.
"""

from guacr.terminal.colors import (
    PRESETS,
    Palette,
    default_colors,
    format_x11_color,
    parse_color_scheme,
    parse_x11_color,
)
from guacr.terminal.emulator import MAX_COLS, MAX_ROWS, Terminal
from guacr.terminal.keys import KeyAction, KeyEncoder, KeyResult, encode_paste, focus_report
from guacr.terminal.model import (
    ATTR_BLINK,
    ATTR_BOLD,
    ATTR_CURLY_UNDERLINE,
    ATTR_DOUBLE_UNDERLINE,
    ATTR_FAINT,
    ATTR_ITALIC,
    ATTR_REVERSE,
    ATTR_STRIKE,
    ATTR_UNDERLINE,
    DEFAULT_COLOR,
    TRUECOLOR,
    Cell,
    CursorShape,
    CursorState,
    Damage,
    MouseEncoding,
    MouseMode,
    OscEvent,
    Run,
    ScrollEvent,
    is_truecolor,
    rgb_of,
)
from guacr.terminal.mouse import MouseReporter
from guacr.terminal.native import NativeLibraryError

__all__ = [
    "ATTR_BLINK",
    "ATTR_BOLD",
    "ATTR_CURLY_UNDERLINE",
    "ATTR_DOUBLE_UNDERLINE",
    "ATTR_FAINT",
    "ATTR_ITALIC",
    "ATTR_REVERSE",
    "ATTR_STRIKE",
    "ATTR_UNDERLINE",
    "DEFAULT_COLOR",
    "MAX_COLS",
    "MAX_ROWS",
    "PRESETS",
    "TRUECOLOR",
    "Cell",
    "CursorShape",
    "CursorState",
    "Damage",
    "KeyAction",
    "KeyEncoder",
    "KeyResult",
    "MouseEncoding",
    "MouseMode",
    "MouseReporter",
    "NativeLibraryError",
    "OscEvent",
    "Palette",
    "Run",
    "ScrollEvent",
    "Terminal",
    "default_colors",
    "encode_paste",
    "focus_report",
    "format_x11_color",
    "is_truecolor",
    "parse_color_scheme",
    "parse_x11_color",
    "rgb_of",
]
