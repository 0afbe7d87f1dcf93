"""Emulator rows to cell keys (guacr.frontend.cells): one interned key per cell, trailing
blanks of a run at once, per-style lookups that agree with the plain intern table."""

from __future__ import annotations

from guacr.frontend import cells as cells_mod
from guacr.frontend.cells import CellKeys
from guacr.terminal import Terminal


def _term(text: bytes, cols: int = 20) -> Terminal:
    t = Terminal(cols, 3, 0)
    t.feed(text)
    return t


def test_row_has_one_key_per_cell_and_blank_tail() -> None:
    t = _term(b"ab c")
    keys = CellKeys().row(t, 0)
    assert len(keys) == 20
    assert [k[0] for k in keys[:4]] == ["a", "b", "", "c"]
    assert all(k[0] == "" for k in keys[4:])
    assert len({id(k) for k in keys[4:]}) == 1  # the same interned blank
    assert keys[2] is keys[4]  # a blank inside the text is that blank too


def test_equal_cells_are_the_same_object_across_rows_and_calls() -> None:
    t = _term(b"hello\r\nhello \x1b[1mhello\x1b[0m")
    ck = CellKeys()
    r0, r1 = ck.row(t, 0), ck.row(t, 1)
    assert r0[:5] == r1[:5] and all(a is b for a, b in zip(r0[:5], r1[:5], strict=True))
    assert r1[6] != r1[0] and r1[6][0] == "h"  # bold: another key
    again = ck.row(t, 0)
    assert all(a is b for a, b in zip(again, r0, strict=True))


def test_new_non_ascii_texts_are_noted_once() -> None:
    t = _term("é and é".encode())
    ck = CellKeys()
    ck.row(t, 0)
    assert ck.take_new_texts() == {"é"}
    ck.row(t, 0)
    assert ck.take_new_texts() == set()


def test_keys_stay_equal_after_the_intern_table_starts_over(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    t = _term(b"abc")
    ck = CellKeys()
    first = ck.row(t, 0)
    monkeypatch.setattr(cells_mod, "INTERN_MAX", 0)
    ck.row(t, 0)  # over the limit: tables cleared
    monkeypatch.setattr(cells_mod, "INTERN_MAX", 65536)
    later = ck.row(t, 0)
    assert later == first
    assert later[0] is ck.row(t, 0)[0]  # interned again
