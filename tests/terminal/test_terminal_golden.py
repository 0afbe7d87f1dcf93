"""Golden screens: real programs' output (captured on a PTY by capture.py) replayed
into the engine must give the screens tmux, an independent emulator, showed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from guacr.terminal import (
    ATTR_BLINK,
    ATTR_BOLD,
    ATTR_CURLY_UNDERLINE,
    ATTR_DOUBLE_UNDERLINE,
    ATTR_ITALIC,
    ATTR_REVERSE,
    ATTR_STRIKE,
    ATTR_UNDERLINE,
    DEFAULT_COLOR,
    TRUECOLOR,
    MouseMode,
    ScrollEvent,
    Terminal,
)

CAPTURED = Path(__file__).parent / "captured"

# golden name -> (cols, rows, capture parts fed in order)
GOLDEN = {
    "ls.out": (80, 24, ["ls.out"]),
    "vi.open": (80, 24, ["vi.open"]),
    "vi.quit": (80, 24, ["vi.open", "vi.quit"]),
    "vilong.open": (80, 24, ["vilong.open"]),
    "vilong.scrolled": (80, 24, ["vilong.open", "vilong.scrolled"]),
    "vilong.back": (80, 24, ["vilong.open", "vilong.scrolled", "vilong.back"]),
    "less.open": (80, 24, ["less.open"]),
    "less.page2": (80, 24, ["less.open", "less.page2"]),
    "less.quit": (80, 24, ["less.open", "less.page2", "less.quit"]),
    "top.out": (100, 30, ["top.out"]),
    "colors.out": (40, 5, ["colors.out"]),
    "wide.out": (30, 5, ["wide.out"]),
}


def _bytes(part: str) -> bytes:
    return (CAPTURED / f"{part}.bin").read_bytes()


def _golden(name: str, rows: int) -> list[str]:
    lines = (CAPTURED / f"{name}.screen.txt").read_text(encoding="utf-8").split("\n")[:rows]
    return [line.rstrip(" ") for line in lines] + [""] * (rows - len(lines))


def _replay(cols: int, rows: int, parts: list[str]) -> Terminal:
    term = Terminal(cols, rows)
    for part in parts:
        term.feed(_bytes(part))
    return term


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_screen_matches_golden(name: str) -> None:
    cols, rows, parts = GOLDEN[name]
    assert _replay(cols, rows, parts).lines() == _golden(name, rows)


@pytest.mark.parametrize("name", ["vi.quit", "vilong.back", "less.quit", "top.out"])
def test_any_split_of_the_stream_gives_the_same_screen(name: str) -> None:
    cols, rows, parts = GOLDEN[name]
    data = b"".join(_bytes(p) for p in parts)
    rng = random.Random(name)
    for _ in range(3):
        term = Terminal(cols, rows)
        pos = 0
        while pos < len(data):
            step = rng.choice((1, 1, 2, 3, 7, 64))
            term.feed(data[pos : pos + step])
            pos += step
        assert term.lines() == _golden(name, rows)


def test_ls_colours() -> None:
    term = _replay(80, 24, ["ls.out"])
    colored = {
        run.text: (run.fg, run.attrs)
        for y in range(24)
        for run in term.row_runs(y)
        if run.fg != DEFAULT_COLOR
    }
    # ls's built-in colours: directory 01;34, symlink 01;36, executable 01;32
    assert colored == {"subdir": (4, ATTR_BOLD), "link": (6, ATTR_BOLD), "run.sh": (2, ATTR_BOLD)}


def test_vi_uses_and_restores_the_alternate_screen_and_modes() -> None:
    term = _replay(80, 24, ["vi.open"])
    assert term.alt_screen_active
    assert term.application_cursor_keys and term.application_keypad
    assert term.bracketed_paste and term.focus_events
    assert term.mouse_mode is MouseMode.NONE  # started with -u NONE: no mouse
    assert term.row_runs(3)[0].text.startswith("~") and term.row_runs(3)[0].fg == 12
    # vim's probes: two cursor position reports, secondary DA, OSC 10/11 colour queries
    assert term.output_to_host() == (
        b"\x1b[2;2R\x1b[3;1R\x1b[>0;100;0c"
        b"\x1b]10;rgb:9999/9999/9999\x07\x1b]11;rgb:0000/0000/0000\x07"
    )
    term.feed(_bytes("vi.quit"))
    assert not term.alt_screen_active
    assert not (term.application_cursor_keys or term.application_keypad)
    assert not (term.bracketed_paste or term.focus_events)
    assert term.lines()[:2] == ["before vi", "after vi"]
    assert term.cursor[:2] == (2, 0)


def test_vi_scroll_is_reported_as_copy_of_the_scroll_region() -> None:
    term = _replay(80, 24, ["vilong.open"])
    term.take_damage()
    term.feed(_bytes("vilong.scrolled"))  # three Ctrl-E: region 1-23 scrolls up 3 lines
    damage = term.take_damage()
    assert damage.scrolls == (ScrollEvent(0, 23, 3),)
    assert damage.rows == (20, 21, 22, 23)
    term.feed(_bytes("vilong.back"))  # Ctrl-Y: insert line at top of the region
    damage = term.take_damage()
    assert damage.scrolls == (ScrollEvent(0, 23, -1),)
    assert damage.rows == (0,)
    assert term.row_text(0) == "line 002 of the long file"


def test_top_scrolled_its_first_line_into_history() -> None:
    term = _replay(100, 30, ["top.out"])
    assert term.scrollback_len == 1
    assert term.row_text(-1).startswith("top - ")
    header = term.row_runs(5)[0]
    assert header.text.lstrip().startswith("PID USER") and header.attrs & ATTR_REVERSE


def test_256_and_truecolor_sgr() -> None:
    term = _replay(40, 5, ["colors.out"])
    cells = {c.text: c for c in term.row_cells(0) if c.text.strip()}
    assert (cells["A"].fg, cells["A"].bg) == (196, DEFAULT_COLOR)
    assert (cells["B"].fg, cells["B"].bg) == (196, 21)
    assert cells["C"].fg == TRUECOLOR | 0x0A141E
    assert (cells["D"].fg, cells["D"].bg) == (TRUECOLOR | 0x0A141E, TRUECOLOR | 0xC86432)
    e = cells["E"]
    assert e.bold and e.italic and e.underline and e.blink and e.reverse and e.strike
    assert e.attrs == ATTR_BOLD | ATTR_ITALIC | ATTR_UNDERLINE | ATTR_BLINK | ATTR_REVERSE | (
        ATTR_STRIKE
    )
    assert cells["F"].fg == 9  # SGR 91: bright red
    assert cells["G"].attrs == ATTR_UNDERLINE | ATTR_CURLY_UNDERLINE  # SGR 4:3
    assert cells["H"].attrs == ATTR_UNDERLINE | ATTR_DOUBLE_UNDERLINE  # SGR 21


def test_wide_and_combining_characters() -> None:
    term = _replay(30, 5, ["wide.out"])
    runs = term.row_runs(0)
    assert [(r.col, r.width, r.text) for r in runs if r.cluster][:3] == [
        (0, 2, "日"),
        (2, 2, "本"),
        (4, 2, "語"),
    ]
    combined = next(r for r in runs if r.text.startswith("e"))
    assert (combined.col, combined.width, combined.text, combined.cluster) == (
        15,
        1,
        "e\u0301",
        True,
    )
    # the line wrapped: 30 columns were full, so "é̂z" continues on row 1
    assert term.row_wrapped(1) and not term.row_wrapped(0)
    assert term.row_runs(1)[0].text == "\u00e9\u0302"
    cells = term.row_cells(0)
    assert len(cells) == 30 and cells[0] == ("日", 2, -1, -1, 0) and cells[1].width == 0
    assert term.text_range((0, 0), (1, 30)) == "日本語テキスト|e\u0301x|한국어|ａｂ|\u00e9\u0302z"


def test_terminals_in_parallel_threads() -> None:
    # feed() runs without the GIL: separate terminals must not share native state
    from concurrent.futures import ThreadPoolExecutor

    names = ["vi.quit", "vilong.back", "less.quit", "top.out"] * 3

    def run(name: str) -> bool:
        cols, rows, parts = GOLDEN[name]
        term = Terminal(cols, rows)
        data = b"".join(_bytes(p) for p in parts)
        for i in range(0, len(data), 16):
            term.feed(data[i : i + 16])
        return term.lines() == _golden(name, rows)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, names))
