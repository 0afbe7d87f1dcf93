"""The sans-I/O line editor: editing keys, history, paste, continuation, and what it
draws, checked by feeding its output through guacr's own terminal emulator."""

from __future__ import annotations

import pytest

from guacr.frontend.line_editor import (
    ClearScreen,
    EndOfInput,
    History,
    Interrupt,
    LineEditor,
    Submit,
    cell_width,
)
from guacr.terminal import Terminal

LEFT, RIGHT, UP, DOWN = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B"
HOME_LINUX, END_LINUX, HOME_XTERM, END_XTERM = b"\x1b[1~", b"\x1b[4~", b"\x1b[H", b"\x1b[F"
DELETE, BACKSPACE = b"\x1b[3~", b"\x7f"


class Screen:
    """An editor whose output is drawn by the real emulator."""

    def __init__(self, cols: int = 40, rows: int = 10, **kw: object) -> None:
        self.term = Terminal(cols, rows, 100)
        self.ed = LineEditor(width=cols, **kw)  # type: ignore[arg-type]
        self.events: list[object] = []
        self.term.feed(self.ed.start())

    def feed(self, data: bytes) -> bytes:
        res = self.ed.feed(data)
        self.term.feed(res.output)
        if res.event is not None:
            self.events.append(res.event)
        return res.rest

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.term.lines()]

    def cursor(self) -> tuple[int, int]:
        c = self.term.cursor
        return c.row, c.col


def test_typing_echoes_and_enter_submits() -> None:
    s = Screen(prompt="db> ")
    s.feed(b"SELECT 1")
    assert s.lines()[0] == "db> SELECT 1"
    assert s.cursor() == (0, 12)
    s.feed(b"\r")
    assert s.events == [Submit("SELECT 1")]
    assert s.cursor() == (1, 0)
    assert not s.ed.active


def test_cursor_moves_insert_and_delete_in_the_middle() -> None:
    s = Screen(prompt="> ")
    s.feed(b"SELEC 1" + LEFT * 2 + b"T")
    assert s.lines()[0] == "> SELECT 1"
    assert s.cursor() == (0, 8)
    s.feed(HOME_LINUX + DELETE + b"s")
    assert s.lines()[0] == "> sELECT 1"
    assert s.cursor() == (0, 3)
    s.feed(END_XTERM + BACKSPACE + b"2")
    assert s.lines()[0] == "> sELECT 2"
    s.feed(HOME_XTERM + RIGHT * 3 + b"_")
    assert s.lines()[0] == "> sEL_ECT 2"
    s.feed(b"\r")
    assert s.events == [Submit("sEL_ECT 2")]


def test_ctrl_a_e_k_u_w_and_yank() -> None:
    s = Screen(prompt="> ")
    s.feed(b"select a, b from t")
    s.feed(b"\x01")  # Ctrl+A
    assert s.cursor() == (0, 2)
    s.feed(b"\x05")  # Ctrl+E
    assert s.cursor() == (0, 20)
    s.feed(b"\x17")  # Ctrl+W kills "t"
    assert s.lines()[0] == "> select a, b from"
    s.feed(b"\x17")  # and then "from "
    assert s.lines()[0] == "> select a, b"
    s.feed(LEFT * 4 + b"\x0b")  # Ctrl+K kills ", b "
    assert s.lines()[0] == "> select a"
    s.feed(b"\x19")  # Ctrl+Y yanks it back
    assert s.lines()[0] == "> select a, b"
    s.feed(b"\x15")  # Ctrl+U kills to the start
    assert s.lines()[0] == ">"
    assert s.ed.text == ""


def test_word_moves() -> None:
    s = Screen(prompt="")
    s.feed(b"one two three")
    s.feed(b"\x1b[1;5D")
    assert s.ed.cursor == 8
    s.feed(b"\x1bb")
    assert s.ed.cursor == 4
    s.feed(b"\x1b[1;5C")
    assert s.ed.cursor == 7


def test_history_walks_back_and_forth_keeping_the_draft() -> None:
    hist = History()
    s = Screen(prompt="> ", history=hist)
    for cmd in (b"first", b"second", b"second"):
        s.feed(cmd + b"\r")
        s.term.feed(s.ed.start())
    assert hist.entries == ["first", "second"]  # consecutive duplicates once
    s.feed(b"draft")
    s.feed(UP)
    assert s.ed.text == "second"
    assert s.lines()[-1] == "" or "> second" in s.lines()
    s.feed(UP + UP)  # stops at the oldest
    assert s.ed.text == "first"
    s.feed(DOWN + DOWN)
    assert s.ed.text == "draft"
    assert s.cursor()[1] == len("> draft")


def test_history_size_is_bounded() -> None:
    hist = History(size=3)
    for i in range(10):
        hist.add(f"q{i}")
    assert hist.entries == ["q7", "q8", "q9"]


def test_continuation_until_semicolon_and_multi_line_submit() -> None:
    s = Screen(
        prompt="sql> ",
        continuation_prompt="  -> ",
        needs_more=lambda text: not text.rstrip().endswith(";"),
    )
    s.feed(b"SELECT *\r")
    assert s.events == []
    assert s.lines()[:2] == ["sql> SELECT *", "  ->"]
    assert s.cursor() == (1, 5)
    s.feed(b"FROM t\r")
    s.feed(b"WHERE a = 1;\r")
    assert s.events == [Submit("SELECT *\nFROM t\nWHERE a = 1;")]
    assert s.lines()[:3] == ["sql> SELECT *", "  -> FROM t", "  -> WHERE a = 1;"]
    assert s.cursor() == (3, 0)


