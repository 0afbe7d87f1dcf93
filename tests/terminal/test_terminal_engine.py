"""Behaviour of `Terminal`: screen operations, modes, answers, scrollback, resize."""

from __future__ import annotations

import pytest

from guacr.terminal import (
    DEFAULT_COLOR,
    MouseEncoding,
    MouseMode,
    OscEvent,
    Palette,
    ScrollEvent,
    Terminal,
    native,
)
from guacr.terminal.colors import parse_color_scheme
from guacr import native_build


def term_with(data: bytes, cols: int = 20, rows: int = 5, scrollback: int = 100) -> Terminal:
    term = Terminal(cols, rows, scrollback)
    term.feed(data)
    return term


def test_text_and_cursor() -> None:
    term = term_with(b"hello\r\nworld")
    assert term.lines() == ["hello", "world", "", "", ""]
    assert term.cursor[:3] == (1, 5, True)
    term.feed(b"\x1b[?25l")
    assert term.cursor.visible is False


def test_runs_tile_the_row() -> None:
    term = term_with(b"ab\x1b[1;31mcd\x1b[0m")
    runs = term.row_runs(0)
    assert [(r.col, r.width, r.text, r.fg, r.attrs) for r in runs] == [
        (0, 2, "ab", DEFAULT_COLOR, 0),
        (2, 2, "cd", 1, 1),
        (4, 16, " " * 16, DEFAULT_COLOR, 0),
    ]


def test_rep_repeats_the_last_character() -> None:
    assert term_with(b"ab\x1b[3bc").row_text(0) == "abbbbc"


def test_su_and_sd() -> None:
    term = term_with(b"1\r\n2\r\n3\r\n4\r\n5")
    term.take_damage()
    term.feed(b"\x1b[2S")  # scroll up two: lines leave through the top into history
    assert term.lines() == ["3", "4", "5", "", ""]
    assert [term.row_text(-2), term.row_text(-1)] == ["1", "2"]
    damage = term.take_damage()
    assert damage.scrolls == (ScrollEvent(0, 5, 2),) and damage.rows == (3, 4)
    term.feed(b"\x1b[1T")  # scroll down one
    assert term.lines() == ["", "3", "4", "5", ""]
    assert term.take_damage().scrolls == (ScrollEvent(0, 5, -1),)


def test_insert_and_delete_characters_and_lines() -> None:
    term = term_with(b"abcdef\x1b[1;3H\x1b[2@XY")
    assert term.row_text(0) == "abXYcdef"
    term.feed(b"\x1b[1;2H\x1b[3P")  # delete three characters at column 2
    assert term.row_text(0) == "acdef"
    term.feed(b"\r\nl2\r\nl3\x1b[2;1H\x1b[L")  # insert a line at row 2
    assert term.lines()[:4] == ["acdef", "", "l2", "l3"]
    term.feed(b"\x1b[M")  # and delete it again
    assert term.lines()[:3] == ["acdef", "l2", "l3"]
    term.feed(b"\x1b[1;1H\x1b[2X")  # erase two characters
    assert term.row_text(0) == "  def"


def test_tab_stops() -> None:
    term = term_with(b"a\tb", cols=30)
    assert term.row_text(0) == "a       b"
    term.feed(b"\r\n\x1b[3g\x1b[4G\x1bH\r\tX\tY")  # clear all stops, set one at col 3
    assert term.row_text(1) == "   X" + " " * 25 + "Y"  # no stop left: tab goes to the margin
    term.feed(b"\x1bc\x1b[2I!")  # reset restores the every-8 stops; CHT 2
    assert term.row_text(0) == "                !"


def test_wide_character_overwrite_clears_both_halves() -> None:
    term = term_with("日本".encode())
    term.feed(b"\x1b[1;2Hx")  # overwrite the right half of 日
    assert term.row_text(0) == " x本"
    assert [c.width for c in term.row_cells(0)[:4]] == [1, 1, 2, 0]


def test_alternate_screen_1049_restores_screen_and_cursor() -> None:
    term = term_with(b"shell prompt$ ")
    term.feed(b"\x1b[?1049h")
    assert term.alt_screen_active and term.lines() == ["", "", "", "", ""]
    term.feed(b"\x1b[3;3Hfull screen app")
    term.feed(b"\x1b[?1049l")
    assert not term.alt_screen_active
    assert term.lines()[0] == "shell prompt$" and term.cursor[:2] == (0, 14)
    assert term.take_damage().full


