"""The damage contract: replaying scrolls as copies on a stale surface and redrawing
the listed rows must always reproduce the screen. Checked against random streams of
the operations full-screen programs use."""

from __future__ import annotations

import random

import pytest

from guacr.terminal import Damage, Run, Terminal

Surface = list[list[Run]]

TEXT = [b"hello", b"\x1b[31mred\x1b[0m", "日本".encode(), b"x" * 30, b"e\xcc\x81", b"\t|"]


def random_op(rng: random.Random, cols: int, rows: int) -> bytes:
    r = rng.randrange(rows) + 1
    c = rng.randrange(cols) + 1
    n = rng.randrange(1, 6)
    top = rng.randrange(1, rows)
    bottom = rng.randrange(top, rows + 1)
    return rng.choice(
        [
            rng.choice(TEXT),
            rng.choice(TEXT),
            b"\r\n",
            b"\r\n" * n,
            b"\n",
            f"\x1b[{r};{c}H".encode(),
            f"\x1b[{top};{bottom}r".encode(),  # scroll region
            b"\x1b[r",
            f"\x1b[{n}S".encode(),
            f"\x1b[{n}T".encode(),
            f"\x1b[{n}L".encode(),
            f"\x1b[{n}M".encode(),
            f"\x1b[{n}@".encode(),
            f"\x1b[{n}P".encode(),
            b"\x1bM",  # reverse index
            b"\x1bD",  # index
            rng.choice([b"\x1b[J", b"\x1b[1J", b"\x1b[2J", b"\x1b[K", b"\x1b[1K", b"\x1b[2K"]),
            f"\x1b[{n}X".encode(),
            b"\x1b[?1049h",
            b"\x1b[?1049l",
            b"\x1b[?5h\x1b[?5l",
            f"x\x1b[{n}b".encode(),
        ]
    )


def apply(surface: Surface, term: Terminal, damage: Damage) -> None:
    """What a renderer does with a Damage, on a model of the client's screen."""
    for s in damage.scrolls:
        region = surface[s.top : s.bottom]
        if s.lines > 0:
            moved = region[s.lines :] + [[]] * s.lines  # exposed rows: garbage
        else:
            moved = [[]] * -s.lines + region[: s.lines]
        surface[s.top : s.bottom] = moved
    for y in damage.rows:
        surface[y] = term.row_runs(y)


@pytest.mark.parametrize("seed", range(12))
def test_replaying_damage_reproduces_the_screen(seed: int) -> None:
    rng = random.Random(seed)
    cols, rows = rng.choice([(20, 6), (80, 24), (7, 3)])
    term = Terminal(cols, rows, 50)
    surface: Surface = [[] for _ in range(rows)]
    apply(surface, term, term.take_damage())
    scrolls_seen = 0
    for _ in range(300):
        for _ in range(rng.randrange(1, 6)):
            term.feed(random_op(rng, cols, rows))
        damage = term.take_damage()
        scrolls_seen += len(damage.scrolls)
        assert damage.rows == tuple(sorted(set(damage.rows)))
        apply(surface, term, damage)
        assert surface == [term.row_runs(y) for y in range(rows)]
    assert scrolls_seen > 0  # the stream did exercise the copy path


def test_bulk_scrolling_merges_into_one_copy() -> None:
    term = Terminal(80, 24)
    term.feed(b"x\r\n" * 30)
    term.take_damage()
    term.feed(b"".join(b"line %d\r\n" % i for i in range(5)))
    damage = term.take_damage()
    assert [tuple(s) for s in damage.scrolls] == [(0, 24, 5)]
    assert damage.rows == (18, 19, 20, 21, 22, 23)


def test_scrolling_a_whole_screen_or_more_is_a_plain_redraw() -> None:
    term = Terminal(10, 4)
    term.take_damage()
    term.feed(b"\r\n".join(b"%d" % i for i in range(20)))
    damage = term.take_damage()
    assert damage.scrolls == () and damage.rows == (0, 1, 2, 3)


def test_no_change_no_damage() -> None:
    term = Terminal(10, 4)
    term.take_damage()
    term.feed(b"\x1b[2;2H")  # cursor motion only: the renderer draws the cursor itself
    damage = term.take_damage()
    assert damage == Damage(False, (), (), False, None)
    assert term.cursor[:2] == (1, 1)


def test_bell_and_invalidate() -> None:
    term = Terminal(10, 4)
    term.take_damage()
    term.feed(b"\x07")
    assert term.take_damage().bell
    term.invalidate()
    assert term.take_damage().full


@pytest.mark.parametrize(
    "stream, text, title",
    [
        (b"a\x1b]2;T\x1b\x1b[31mb", "ab", "T"),  # OSC ended by ESC ESC [
        (b"a\x1bP$qm\x1b]2;T\x07b", "ab", "T"),  # DCS ended by the ESC of an OSC
        (b"a\x1b]2;T\x1bcb", "b", "T"),  # OSC ended by a full reset
        (b"a\x1b]2;T\x18b", "ab", ""),  # CAN aborts the OSC
        (b"a\x1b_x\x1b\x1b_y\x1b\\b", "ab", ""),  # APC, ESC ESC, another APC
        (b"a\x1b]2;A\x1b]2;B\x07b", "ab", "B"),  # OSC ended by another OSC
        (b"a\x1b\x1b]2;T\x07b", "ab", "T"),  # ESC ESC ]
        (b"\x1b[1;31\x1b]2;T\x07x\x1b[32mg", "xg", "T"),
    ],
)
def test_prescanner_edge_cases_in_any_split(stream: bytes, text: str, title: str) -> None:
    for split in range(len(stream) + 1):
        term = Terminal(20, 2)
        term.feed(stream[:split])
        term.feed(stream[split:])
        assert (term.row_text(0), term.title) == (text, title), split
    byte_by_byte = Terminal(20, 2)
    for b in stream:
        byte_by_byte.feed(bytes([b]))
    assert (byte_by_byte.row_text(0), byte_by_byte.title) == (text, title)