def test_editing_an_earlier_line_of_a_multi_line_input() -> None:
    s = Screen(prompt="> ", continuation_prompt=". ", needs_more=lambda t: not t.endswith(";"))
    s.feed(b"SELECT x\rFROM t")
    s.feed(UP)  # history is empty: nothing happens
    s.feed(LEFT * 7 + b"\x05")  # back onto line 1, then Ctrl+E: end of that line
    assert s.ed.cursor == len("SELECT x")
    s.feed(b", y")
    assert s.lines()[:2] == ["> SELECT x, y", ". FROM t"]
    s.feed(RIGHT + END_XTERM)  # over the line break, then to the end of line 2
    s.feed(b";\r")
    assert s.events == [Submit("SELECT x, y\nFROM t;")]


def test_long_input_wraps_and_edits_across_rows() -> None:
    s = Screen(cols=10, prompt="> ")
    s.feed(b"abcdefghijklmnopqrst")  # 2 + 20 = 22 cells: three rows
    assert s.lines()[:3] == ["> abcdefgh", "ijklmnopqr", "st"]
    assert s.cursor() == (2, 2)
    s.feed(b"\x01X")
    assert s.lines()[:3] == ["> Xabcdefg", "hijklmnopq", "rst"]
    assert s.cursor() == (0, 3)
    s.feed(b"\x05")
    assert s.cursor() == (2, 3)
    s.feed(BACKSPACE * 3)
    assert s.lines()[:3] == ["> Xabcdefg", "hijklmnopq", ""]
    assert s.cursor() == (2, 0)  # the text fills two rows exactly: cursor on the next


def test_wide_characters_never_straddle_a_row_end() -> None:
    assert cell_width("表") == 2 and cell_width("a") == 1 and cell_width("\u0301") == 0
    s = Screen(cols=6, prompt="> ")
    s.feed("ab表".encode())  # "> ab" is 4 cells; the wide char fits in cells 4-5
    s.feed("字".encode())  # would straddle: goes to the next row
    assert s.ed.text == "ab表字"
    assert s.cursor() == (1, 2)
    s.feed(LEFT)
    assert s.cursor() == (1, 0)


def test_bracketed_paste_inserts_text_and_runs_lines() -> None:
    s = Screen(prompt="> ", needs_more=lambda t: not t.endswith(";"))
    rest = s.feed(b"\x1b[200~SELECT 1;\nSELECT\x1b[D 2;\n\x1b[201~")
    assert s.events == [Submit("SELECT 1;")]
    s.term.feed(s.ed.start())
    rest = s.feed(rest)
    # the escape inside the paste was dropped, not taken as a cursor move
    assert s.events[-1] == Submit("SELECT[D 2;") or s.events[-1] == Submit("SELECT 2;")
    assert isinstance(s.events[-1], Submit) and "\x1b" not in s.events[-1].text
    s.term.feed(s.ed.start())
    s.feed(rest)  # the paste end marker
    s.feed(b"x")
    assert s.ed.text == "x"


def test_submit_returns_typed_ahead_input_as_rest() -> None:
    s = Screen(prompt="> ")
    rest = s.feed(b"one\rtwo\r")
    assert s.events == [Submit("one")]
    assert rest == b"two\r"
    assert s.ed.feed(b"ignored").rest == b"ignored"  # idle editor consumes nothing
    s.term.feed(s.ed.start())
    s.feed(rest)
    assert s.events == [Submit("one"), Submit("two")]


def test_ctrl_c_interrupts_and_ctrl_d_ends_input_only_when_empty() -> None:
    s = Screen(prompt="> ")
    s.feed(b"half typed\x03")
    assert s.events == [Interrupt()]
    assert s.lines()[0] == "> half typed^C"
    s.term.feed(s.ed.start())
    s.feed(b"ab" + LEFT + b"\x04")  # Ctrl+D deletes under the cursor
    assert s.ed.text == "a"
    s.feed(BACKSPACE + b"\x04")
    assert s.events[-1] == EndOfInput()


def test_ctrl_l_clears_the_screen_and_redraws_the_line() -> None:
    s = Screen(prompt="> ")
    s.term.feed(b"old output\r\n")
    s.term.feed(s.ed.start())
    s.feed(b"keep")
    s.feed(b"\x0c")
    assert s.events == [ClearScreen()]
    assert s.lines()[0] == "> keep"
    assert "old output" not in "\n".join(s.lines())


def test_escape_sequences_split_across_chunks() -> None:
    s = Screen(prompt="> ")
    s.feed(b"abc\x1b")
    s.feed(b"[")
    s.feed(b"D")
    s.feed("é".encode()[:1])
    s.feed("é".encode()[1:])
    assert s.ed.text == "abéc"


@pytest.mark.parametrize("key", [b"\x1bOA", b"\x10"])
def test_up_alternatives(key: bytes) -> None:
    hist = History()
    hist.add("prev")
    s = Screen(prompt="> ", history=hist)
    s.feed(key)
    assert s.ed.text == "prev"


def test_prompt_change_and_resize() -> None:
    s = Screen(cols=20, prompt="a> ")
    s.feed(b"x\r")
    s.term.feed(s.ed.start(prompt="other=> "))
    assert s.lines()[1] == "other=>"
    s.ed.resize(12)
    s.feed(b"0123456789")
    assert s.ed.text == "0123456789"