def test_alternate_screen_1047_and_1048() -> None:
    term = term_with(b"main")
    term.feed(b"\x1b[?1048h\x1b[?1047h\x1b[5;5Halt")
    assert term.row_text(4) == "    alt"
    term.feed(b"\x1b[?1047l\x1b[?1048l")
    assert term.lines()[0] == "main" and term.cursor[:2] == (0, 4)


def test_alternate_screen_has_no_scrollback() -> None:
    term = term_with(b"\x1b[?1049h" + b"x\r\n" * 10)
    assert term.scrollback_len == 0


def test_reset_leaves_the_alternate_screen() -> None:
    term = term_with(b"main\x1b[?1049h\x1b[?1h\x1b[?2004h\x1b[?1000halt")
    term.feed(b"\x1bc")
    assert not term.alt_screen_active and term.lines() == ["", "", "", "", ""]
    assert not term.application_cursor_keys and not term.bracketed_paste
    assert modes(term)[0] is MouseMode.NONE
    # soft reset (DECSTR): modes, pen and margins reset; screen and mouse tracking stay
    term.feed(b"\x1b[?1049h\x1b[?1h\x1b[?1000h\x1b[2;4r\x1b[1mX\x1b[!pY")
    assert term.alt_screen_active and not term.application_cursor_keys
    assert modes(term)[0] is MouseMode.NORMAL
    assert [(c.text, c.bold) for c in term.row_cells(0)[:2]] == [("X", True), ("Y", False)]
    term.feed(b"\x1b[5;1H\n")  # margins are gone: the whole screen scrolls
    assert term.lines() == ["", "", "", "", ""]


def test_dsr_da_and_enq_answers() -> None:
    term = term_with(b"abc\x1b[5n\x1b[6n\x1b[c\x05")
    assert term.output_to_host() == b"\x1b[0n\x1b[1;4R\x1b[?1;2cGUACAMOLE"
    assert term.output_to_host() == b""
    other = Terminal(10, 2, answerback=b"")
    other.feed(b"\x05")
    assert other.output_to_host() == b""


def test_decrqss_dcs_reaches_libvterm() -> None:
    term = term_with(b"\x1b[1;31m\x1bP$qm\x1b\\")
    assert term.output_to_host() == b"\x1bP1$r1;31m\x1b\\"


def test_title_from_osc_0_and_2_even_split_and_long() -> None:
    term = Terminal(20, 5)
    title = "a long window title " * 10  # longer than libvterm's 64-byte buffer
    data = f"\x1b]2;{title}\x1b\\".encode()
    for i in range(0, len(data), 7):
        term.feed(data[i : i + 7])
    assert term.title == title
    damage = term.take_damage()
    assert damage.title == title
    assert term.take_damage().title is None
    term.feed("\x1b]0;ünïcode\x07".encode())
    assert term.title == "ünïcode" and term.take_damage().title == "ünïcode"
    assert term.lines() == ["", "", "", "", ""]  # nothing of it printed


def test_apc_pm_sos_strings_are_not_printed() -> None:
    term = term_with(b"a\x1b_apc payload\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x1b\\d")
    assert term.row_text(0) == "abcd"


def test_osc_interrupting_a_csi_does_not_corrupt_the_parser() -> None:
    term = term_with(b"\x1b[1;\x1b]2;t\x07xyz")
    assert term.row_text(0) == "xyz" and term.title == "t"


def test_osc_ended_by_another_sequence() -> None:
    term = term_with(b"\x1b]2;first\x1b[31mred")
    assert term.title == "first"
    assert term.row_runs(0)[0][2:4] == ("red", 1)


def test_unhandled_osc_goes_to_the_caller() -> None:
    term = term_with(b"\x1b]482200;/tmp/file.txt\x07\x1b]777;notify;x\x1b\\\x1b]nonnum\x07")
    assert term.take_osc() == [OscEvent(482200, "/tmp/file.txt"), OscEvent(777, "notify;x")]
    assert term.take_osc() == []


