"""Mouse selection, sans-I/O: drag, double/triple click, Shift extends, Alt block."""

from __future__ import annotations

from guacr.frontend.selection import CLICK_INTERVAL, Selector


def word(point: tuple[int, int]) -> tuple[int, int]:
    return 4, 9  # the word around any point, for these tests


def test_drag_selects_and_release_returns_it() -> None:
    s = Selector()
    assert not s.press((10, 2), 1.0, shift=False, cols=80, word=word)  # nothing yet
    assert not s.drag((10, 2), alt=False)  # no movement, no selection
    assert s.drag((11, 5), alt=False)
    sel = s.release()
    assert sel is not None and sel.bounds() == ((10, 2), (11, 5)) and not sel.block
    assert not s.selecting


def test_double_and_triple_click() -> None:
    s = Selector()
    s.press((3, 6), 1.0, shift=False, cols=80, word=word)
    s.release()
    assert s.press((3, 6), 1.0 + CLICK_INTERVAL / 2, shift=False, cols=80, word=word)
    assert s.selection is not None and s.selection.bounds() == ((3, 4), (3, 9))
    s.release()
    assert s.press((3, 6), 1.0 + CLICK_INTERVAL, shift=False, cols=80, word=word)
    assert s.selection is not None and s.selection.bounds() == ((3, 0), (3, 79))
    # a slow click starts over and clears
    s.release()
    assert s.press((3, 6), 5.0, shift=False, cols=80, word=word)
    assert s.selection is None


def test_shift_extends_and_alt_selects_a_block() -> None:
    s = Selector()
    s.press((1, 1), 1.0, shift=False, cols=80, word=word)
    s.drag((2, 3), alt=True)
    sel = s.release()
    assert sel is not None and sel.block and sel.columns(1, 80) == (1, 3)
    s.press((5, 0), 9.0, shift=True, cols=80, word=word)
    assert s.selection is not None and s.selection.bounds() == ((1, 1), (5, 0))
    assert s.clear() and s.selection is None and not s.clear()
