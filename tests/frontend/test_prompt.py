"""The in-terminal credential prompt, sans-I/O."""

from __future__ import annotations

from guacr.frontend.prompt import LinePrompt


def test_typing_editing_and_enter() -> None:
    p = LinePrompt(echo=True)
    assert p.feed(b"guesz") == b"guesz"
    assert p.feed(b"\x7f") == b"\x08 \x08"
    assert p.feed(b"t\rignored") == b"t\r\n"
    assert p.done and p.text == "guest"


def test_no_echo_and_ctrl_u() -> None:
    p = LinePrompt(echo=False)
    assert p.feed(b"secret") == b""
    assert p.feed(b"\x15") == b""
    assert p.text == ""
    assert p.feed("pässword\n".encode()) == b"\r\n"  # Enter still moves on
    assert p.done and p.text == "pässword"
