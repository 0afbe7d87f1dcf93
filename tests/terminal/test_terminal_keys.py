"""Keysym -> bytes vectors (guacd 1.6.1 behaviour plus the documented extensions)."""

from __future__ import annotations

import pytest

from guacr.terminal import KeyAction, KeyEncoder, encode_paste, focus_report

SHIFT, CTRL, ALT, META, SUPER = 0xFFE1, 0xFFE3, 0xFFE9, 0xFFE7, 0xFFEB
LEFT, UP, RIGHT, DOWN = 0xFF51, 0xFF52, 0xFF53, 0xFF54
HOME, END, INSERT, DELETE, PGUP, PGDN = 0xFF50, 0xFF57, 0xFF63, 0xFFFF, 0xFF55, 0xFF56
F = {n: 0xFFBE + n - 1 for n in range(1, 13)}
KP_0, KP_7, KP_MINUS, KP_ENTER, KP_F1, KP_HOME = 0xFFB0, 0xFFB7, 0xFFAD, 0xFF8D, 0xFF91, 0xFF95


def press(enc: KeyEncoder, keysym: int, *held: int, **modes: bool) -> bytes:
    for m in held:
        enc.key(m, True)
    result = enc.key(keysym, True, **modes)
    enc.key(keysym, False)
    for m in held:
        enc.key(m, False)
    assert result.action is KeyAction.INPUT, result
    return result.data


@pytest.mark.parametrize(
    "keysym, expected",
    [
        (ord("a"), b"a"),
        (0xE9, "é".encode()),  # Latin-1 keysym
        (0x01000000 | 0x20AC, "€".encode()),  # Unicode keysym
        (0x01000000 | 0x1F600, "😀".encode()),  # beyond the BMP
        (0xFF0D, b"\r"),
        (KP_ENTER, b"\r"),
        (0xFF09, b"\t"),
        (0xFF1B, b"\x1b"),
        (0xFF0A, b"\n"),
        (0xFF08, b"\x7f"),
        (LEFT, b"\x1b[D"),
        (UP, b"\x1b[A"),
        (0xFF97, b"\x1b[A"),  # KP_Up
        (HOME, b"\x1b[1~"),
        (END, b"\x1b[4~"),
        (KP_HOME, b"\x1b[1~"),
        (INSERT, b"\x1b[2~"),
        (DELETE, b"\x1b[3~"),
        (PGUP, b"\x1b[5~"),
        (PGDN, b"\x1b[6~"),
        (F[1], b"\x1b[[A"),
        (F[4], b"\x1b[[D"),
        (F[5], b"\x1b[[E"),
        (KP_F1, b"\x1b[[A"),
        (F[6], b"\x1b[17~"),
        (F[10], b"\x1b[21~"),
        (F[11], b"\x1b[23~"),
        (F[12], b"\x1b[24~"),
        (KP_7, b"7"),
        (KP_MINUS, b"-"),
        (0xFFBD, b"="),  # KP_Equal
        (0xFFC0 + 20, b""),  # F23: nothing
    ],
)
def test_plain_keys_linux_terminal(keysym: int, expected: bytes) -> None:
    assert press(KeyEncoder(), keysym) == expected


def test_xterm_terminal_type() -> None:
    enc = KeyEncoder(terminal_type="xterm-256color")
    assert press(enc, HOME) == b"\x1b[H" and press(enc, END) == b"\x1b[F"
    assert [press(enc, F[n]) for n in range(1, 6)] == [
        b"\x1bOP", b"\x1bOQ", b"\x1bOR", b"\x1bOS", b"\x1b[15~",
    ]  # fmt: skip


def test_vt100_function_keys_and_application_keypad() -> None:
    enc = KeyEncoder(func_keys_and_keypad="vt100")
    assert press(enc, F[1]) == b"\x1bOP" and press(enc, F[5]) == b"\x1b[15~"
    assert press(enc, KP_0) == b"0"  # numeric keypad mode
    assert press(enc, KP_0, application_keypad=True) == b"\x1bOp"
    assert press(enc, KP_7, application_keypad=True) == b"\x1bOw"
    assert press(enc, KP_MINUS, application_keypad=True) == b"\x1bOm"
    assert press(enc, 0xFFAB, application_keypad=True) == b"\x1bOM"  # KP_Add
    assert press(KeyEncoder(), KP_0, application_keypad=True) == b"0"  # "esc" ignores it


