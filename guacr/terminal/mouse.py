"""Mouse reports for hosts that enabled xterm mouse tracking.

guacd itself never forwards the mouse (it uses it for selection and scrolling);
guacr can, when the application asked for it (`Terminal.mouse_mode`). The session
converts the Guacamole `mouse` instruction (pixels + button mask) to a cell and
calls `MouseReporter.update`; it gets back the bytes to send, in the encoding the
host selected (`Terminal.mouse_encoding`).
"""

from __future__ import annotations

from guacr.terminal.model import MouseEncoding, MouseMode

__all__ = [
    "MASK_LEFT",
    "MASK_MIDDLE",
    "MASK_RIGHT",
    "MASK_SCROLL_DOWN",
    "MASK_SCROLL_UP",
    "MOD_ALT",
    "MOD_CTRL",
    "MOD_SHIFT",
    "MouseReporter",
    "encode_report",
]

# Guacamole button mask bits
MASK_LEFT, MASK_MIDDLE, MASK_RIGHT, MASK_SCROLL_UP, MASK_SCROLL_DOWN = 1, 2, 4, 8, 16
# modifier bits as xterm adds them to the button code
MOD_SHIFT, MOD_ALT, MOD_CTRL = 4, 8, 16

_BUTTONS = ((MASK_LEFT, 0), (MASK_MIDDLE, 1), (MASK_RIGHT, 2))
_WHEEL = ((MASK_SCROLL_UP, 64), (MASK_SCROLL_DOWN, 65))
_MOTION = 32
_RELEASE = 3


def encode_report(
    button: int, col: int, row: int, *, release: bool, encoding: MouseEncoding
) -> bytes:
    """One report; `button` is xterm's code (0-2 buttons, 64/65 wheel, +32 motion,
    plus modifier bits), `col`/`row` are 0-based cells."""
    x, y = col + 1, row + 1
    if encoding is MouseEncoding.SGR:
        return f"\x1b[<{button};{x};{y}{'m' if release else 'M'}".encode()
    code = (_RELEASE | (button & (MOD_SHIFT | MOD_ALT | MOD_CTRL))) if release else button
    if encoding is MouseEncoding.URXVT:
        return f"\x1b[{32 + code};{x};{y}M".encode()
    if encoding is MouseEncoding.UTF8:
        return b"\x1b[M" + "".join(chr(32 + v) for v in (code, min(x, 2015), min(y, 2015))).encode()
    # the original encoding: one byte per value, positions past 223 cannot be sent
    return b"\x1b[M" + bytes((32 + code, 32 + min(x, 223), 32 + min(y, 223)))


class MouseReporter:
    """Turns successive Guacamole mouse states into xterm mouse reports."""

    def __init__(self) -> None:
        self._mask = 0
        self._cell: tuple[int, int] | None = None

    def update(
        self,
        col: int,
        row: int,
        mask: int,
        *,
        mode: MouseMode,
        encoding: MouseEncoding,
        modifiers: int = 0,
    ) -> bytes:
        """Bytes for the host after the pointer moved to (col, row) with `mask` held."""
        old, self._mask = self._mask, mask
        moved = self._cell is not None and self._cell != (col, row)
        self._cell = (col, row)
        if mode is MouseMode.NONE:
            return b""
        mods = 0 if mode is MouseMode.X10 else modifiers
        out: list[bytes] = []
        changed = False
        for bit, button in _BUTTONS:
            if (mask ^ old) & bit:
                changed = True
                if mask & bit:
                    out.append(
                        encode_report(button | mods, col, row, release=False, encoding=encoding)
                    )
                elif mode is not MouseMode.X10:
                    out.append(
                        encode_report(button | mods, col, row, release=True, encoding=encoding)
                    )
        for bit, button in _WHEEL:
            if mask & bit and not old & bit and mode is not MouseMode.X10:
                changed = True
                out.append(encode_report(button | mods, col, row, release=False, encoding=encoding))
        if moved and not changed:
            held = next((button for bit, button in _BUTTONS if mask & bit), None)
            if (mode is MouseMode.BUTTON_EVENT and held is not None) or mode is MouseMode.ANY_EVENT:
                code = (held if held is not None else _RELEASE) + _MOTION
                out.append(encode_report(code | mods, col, row, release=False, encoding=encoding))
        return b"".join(out)
