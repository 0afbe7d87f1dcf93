"""X11 keysyms -> RDP scancodes for guacd's ``server-layout`` names.

RDP carries key *positions* (scancodes); the server's keyboard layout turns them into
characters. So a character keysym from the Guacamole client is looked up in a table of
what the server layout produces at each position, with the modifiers needed (Shift,
AltGr); keys that are not characters (F1, arrows, Ctrl...) have fixed scancodes; a
character the layout lacks is sent as a Unicode keyboard event instead.

Scancodes here are set-1 "make" codes; 0x100 marks the E0-extended ones.
"""

from __future__ import annotations

from dataclasses import dataclass

EXT = 0x100
SHIFT = 1
ALTGR = 2

SC_LSHIFT = 0x2A
SC_RSHIFT = 0x36
SC_ALTGR = 0x38 | EXT

# Keys with the same position on every layout (X11 keysym -> scancode).
FIXED: dict[int, int] = {
    0xFF1B: 0x01,  # Escape
    0xFF08: 0x0E,  # BackSpace
    0xFF09: 0x0F,  # Tab
    0xFE20: 0x0F,  # ISO_Left_Tab (Shift+Tab)
    0xFF0D: 0x1C,  # Return
    0xFFE1: SC_LSHIFT,
    0xFFE2: SC_RSHIFT,
    0xFFE3: 0x1D,  # Control_L
    0xFFE4: 0x1D | EXT,  # Control_R
    0xFFE9: 0x38,  # Alt_L
    0xFFEA: 0x38 | EXT,  # Alt_R
    0xFE03: SC_ALTGR,  # ISO_Level3_Shift (AltGr)
    0xFFE7: 0x5B | EXT,  # Meta_L
    0xFFE8: 0x5C | EXT,  # Meta_R
    0xFFEB: 0x5B | EXT,  # Super_L
    0xFFEC: 0x5C | EXT,  # Super_R
    0xFF67: 0x5D | EXT,  # Menu
    0xFFE5: 0x3A,  # Caps_Lock
    0xFF7F: 0x45,  # Num_Lock
    0xFF14: 0x46,  # Scroll_Lock
    0xFF61: 0x37 | EXT,  # Print
    0xFF50: 0x47 | EXT,  # Home
    0xFF51: 0x4B | EXT,  # Left
    0xFF52: 0x48 | EXT,  # Up
    0xFF53: 0x4D | EXT,  # Right
    0xFF54: 0x50 | EXT,  # Down
    0xFF55: 0x49 | EXT,  # Page_Up
    0xFF56: 0x51 | EXT,  # Page_Down
    0xFF57: 0x4F | EXT,  # End
    0xFF63: 0x52 | EXT,  # Insert
    0xFFFF: 0x53 | EXT,  # Delete
    0xFF8D: 0x1C | EXT,  # KP_Enter
    0xFFAA: 0x37,  # KP_Multiply
    0xFFAB: 0x4E,  # KP_Add
    0xFFAD: 0x4A,  # KP_Subtract
    0xFFAE: 0x53,  # KP_Decimal
    0xFFAF: 0x35 | EXT,  # KP_Divide
    0xFF95: 0x47,  # KP_Home
    0xFF96: 0x4B,  # KP_Left
    0xFF97: 0x48,  # KP_Up
    0xFF98: 0x4D,  # KP_Right
    0xFF99: 0x50,  # KP_Down
    0xFF9A: 0x49,  # KP_Page_Up
    0xFF9B: 0x51,  # KP_Page_Down
    0xFF9C: 0x4F,  # KP_End
    0xFF9E: 0x52,  # KP_Insert
    0xFF9F: 0x53,  # KP_Delete
}
FIXED.update({0xFFBE + i: 0x3B + i for i in range(10)})  # F1..F10
FIXED.update({0xFFC8: 0x57, 0xFFC9: 0x58})  # F11, F12
FIXED.update(
    {
        0xFFB0 + d: sc
        for d, sc in enumerate((0x52, 0x4F, 0x50, 0x51, 0x4B, 0x4C, 0x4D, 0x47, 0x48, 0x49))
    }
)  # KP_0..KP_9

# Lock keys -> their TS_SYNC_EVENT toggle flag (Scroll, Num, Caps, Kana Lock).
SYNC_SCROLL, SYNC_NUM, SYNC_CAPS, SYNC_KANA = 0x1, 0x2, 0x4, 0x8
LOCK_MASK = SYNC_SCROLL | SYNC_NUM | SYNC_CAPS | SYNC_KANA
LOCK_FLAGS = {0xFF14: SYNC_SCROLL, 0xFF7F: SYNC_NUM, 0xFFE5: SYNC_CAPS, 0xFF2D: SYNC_KANA}
# Keypad digits type digits only with Num Lock on (guacd's keymaps: "+num").
KEYPAD_DIGITS = frozenset(range(0xFFB0, 0xFFBA))