def test_application_cursor_keys() -> None:
    enc = KeyEncoder()
    assert press(enc, UP, application_cursor=True) == b"\x1bOA"
    assert press(enc, LEFT, application_cursor=True) == b"\x1bOD"
    assert press(enc, HOME, application_cursor=True) == b"\x1b[1~"  # DECCKM: arrows only


def test_backspace_parameter() -> None:
    assert press(KeyEncoder(backspace=8), 0xFF08) == b"\x08"
    with pytest.raises(ValueError):
        KeyEncoder(backspace=300)


@pytest.mark.parametrize(
    "keysym, expected",
    [
        (ord("a"), b"\x01"),
        (ord("z"), b"\x1a"),
        (ord("A"), b"\x01"),
        (ord("["), b"\x1b"),
        (ord("\\"), b"\x1c"),
        (ord("]"), b"\x1d"),
        (ord("^"), b"\x1e"),
        (ord("_"), b"\x1f"),
        (ord("@"), b"\x00"),
        (ord(" "), b"\x00"),
        (ord("2"), b"\x00"),
        (ord("3"), b"\x1b"),
        (ord("6"), b"\x1e"),
        (ord("7"), b"\x1f"),
        (ord("/"), b"\x1f"),
        (ord("?"), b"\x7f"),
        (LEFT, b"\x1b[1;5D"),
        (F[1], b"\x1b[1;5P"),
        (F[6], b"\x1b[17;5~"),
        (DELETE, b"\x1b[3;5~"),
        (HOME, b"\x1b[1;5~"),
        (0xFF09, b""),  # Ctrl+Tab: nothing
    ],
)
def test_ctrl(keysym: int, expected: bytes) -> None:
    assert press(KeyEncoder(), keysym, CTRL) == expected


def test_alt_and_meta_prefix_escape() -> None:
    enc = KeyEncoder()
    assert press(enc, ord("x"), ALT) == b"\x1bx"
    assert press(enc, ord("x"), SUPER) == b"\x1bx"
    assert press(enc, 0xFF08, ALT) == b"\x1b\x7f"
    assert press(enc, ord("a"), CTRL, ALT) == b"\x1b\x01"
    assert press(enc, LEFT, ALT) == b"\x1b[1;3D"  # modifiers go into the CSI instead
    assert press(enc, F[2], META) == b"\x1b[1;9Q"
    assert press(enc, 0xFFC0 + 20, ALT) == b""  # no lone ESC for a key that sends nothing


def test_shift_modified_keys() -> None:
    enc = KeyEncoder()
    assert press(enc, UP, SHIFT) == b"\x1b[1;2A"
    assert press(enc, END, SHIFT) == b"\x1b[4;2~"
    assert press(KeyEncoder(terminal_type="xterm"), END, SHIFT) == b"\x1b[1;2F"
    assert press(enc, F[12], SHIFT, CTRL) == b"\x1b[24;6~"
    assert press(enc, ord("A"), SHIFT) == b"A"
    assert press(enc, 0xFF09, SHIFT) == b"\x1b[Z"


def test_shortcuts_and_modifier_tracking() -> None:
    enc = KeyEncoder()
    assert enc.key(CTRL, True).action is KeyAction.NONE
    assert enc.key(SHIFT, True).action is KeyAction.NONE
    assert enc.key(ord("V"), True).action is KeyAction.PASTE
    assert enc.key(ord("C"), True).action is KeyAction.NONE  # Ctrl+Shift+C swallowed
    enc.key(CTRL, False)
    assert enc.key(PGUP, True).action is KeyAction.SCROLL_PAGE_UP
    assert enc.key(PGDN, True).action is KeyAction.SCROLL_PAGE_DOWN
    enc.key(SHIFT, False)
    assert enc.key(PGUP, True).data == b"\x1b[5~"
    enc.key(META, True)
    assert enc.key(ord("v"), True).action is KeyAction.PASTE
    enc.release_all()
    assert enc.key(ord("v"), True).data == b"v"
    assert enc.key(ord("v"), False).action is KeyAction.NONE


def test_paste_and_focus_helpers() -> None:
    assert encode_paste(b"ls\r", bracketed=False) == b"ls\r"
    assert encode_paste(b"a\x1b[201~b", bracketed=True) == b"\x1b[200~ab\x1b[201~"
    assert (focus_report(True), focus_report(False)) == (b"\x1b[I", b"\x1b[O")
