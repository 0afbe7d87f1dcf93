"""X11 keysyms from Guacamole `key` instructions to bytes for the host.

Follows guacd 1.6.1: modifier tracking from press/release, Ctrl+letter to C0,
Alt/Meta as an ESC prefix, xterm modifier parameters (`ESC [1;5A`) for modified
cursor, editing and function keys, DECCKM cursor keys, the `backspace` code, and
the `terminal-type`/`func-keys-and-keypad` variants:

* `terminal-type` "linux" (guacd's default): Home/End send `ESC [1~`/`ESC [4~`,
  F1-F5 the Linux console's `ESC [[A`..`ESC [[E`. Other types: `ESC [H`/`ESC [F`
  and xterm's `ESC OP`..`ESC OS`, `ESC [15~`.
* `func-keys-and-keypad` "vt100": F1-F4 always `ESC OP`..`ESC OS`, and the keypad
  sends VT100 application codes while the host has set keypad application mode.

Deliberate differences from guacd: Unicode keysyms beyond the BMP are encoded
whole (guacd drops the high bits), Ctrl+Space sends NUL and Ctrl+/ sends 0x1F as
in xterm (guacd sends nothing), and Alt with a key that produces nothing sends
nothing (guacd sends a lone ESC).

Clipboard paste and history scrolling are the session's business: `KeyEncoder.key`
reports those shortcuts as a `KeyAction` instead of bytes.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["KeyAction", "KeyEncoder", "KeyResult", "encode_paste", "focus_report"]

# Modifier keysyms
_SHIFT = (0xFFE1, 0xFFE2)
_CTRL = (0xFFE3, 0xFFE4)
_META = (0xFFE7, 0xFFE8, 0xFFEB, 0xFFEC, 0xFFED, 0xFFEE)  # Meta, Super, Hyper
_ALT = (0xFFE9, 0xFFEA)

_BACKSPACE, _TAB, _LINEFEED, _RETURN, _ESCAPE = 0xFF08, 0xFF09, 0xFF0A, 0xFF0D, 0xFF1B
_KP_TAB, _KP_ENTER = 0xFF89, 0xFF8D
_PAGE_UP, _PAGE_DOWN = 0xFF55, 0xFF56

# arrow keysym -> final byte (main and keypad variants)
_ARROWS = {
    0xFF51: "D", 0xFF52: "A", 0xFF53: "C", 0xFF54: "B",
    0xFF96: "D", 0xFF97: "A", 0xFF98: "C", 0xFF99: "B",
}  # fmt: skip
_HOME = (0xFF50, 0xFF95)
_END = (0xFF57, 0xFF9C)
# editing keysym -> tilde parameter
_TILDE = {
    0xFF63: 2, 0xFF9E: 2,  # Insert
    0xFFFF: 3, 0xFF9F: 3,  # Delete
    0xFF55: 5, 0xFF9A: 5,  # Page Up
    0xFF56: 6, 0xFF9B: 6,  # Page Down
}  # fmt: skip
_EDITING = frozenset((*_HOME, *_END, *_TILDE))
# F1-F4 (and keypad F1-F4) -> SS3 final; F5-F12 -> tilde parameter
_F1_4 = {0xFFBE: "P", 0xFFBF: "Q", 0xFFC0: "R", 0xFFC1: "S",
         0xFF91: "P", 0xFF92: "Q", 0xFF93: "R", 0xFF94: "S"}  # fmt: skip
_F5_12 = {0xFFC2: 15, 0xFFC3: 17, 0xFFC4: 18, 0xFFC5: 19, 0xFFC6: 20, 0xFFC7: 21,
          0xFFC8: 23, 0xFFC9: 24}  # fmt: skip
_LINUX_F1_5 = {"P": b"\x1b[[A", "Q": b"\x1b[[B", "R": b"\x1b[[C", "S": b"\x1b[[D"}
_FUNCTION = frozenset((*_F1_4, *_F5_12))

_KP_FIRST, _KP_LAST, _KP_EQUAL = 0xFFAA, 0xFFB9, 0xFFBD  # KP_Multiply..KP_9, KP_Equal
_KP_APP = {"-": b"\x1bOm", ".": b"\x1bOn", "*": b"\x1bOl", "+": b"\x1bOM"}

_PASTE_END = b"\x1b[201~"


class KeyAction(enum.Enum):
    """What the session should do with a key event."""

    NONE = "none"  # modifier change, release, or a swallowed shortcut
    INPUT = "input"  # leave any scrolled-back view and send `data` (may be empty)
    PASTE = "paste"  # Ctrl+Shift+V / Meta+V: type the clipboard
    SCROLL_PAGE_UP = "scroll-page-up"  # Shift+Page Up: history one screen up
    SCROLL_PAGE_DOWN = "scroll-page-down"


class KeyResult(NamedTuple):
    action: KeyAction
    data: bytes = b""


_NOTHING = KeyResult(KeyAction.NONE)


class KeyEncoder:
    """Per-connection keyboard state: modifiers held and the terminal settings."""

    def __init__(
        self,
        *,
        backspace: int = 127,
        terminal_type: str = "linux",
        func_keys_and_keypad: str = "esc",
    ) -> None:
        if not 0 <= backspace <= 127:
            raise ValueError("backspace must be an ASCII code")
        self.backspace = backspace
        self.linux_keys = terminal_type == "linux"
        self.vt100 = func_keys_and_keypad == "vt100"
        self.shift = self.ctrl = self.alt = self.meta = False

    def release_all(self) -> None:
        """Forget held modifiers (e.g. when the client loses focus)."""
        self.shift = self.ctrl = self.alt = self.meta = False

    def _modifier_param(self) -> int:
        return 1 + self.shift + 2 * self.alt + 4 * self.ctrl + 8 * self.meta

    def key(
        self,
        keysym: int,
        pressed: bool,
        *,
        application_cursor: bool = False,
        application_keypad: bool = False,
    ) -> KeyResult:
        """Handle one `key` instruction; the mode flags come from the `Terminal`."""
        if keysym in _SHIFT:
            self.shift = pressed
            return _NOTHING
        if keysym in _CTRL:
            self.ctrl = pressed
            return _NOTHING
        if keysym in _ALT:
            self.alt = pressed
            return _NOTHING
        if keysym in _META:
            self.meta = pressed
            return _NOTHING
        if not pressed:
            return _NOTHING

        if (keysym == ord("V") and self.ctrl) or (keysym == ord("v") and self.meta):
            return KeyResult(KeyAction.PASTE)
        if self.shift and keysym == _TAB:
            return KeyResult(KeyAction.INPUT, b"\x1b[Z")
        if (keysym == ord("C") and self.ctrl) or (keysym == ord("c") and self.meta):
            return _NOTHING  # copying happens on selection; don't send ^C by accident
        if self.shift and keysym == _PAGE_UP:
            return KeyResult(KeyAction.SCROLL_PAGE_UP)
        if self.shift and keysym == _PAGE_DOWN:
            return KeyResult(KeyAction.SCROLL_PAGE_DOWN)

        data = self._encode(keysym, application_cursor, application_keypad)
        if data and (self.alt or self.meta) and not self._csi_key(keysym):
            data = b"\x1b" + data
        return KeyResult(KeyAction.INPUT, data)

    @staticmethod
    def _csi_key(keysym: int) -> bool:
        """Keys whose modifiers are encoded in the sequence, not as an ESC prefix."""
        return keysym in _ARROWS or keysym in _FUNCTION or keysym in _EDITING

    def _encode(self, keysym: int, app_cursor: bool, app_keypad: bool) -> bytes:
        if self.ctrl:
            return self._ctrl(keysym)

        codepoint = _unicode(keysym)
        if codepoint is not None:
            return chr(codepoint).encode("utf-8", "surrogatepass")

        if _KP_FIRST <= keysym <= _KP_LAST or keysym == _KP_EQUAL:
            ch = chr(keysym - 0xFF80)
            if self.vt100 and app_keypad:
                if ch.isdigit():
                    return b"\x1bO" + bytes([ord("p") + int(ch)])
                return _KP_APP.get(ch, ch.encode())
            return ch.encode()

        if keysym == _BACKSPACE:
            return bytes([self.backspace])
        if keysym in (_TAB, _KP_TAB):
            return b"\t"
        if keysym == _LINEFEED:
            return b"\n"
        if keysym in (_RETURN, _KP_ENTER):
            return b"\r"
        if keysym == _ESCAPE:
            return b"\x1b"

        modified = self.shift or self.alt or self.meta
        if keysym in _EDITING:
            if modified:
                return self._modified_editing(keysym)
            if keysym in _HOME:
                return b"\x1b[1~" if self.linux_keys else b"\x1b[H"
            if keysym in _END:
                return b"\x1b[4~" if self.linux_keys else b"\x1b[F"
            return b"\x1b[%d~" % _TILDE[keysym]

        final = _ARROWS.get(keysym)
        if final is not None:
            if modified:
                return f"\x1b[1;{self._modifier_param()}{final}".encode()
            return ("\x1bO" if app_cursor else "\x1b[").encode() + final.encode()

        if keysym in _FUNCTION:
            if modified:
                return self._modified_function(keysym)
            letter = _F1_4.get(keysym)
            if letter is not None:
                if self.linux_keys and not self.vt100:
                    return _LINUX_F1_5[letter]
                return b"\x1bO" + letter.encode()
            if keysym == 0xFFC2 and self.linux_keys and not self.vt100:
                return b"\x1b[[E"  # F5 on the Linux console
            return b"\x1b[%d~" % _F5_12[keysym]
        return b""  # unknown key: nothing to send

    def _ctrl(self, keysym: int) -> bytes:
        if ord("@") <= keysym <= ord("_"):
            return bytes([keysym - ord("@")])
        if ord("a") <= keysym <= ord("z"):
            return bytes([keysym - ord("a") + 1])
        if keysym == ord("?"):
            return b"\x7f"
        if keysym in (ord("2"), ord(" ")):
            return b"\x00"
        if ord("3") <= keysym <= ord("7"):
            return bytes([keysym - ord("3") + 0x1B])
        if keysym == ord("/"):
            return b"\x1f"
        if keysym in _ARROWS:
            return f"\x1b[1;{self._modifier_param()}{_ARROWS[keysym]}".encode()
        if keysym in _FUNCTION:
            return self._modified_function(keysym)
        if keysym in _EDITING:
            return self._modified_editing(keysym)
        return b""

    def _modified_editing(self, keysym: int) -> bytes:
        mod = self._modifier_param()
        if keysym in _HOME:
            return (f"\x1b[1;{mod}~" if self.linux_keys else f"\x1b[1;{mod}H").encode()
        if keysym in _END:
            return (f"\x1b[4;{mod}~" if self.linux_keys else f"\x1b[1;{mod}F").encode()
        return f"\x1b[{_TILDE[keysym]};{mod}~".encode()

    def _modified_function(self, keysym: int) -> bytes:
        mod = self._modifier_param()
        letter = _F1_4.get(keysym)
        if letter is not None:
            return f"\x1b[1;{mod}{letter}".encode()
        return f"\x1b[{_F5_12[keysym]};{mod}~".encode()


def _unicode(keysym: int) -> int | None:
    """Code point of a Latin-1 or Unicode (0x01000000 + U) keysym."""
    if 0 <= keysym <= 0xFF:
        return keysym
    if keysym & 0xFF000000 == 0x01000000:
        cp = keysym & 0x00FFFFFF
        if cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
            return cp
    return None


def encode_paste(text: bytes, bracketed: bool) -> bytes:
    """Clipboard text as typed input; wrapped in ESC [200~ / ESC [201~ when the host
    enabled bracketed paste (an embedded end marker is removed so the paste cannot
    break out of the bracket)."""
    if not bracketed:
        return text
    return b"\x1b[200~" + text.replace(_PASTE_END, b"") + _PASTE_END


def focus_report(focused: bool) -> bytes:
    """What to send on focus change when the host enabled mode 1004."""
    return b"\x1b[I" if focused else b"\x1b[O"