def test_osc_4_10_11_104_palette() -> None:
    term = Terminal(10, 2, palette=parse_color_scheme("green-black"))
    term.take_damage()
    term.feed(b"\x1b]4;1;rgb:12/34/56;2;?\x1b\\")
    assert term.palette.colors[1] == (0x12, 0x34, 0x56)
    assert term.output_to_host() == b"\x1b]4;2;rgb:3e3e/9999/3e3e\x1b\\"
    assert term.take_damage().full
    term.feed(b"\x1b]10;?\x07\x1b]11;red\x07\x1b]11;?\x07")
    assert term.output_to_host() == (
        b"\x1b]10;rgb:3e3e/9999/3e3e\x07\x1b]11;rgb:ffff/0000/0000\x07"
    )
    term.feed(b"\x1b]104\x07\x1b]111\x07")
    assert term.palette == parse_color_scheme("green-black")
    term.feed(b"\x1b]4;5;blue\x07\x1bc")
    assert term.palette.colors[5] == Palette().colors[5]  # RIS restores the scheme


def modes(term: Terminal) -> tuple[MouseMode, MouseEncoding]:
    """Read through a call so type checkers do not narrow the properties between feeds."""
    return term.mouse_mode, term.mouse_encoding


def test_modes() -> None:
    term = Terminal(10, 2)
    assert modes(term) == (MouseMode.NONE, MouseEncoding.DEFAULT)
    term.feed(b"\x1b[?1;2004;1002;1006h\x1b=")
    assert term.application_cursor_keys and term.bracketed_paste and term.application_keypad
    assert modes(term) == (MouseMode.BUTTON_EVENT, MouseEncoding.SGR) and term.mouse_sgr
    term.feed(b"\x1b[?1003h")
    assert modes(term)[0] is MouseMode.ANY_EVENT
    term.feed(b"\x1b[?1002l")  # resetting a mode that is not active changes nothing
    assert modes(term)[0] is MouseMode.ANY_EVENT
    term.feed(b"\x1b[?1003l\x1b[?9h\x1b[?1015h")
    assert modes(term) == (MouseMode.X10, MouseEncoding.URXVT)
    term.feed(b"\x1b[?1000h\x1b[?1005h\x1b[?1l\x1b[?2004l\x1b>")
    assert modes(term) == (MouseMode.NORMAL, MouseEncoding.UTF8)
    assert not (term.application_cursor_keys or term.bracketed_paste or term.application_keypad)
    term.feed(b"\x1b[?5h")
    assert term.reverse_video and term.take_damage().full


def test_mode_sequence_split_across_writes() -> None:
    term = Terminal(10, 2)
    for byte in b"\x1b[?1;2004h":
        term.feed(bytes([byte]))
    assert term.application_cursor_keys and term.bracketed_paste


def test_scrollback_order_limit_and_counter() -> None:
    term = Terminal(10, 3, scrollback=5)
    term.feed(b"\r\n".join(b"line%d" % i for i in range(10)))
    assert term.lines() == ["line7", "line8", "line9"]
    assert term.scrollback_len == 5 and term.scrollback_limit == 5
    assert [term.row_text(-i) for i in range(1, 6)] == ["line6", "line5", "line4", "line3", "line2"]
    assert "".join(r.text for r in term.scrollback_row(0)).rstrip() == "line2"
    assert term.scrollback_pushed == 7
    with pytest.raises(IndexError):
        term.row_runs(-6)
    with pytest.raises(IndexError):
        term.row_runs(3)
    term.set_scrollback_limit(2)
    assert term.scrollback_len == 2 and term.row_text(-2) == "line5"
    term.clear_scrollback()
    assert term.scrollback_len == 0 and term.scrollback_pushed == 7


def test_scrollback_keeps_colours() -> None:
    term = Terminal(10, 1, scrollback=5)
    term.feed(b"\x1b[32mgreen\x1b[0m\r\nnext")
    assert term.row_runs(-1)[0][2:4] == ("green", 2)


def test_zero_scrollback() -> None:
    term = Terminal(10, 2, scrollback=0)
    term.feed(b"a\r\nb\r\nc")
    assert term.scrollback_len == 0 and term.lines() == ["b", "c"]


def test_resize_shrink_pushes_to_history_and_grow_pulls_back() -> None:
    term = Terminal(10, 5, scrollback=10)
    term.feed(b"1\r\n2\r\n3\r\n4\r\n5")
    term.take_damage()
    term.resize(10, 3)
    assert term.lines() == ["3", "4", "5"] and term.cursor[:2] == (2, 1)
    assert term.scrollback_len == 2
    damage = term.take_damage()
    assert damage.full and damage.rows == (0, 1, 2)
    term.resize(10, 6)
    assert term.lines() == ["1", "2", "3", "4", "5", ""] and term.cursor[:2] == (4, 1)
    assert term.scrollback_len == 0


