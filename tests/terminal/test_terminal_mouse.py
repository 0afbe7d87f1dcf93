"""xterm mouse report vectors."""

from __future__ import annotations

from guacr.terminal import MouseEncoding, MouseMode, MouseReporter, Terminal
from guacr.terminal.mouse import MASK_LEFT, MASK_RIGHT, MASK_SCROLL_DOWN, MASK_SCROLL_UP, MOD_CTRL

SGR, DEFAULT = MouseEncoding.SGR, MouseEncoding.DEFAULT


def test_no_tracking_sends_nothing() -> None:
    rep = MouseReporter()
    assert rep.update(1, 1, MASK_LEFT, mode=MouseMode.NONE, encoding=SGR) == b""


def test_normal_mode_default_encoding() -> None:
    rep = MouseReporter()
    m = MouseMode.NORMAL
    assert rep.update(0, 0, 0, mode=m, encoding=DEFAULT) == b""
    assert rep.update(2, 4, MASK_LEFT, mode=m, encoding=DEFAULT) == b"\x1b[M #%"
    assert rep.update(3, 4, MASK_LEFT, mode=m, encoding=DEFAULT) == b""  # no drag reports
    assert rep.update(3, 4, 0, mode=m, encoding=DEFAULT) == b"\x1b[M#$%"  # release = 3
    assert rep.update(3, 4, MASK_SCROLL_UP, mode=m, encoding=DEFAULT) == b"\x1b[M`$%"
    assert rep.update(3, 4, 0, mode=m, encoding=DEFAULT) == b""  # wheel release: nothing
    assert rep.update(3, 4, MASK_SCROLL_DOWN, mode=m, encoding=DEFAULT) == b"\x1b[Ma$%"
    far = rep.update(300, 0, MASK_RIGHT, mode=m, encoding=DEFAULT)
    assert far == b"\x1b[M\x22\xff!"  # column clamped to what one byte can carry


def test_sgr_encoding_with_drag_and_modifiers() -> None:
    rep = MouseReporter()
    m = MouseMode.BUTTON_EVENT
    assert rep.update(9, 19, MASK_LEFT, mode=m, encoding=SGR, modifiers=MOD_CTRL) == (
        b"\x1b[<16;10;20M"
    )
    assert rep.update(10, 19, MASK_LEFT, mode=m, encoding=SGR) == b"\x1b[<32;11;20M"
    assert rep.update(10, 19, 0, mode=m, encoding=SGR) == b"\x1b[<0;11;20m"
    assert rep.update(11, 19, 0, mode=m, encoding=SGR) == b""  # motion without button
    assert rep.update(1, 1, 0, mode=MouseMode.ANY_EVENT, encoding=SGR) == b"\x1b[<35;2;2M"


def test_x10_urxvt_and_utf8() -> None:
    rep = MouseReporter()
    assert rep.update(0, 0, MASK_LEFT, mode=MouseMode.X10, encoding=DEFAULT) == b"\x1b[M !!"
    assert rep.update(0, 0, 0, mode=MouseMode.X10, encoding=DEFAULT) == b""  # no release
    rep = MouseReporter()
    urxvt = MouseEncoding.URXVT
    assert rep.update(4, 5, MASK_RIGHT, mode=MouseMode.NORMAL, encoding=urxvt) == b"\x1b[34;5;6M"
    rep = MouseReporter()
    utf8 = MouseEncoding.UTF8
    assert rep.update(299, 0, MASK_LEFT, mode=MouseMode.NORMAL, encoding=utf8) == (
        b"\x1b[M " + chr(32 + 300).encode() + b"!"
    )


def test_modes_come_from_the_terminal() -> None:
    term = Terminal(80, 24)
    term.feed(b"\x1b[?1000h\x1b[?1006h")
    rep = MouseReporter()
    out = rep.update(0, 0, MASK_LEFT, mode=term.mouse_mode, encoding=term.mouse_encoding)
    assert out == b"\x1b[<0;1;1M"
