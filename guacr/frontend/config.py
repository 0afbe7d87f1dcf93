"""The terminal parameters shared by SSH, Telnet and the database consoles (guacd's
terminal settings), parsed once per connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from guacr.contract.params import Params
from guacr.services.clipboard import CLIPBOARD_MIN, clipboard_limit

ARGV_NAMES: Final = ("color-scheme", "font-name", "font-size")


def normalize_newlines(data: bytes) -> bytes:
    """Pasted line ends become CR, as a terminal's Return key sends (guacd does too)."""
    return data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


@dataclass
class TerminalConfig:
    """The terminal parameters shared by ssh, telnet and kubernetes (guacd §4.0)."""

    font_name: str = "monospace"
    font_size: int = 12
    color_scheme: str = ""
    scrollback: int = 1000
    backspace: int = 127
    terminal_type: str = "linux"
    func_keys_and_keypad: str = ""
    disable_copy: bool = False
    disable_paste: bool = False
    clipboard_limit: int = CLIPBOARD_MIN
    typescript_path: str | None = None
    typescript_name: str = "typescript"
    create_typescript_path: bool = False
    typescript_write_existing: bool = False

    @classmethod
    def from_params(cls, params: Params, terminal_type: str = "linux") -> TerminalConfig:
        """Read the shared terminal parameters (missing ones take guacd's defaults)."""
        backspace = params.get_int("backspace", 127)
        size = params.get_int("font-size", 12)
        return cls(
            font_name=params.get("font-name") or "monospace",
            font_size=size if size > 0 else 12,
            color_scheme=params.get("color-scheme"),
            scrollback=max(0, params.get_int("scrollback", 1000)),
            backspace=backspace if 0 <= backspace <= 127 else 127,
            terminal_type=params.get("terminal-type") or terminal_type,
            func_keys_and_keypad=params.get("func-keys-and-keypad"),
            disable_copy=params.get_bool("disable-copy"),
            disable_paste=params.get_bool("disable-paste"),
            clipboard_limit=clipboard_limit(params),
            typescript_path=params.get_opt("typescript-path"),
            typescript_name=params.get("typescript-name") or "typescript",
            create_typescript_path=params.get_bool("create-typescript-path"),
            typescript_write_existing=params.get_bool("typescript-write-existing"),
        )