def test_resize_drops_blank_rows_below_cursor_first() -> None:
    term = Terminal(10, 5)
    term.feed(b"top")
    term.resize(10, 2)
    assert term.lines() == ["top", ""] and term.scrollback_len == 0


def test_resize_keeps_the_cursor_row_on_screen() -> None:
    term = Terminal(10, 5)
    term.feed(b"a\r\nb\r\nc\r\nd\r\ne\x1b[2;1H")  # cursor on "b", text below it
    term.resize(10, 2)
    assert term.lines() == ["b", "c"] and term.cursor[:2] == (0, 0)
    assert term.row_text(-1) == "a"  # only the rows above the cursor went to history


def test_resize_columns() -> None:
    term = term_with(b"abcdefghij", cols=10, rows=2)
    term.resize(4, 2)
    assert term.lines()[0] == "abcd" and term.cols == 4
    term.resize(8, 2)
    assert term.lines()[0] == "abcd"
    term.feed(b"\x1b[1;8HZ")
    assert term.row_text(0) == "abcd   Z"
    with pytest.raises(ValueError):
        term.resize(0, 2)
    with pytest.raises(ValueError):
        Terminal(2000, 10)


def test_history_line_narrower_than_screen_is_padded() -> None:
    term = Terminal(4, 1, scrollback=5)
    term.feed(b"abcd\r\nx")
    term.resize(8, 1)
    runs = term.row_runs(-1)
    assert sum(r.width for r in runs) == 8 and term.row_text(-1) == "abcd"


def test_wrapped_lines_and_text_range() -> None:
    term = Terminal(5, 4)
    term.feed(b"abcdefgh\r\nxy  \r\nend")
    assert term.lines() == ["abcde", "fgh", "xy", "end"]
    assert [term.row_wrapped(y) for y in range(4)] == [False, True, False, False]
    assert term.text_range((0, 0), (3, 5)) == "abcdefgh\nxy\nend"
    assert term.text_range((0, 3), (1, 2)) == "defg"
    assert term.text_range((1, 1), (0, 3)) == "def"  # corners in either order
    assert term.text_block((0, 1), (2, 2)) == "bc\ngh\ny"


def test_exactly_full_line_then_crlf_is_not_a_wrap() -> None:
    term = term_with(b"abcde\r\nfg", cols=5)
    assert not term.row_wrapped(1)
    assert term.text_range((0, 0), (1, 5)) == "abcde\nfg"


def test_wrap_flag_survives_scrolling_into_history() -> None:
    term = Terminal(3, 2, scrollback=10)
    term.feed(b"abcdefgh")
    assert term.lines() == ["def", "gh"] and term.row_text(-1) == "abc"
    assert term.row_wrapped(0) and term.row_wrapped(1)
    assert term.text_range((-1, 0), (1, 3)) == "abcdefgh"


def test_closed_terminal_frees_native_memory() -> None:
    term = Terminal(10, 2)
    term.close()
    assert term.closed
    term.close()  # idempotent


def test_missing_libvterm_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_LIBVTERM_SONAME", "libvterm-does-not-exist.so.0")
    with pytest.raises(native.NativeLibraryError, match="libvterm0"):
        native.load()


def test_build_without_compiler_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_build, "_compiler", lambda: None)
    with pytest.raises(native.NativeLibraryError, match="libvterm-dev"):
        native.build()


def test_shrinking_below_the_scroll_region_top_is_safe() -> None:
    # libvterm 0.1.4 keeps a top margin past the new bottom and then memmoves a
    # negative size on the next line feed; the engine repairs the region on resize
    term = Terminal(20, 40)
    term.feed(b"\x1b[20;30r\x1b[25;3Hmid")
    term.resize(20, 10)
    term.feed(b"\x1b[10;1H\x1b[2Klast\n\n\rafter")
    assert term.lines()[-3:] == ["last", "", "after"]
    term.feed(b"\x1b[2J\x1b[5;8r")  # a region that still fits is left alone
    term.resize(20, 9)
    term.feed(b"\x1b[8;1Hx\ny")
    assert term.row_text(6) == "x" and term.row_text(7) == " y"