MODIFIER_KEYSYMS = {0xFFE1: SHIFT, 0xFFE2: SHIFT, 0xFE03: ALTGR, 0xFFEA: 0}

# Dead keys as X11 keysyms (guacamole-common-js sends these for dead keys).
DEAD = {"\u00b4": 0xFE51, "`": 0xFE50, "^": 0xFE52, "¨": 0xFE57, "~": 0xFE53}

_ROW_CODES = (
    (0x29, *range(0x02, 0x0E)),  # `1234567890-=
    (*range(0x10, 0x1C), 0x2B),  # qwertyuiop[] and backslash
    tuple(range(0x1E, 0x29)),  # asdfghjkl;'
    (0x56, *range(0x2C, 0x36)),  # ISO <> key, then zxcvbnm,./
)


@dataclass(frozen=True)
class Layout:
    """What one server layout types: character keysym -> (scancode, modifiers)."""

    name: str
    keyboard_layout: int  # Windows KLID, sent in the Client Core Data
    keys: dict[int, tuple[int, int]]
    # Letters: with Caps Lock on, the key types the other case (Shift inverts it).
    caps: frozenset[int] = frozenset()


def keysym_of(ch: str) -> int:
    """X11 keysym of a character (Latin-1 direct, else the Unicode range)."""
    cp = ord(ch)
    if ch == "€":
        return 0x20AC
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
        return cp
    return 0x1000000 | cp


def codepoint_of(keysym: int) -> int | None:
    """The character a keysym types, if it is a character keysym."""
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return keysym
    if keysym & 0xFF000000 == 0x01000000:
        return keysym & 0xFFFFFF
    if keysym == 0x20AC:
        return 0x20AC
    return None


def _layout(
    name: str, klid: int, rows: tuple[str, ...], shifted: tuple[str, ...], altgr: str = ""
) -> Layout:
    """Build a layout from its four rows (plain, shifted) and "<char><hex scancode>" AltGr
    pairs; on layouts with dead keys, the rows' accent characters are the dead keys."""
    dead_keys = bool(altgr)
    keys: dict[int, tuple[int, int]] = {0x20: (0x39, 0)}  # space
    for mods, table in ((SHIFT, shifted), (0, rows)):
        for codes, chars in zip(_ROW_CODES, table, strict=True):
            for code, ch in zip(codes, chars, strict=False):
                if ch == " ":
                    continue  # no character at this position
                dead = dead_keys and ch in DEAD
                keysym = DEAD[ch] if dead else keysym_of(ch)
                keys.setdefault(keysym, (code, mods))
    caps: set[int] = set()
    for plain_row, shifted_row in zip(rows, shifted, strict=True):
        for plain, upper in zip(plain_row, shifted_row, strict=False):
            if plain.isalpha() and plain != upper and plain.upper() == upper:
                caps.update((keysym_of(plain), keysym_of(upper)))
    for pair in altgr.split():
        ch, code = pair[0], int(pair[1:], 16)
        keys.setdefault(keysym_of(ch), (code, ALTGR))
    return Layout(name, klid, keys, frozenset(caps))


LAYOUTS: dict[str, Layout] = {
    "en-us-qwerty": _layout(
        "en-us-qwerty",
        0x409,
        ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", " zxcvbnm,./"),
        ("~!@#$%^&*()_+", "QWERTYUIOP{}|", 'ASDFGHJKL:"', " ZXCVBNM<>?"),
    ),
    "de-de-qwertz": _layout(
        "de-de-qwertz",
        0x407,
        ("^1234567890ß\u00b4", "qwertzuiopü+#", "asdfghjklöä", "<yxcvbnm,.-"),
        ('°!"§$%&/()=?`', "QWERTZUIOPÜ*'", "ASDFGHJKLÖÄ", ">YXCVBNM;:_"),
        "²03 ³04 {08 [09 ]0a }0b \\0c @10 €12 ~1b |56 µ32",
    ),
    "fr-fr-azerty": _layout(
        "fr-fr-azerty",
        0x40C,
        ("²&é\"'(-è_çà)=", "azertyuiop^$*", "qsdfghjklmù", "<wxcvbn,;:!"),
        (" 1234567890°+", "AZERTYUIOP¨£µ", "QSDFGHJKLM%", ">WXCVBN?./§"),
        "~03 #04 {05 [06 |07 `08 \\09 ^0a @0b ]0c }0d €12 ¤1b",
    ),
}
DEFAULT_LAYOUT = "en-us-qwerty"
