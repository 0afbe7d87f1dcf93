"""guacd's in-terminal prompts ("Login as: ", "Password: "): one line typed by a user
before the host is reached, sans-I/O (keys in, echo bytes and the finished line out)."""

from __future__ import annotations


class LinePrompt:
    """One prompt being answered: Backspace, Ctrl+U, Enter; echo optional (passwords)."""

    __slots__ = ("done", "echo", "text")

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.text = ""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Typed bytes in; what to show in the terminal out. Sets ``done`` at Enter
        (the rest of ``data`` is dropped, as a prompt takes one line)."""
        out = bytearray()
        for ch in data.decode("utf-8", "replace"):
            if ch in "\r\n":
                out += b"\r\n"
                self.done = True
                break
            if ch in "\x7f\x08":
                if self.text:
                    self.text = self.text[:-1]
                    if self.echo:
                        out += b"\x08 \x08"
            elif ch == "\x15":  # Ctrl+U: start over
                if self.echo and self.text:
                    out += b"\x08 \x08" * len(self.text)
                self.text = ""
            elif ch >= " ":
                self.text += ch
                if self.echo:
                    out += ch.encode()
        return bytes(out)