def test_random_input_keeps_invariants() -> None:
    import random

    rng = random.Random(7)
    alphabet = b"\x1b[]?;0123456789hlmHJKLMPSTX@brn\x07\x05\x18\\_P\x00\x7f\r\n\t\x08 aZ"
    alphabet += "日é\u0301".encode()
    for _ in range(30):
        term = Terminal(rng.randint(1, 60), rng.randint(1, 20), rng.choice([0, 3, 50]))
        for _ in range(40):
            if rng.random() < 0.15:
                term.resize(rng.randint(1, 60), rng.randint(1, 20))
            term.feed(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 80))))
            damage = term.take_damage()
            assert all(0 <= y < term.rows for y in damage.rows)
            for y in range(-term.scrollback_len, term.rows):
                runs = term.row_runs(y)
                assert runs[0].col == 0 and sum(r.width for r in runs) == term.cols
                assert all(a.col + a.width == b.col for a, b in zip(runs, runs[1:], strict=False))
            row, col = term.cursor[:2]
            assert 0 <= row < term.rows and 0 <= col < term.cols
            term.output_to_host()


def test_faint_sgr_2() -> None:
    # libvterm 0.1.4 drops SGR 2; guacd draws it half-bright, so the engine keeps it
    term = term_with(b"a\x1b[2mb\x1b[38;5;2mc\x1b[22md\x1b[2;1me\x1b[mf\x1b[38;2;2;2;2mg\x1b[;2mh")
    assert [(c.text, c.faint) for c in term.row_cells(0)[:8]] == [
        ("a", False), ("b", True), ("c", True), ("d", False),
        ("e", True), ("f", False), ("g", False), ("h", True),
    ]  # fmt: skip
    assert term.row_cells(0)[2].fg == 2  # 38;5;2 is a colour, not faint
    term.feed(b"\x1bc.")
    assert not term.row_cells(0)[0].faint


def test_uncollected_answers_are_bounded() -> None:
    term = Terminal(10, 2)
    for _ in range(40):
        term.feed(b"\x1b[6n" * 10_000)
    assert 0 < len(term.output_to_host()) <= 1 << 20


@pytest.mark.parametrize(
    "stream, text, col",
    [
        (b"\x1b[999b", "", 0),  # REP before any character: libvterm 0.1.4 would hang
        ("\u0301\x1b[5b".encode(), "\u0301", 0),  # last glyph of width 0: same
        (b"x\x1b#8\x1b[2b", "ExxEEEEEEE", 3),  # DECALN does not change what REP repeats
        (b"\x1b#8\x1b[2b", "EEEEEEEEEE", 0),
        (b"ab\xc2\x80\xc2\x9fc\xc2\xa0d", "abc\xa0d", 5),  # UTF-8 C1 controls are dropped
    ],
)
def test_libvterm_rep_and_c1_defects_are_contained(stream: bytes, text: str, col: int) -> None:
    for split in range(len(stream) + 1):
        term = Terminal(10, 2)
        term.feed(stream[:split])
        term.feed(stream[split:])
        assert (term.row_text(0), term.cursor.col) == (text, col), split


@pytest.mark.parametrize("restore", [b"\x1b8", b"\x1b[?1048l", b"\x1b[?1049h\x1b[?1049l"])
def test_saved_cursor_beyond_a_shrunk_screen_is_clamped(restore: bytes) -> None:
    # libvterm 0.1.4 restores a saved position unchecked and then indexes its line
    # table with it; the engine clamps it right after every restore
    term = Terminal(20, 30)
    save = b"\x1b[?1049h" if restore.startswith(b"\x1b[?1049h") else b"\x1b7"
    term.feed(b"\x1b[25;15H" + (b"\x1b7" if save == b"\x1b7" else b"\x1b[?1048h"))
    term.resize(10, 8)
    term.feed(restore.replace(b"\x1b[?1049h", b""))
    assert term.cursor[:2] == (7, 9)
    term.feed(b"\x1b[2L\x1b[M\x1bHx\r\n\r\n")
    assert term.cursor[:2] == (7, 0)


def test_double_width_line_requests_are_ignored() -> None:
    # drawn as normal lines (guacd does the same); in libvterm 0.1.4 they can move the
    # cursor to column -1 on a one-column screen
    term = Terminal(1, 3)
    term.feed(b"\x1b#6\x1b[5I\x1bHa\x1b#3b\x1b#4")
    assert term.cursor.col == 0 and term.lines() == ["a", "b", ""]
    wide = term_with(b"\x1b#6ab")
    assert wide.row_text(0) == "ab"
