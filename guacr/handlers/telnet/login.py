"""guacd-style automatic telnet login: find prompts in the output and type credentials.

Telnet has no authentication of its own, so guacd watches the terminal output with
regular expressions (guacd-parameters ``username-regex``, ``password-regex``,
``login-success-regex``, ``login-failure-regex``) and types the configured username or
password followed by Return when a prompt appears. This module is the matcher only:
bytes in, actions out; the handler sends the typed text through the telnet core and
decides what to show.

Semantics kept from guacd:

* the username is typed at most once, only if a username is set (default prompt regex
  ``[Ll]ogin:``); the password likewise (``[Pp]assword:``);
* once the password has been typed the username is no longer searched for;
* success and failure regexes work only as a pair (one alone is ignored with a
  warning); while they are set the terminal stays hidden until success, a success
  match ends every search, a failure match ends every search and fails the login;
* any user keystroke stops the username and password searches (success and failure
  are still watched);
* patterns are POSIX extended regexes searched (unanchored) in each line of output and
  in the unfinished last line.

Improvements over guacd: a prompt split across reads is still found (guacd searches
each read on its own), and escape sequences and control characters are removed before
matching, so a colour code inside a prompt does not hide it.
"""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

DEFAULT_USERNAME_REGEX = "[Ll]ogin:"
DEFAULT_PASSWORD_REGEX = "[Pp]assword:"

# Longest line kept for matching (its tail: prompts end a line). guacd keeps 1024 bytes.
_MAX_LINE = 4096
# An escape sequence still open after this many characters is junk and is dropped.
_MAX_PENDING_ESCAPE = 512

# Complete escape sequences: CSI, OSC (BEL or ST terminated), DCS/SOS/PM/APC strings,
# 8-bit CSI, and two-byte or nF escapes. '[', ']', 'P', 'X', '^', '_' are excluded from
# the short form so an unfinished CSI/OSC is never mistaken for a complete escape.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b]*\x1b\\"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-OQ-WYZ\\`-~]"
)
# An escape sequence cut off by the end of a read.
_UNFINISHED_ESCAPE = re.compile(
    r"(?:\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[ -/]*)|\x9b[0-?]*[ -/]*)\Z"
)
# Control characters other than TAB and LF (CR included: it only moves the cursor).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "print": r" -~",
    "graph": r"!-~",
    "cntrl": r"\x00-\x1f\x7f",
    "xdigit": "0-9A-Fa-f",
}


def posix_to_python(pattern: str) -> str:
    """Translate the POSIX ERE parts Python's ``re`` reads differently.

    Handles bracket classes such as ``[[:space:]]``, the literal backslash inside a
    bracket expression, and GNU word boundaries ``\\<`` / ``\\>``.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            out.append(r"\b" if nxt in "<>" else ch + nxt)
            i += 2
        elif ch == "[":
            # Bracket expression: a leading '^' and then a leading ']' are literal.
            j = i + 1
            body = ["["]
            if j < n and pattern[j] == "^":
                body.append("^")
                j += 1
            if j < n and pattern[j] == "]":
                body.append(r"\]")
                j += 1
            closed = False
            while j < n:
                c = pattern[j]
                if c == "]":
                    closed = True
                    j += 1
                    break
                if c == "[" and pattern.startswith(("[:", "[=", "[."), j):
                    end = pattern.find(pattern[j + 1] + "]", j + 2)
                    if end >= 0:
                        name = pattern[j + 2 : end]
                        if pattern[j + 1] == ":" and name in _POSIX_CLASSES:
                            body.append(_POSIX_CLASSES[name])
                        else:  # collating element or equivalence class: the text itself
                            body.append(re.escape(name))
                        j = end + 2
                        continue
                body.append("\\" + c if c in "\\[" else c)
                j += 1
            if not closed:
                raise re.error("unterminated bracket expression", pattern, i)
            body.append("]")
            out.append("".join(body))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def compile_regex(name: str, pattern: str) -> re.Pattern[str] | None:
    """Compile a guacd POSIX regex parameter; None (logged) when it is invalid, as guacd."""
    try:
        return re.compile(posix_to_python(pattern))
    except re.error as exc:
        log.warning("Ignoring %s: invalid regular expression (%s)", name, exc)
        return None


@dataclass(frozen=True, slots=True)
class SendInput:
    """Type this into the session: a credential followed by Return."""

    what: Literal["username", "password"]
    data: bytes = field(repr=False)  # holds the password: never in logs or reprs


@dataclass(frozen=True, slots=True)
class LoginSucceeded:
    """The success regex matched: show the terminal."""


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """The failure regex matched: abort with guacd's 769 "Login failed"."""


LoginAction = SendInput | LoginSucceeded | LoginFailed


class LoginMatcher:
    """Watch terminal output for login prompts; produce what to type and the outcome."""

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        username_regex: str | None = None,
        password_regex: str | None = None,
        login_success_regex: str | None = None,
        login_failure_regex: str | None = None,
    ) -> None:
        # guacd reads an empty parameter as "not given" / "use the default".
        self._username = username or None
        self._password = password or None
        self._username_re = (
            compile_regex("username-regex", username_regex or DEFAULT_USERNAME_REGEX)
            if self._username
            else None
        )
        self._password_re = (
            compile_regex("password-regex", password_regex or DEFAULT_PASSWORD_REGEX)
            if self._password
            else None
        )
        self._success_re: re.Pattern[str] | None = None
        self._failure_re: re.Pattern[str] | None = None
        if bool(login_success_regex) != bool(login_failure_regex):
            log.warning(
                "Both login-success-regex and login-failure-regex must be given; "
                "ignoring the one that is set"
            )
        elif login_success_regex and login_failure_regex:
            self._success_re = compile_regex("login-success-regex", login_success_regex)
            self._failure_re = compile_regex("login-failure-regex", login_failure_regex)
            if self._success_re is None or self._failure_re is None:
                self._success_re = self._failure_re = None
        self._hold = self._success_re is not None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._escape_tail = ""
        self._line = ""

    @property
    def active(self) -> bool:
        """True while any search is still running."""
        return any(
            r is not None
            for r in (self._username_re, self._password_re, self._success_re, self._failure_re)
        )

    @property
    def hold_output(self) -> bool:
        """True while success/failure regexes are set and neither has matched yet.

        guacd does not show the terminal in that time; after a failure it stays hidden
        because the connection is aborted.
        """
        return self._hold

    def user_typed(self) -> None:
        """The user pressed a key: stop typing credentials for them (guacd does too)."""
        self._username_re = None
        self._password_re = None
        if not self.active:
            self._line = ""

    def feed(self, data: bytes) -> list[LoginAction]:
        """Scan application output; return what to type and login outcomes, in order."""
        if not self.active or not data:
            return []
        text = self._escape_tail + self._decoder.decode(data)
        text = _ESCAPE.sub("", text)
        tail = _UNFINISHED_ESCAPE.search(text)
        if tail is not None:
            self._escape_tail = text[tail.start() :]
            text = text[: tail.start()]
            if len(self._escape_tail) > _MAX_PENDING_ESCAPE:
                self._escape_tail = ""
        else:
            self._escape_tail = ""
        text = _CONTROL.sub("", text)

        actions: list[LoginAction] = []
        *complete, last = text.split("\n")
        for piece in complete:
            self._check(self._line + piece, actions)
            self._line = ""
            if not self.active:
                return actions
        if last:
            self._line = (self._line + last)[-_MAX_LINE:]
            self._check(self._line, actions)
        if not self.active:
            self._line = ""
        return actions

    def _check(self, line: str, actions: list[LoginAction]) -> None:
        """Test one line against each live regex, in guacd's order."""
        if self._username_re is not None and self._username_re.search(line):
            assert self._username is not None
            actions.append(SendInput("username", self._username.encode() + b"\r"))
            self._username_re = None
        if self._password_re is not None and self._password_re.search(line):
            assert self._password is not None
            actions.append(SendInput("password", self._password.encode() + b"\r"))
            self._password_re = None
            self._username_re = None  # the username prompt is behind us
        if self._success_re is not None and self._success_re.search(line):
            actions.append(LoginSucceeded())
            self._stop()
            self._hold = False
        elif self._failure_re is not None and self._failure_re.search(line):
            actions.append(LoginFailed())
            self._stop()

    def _stop(self) -> None:
        self._username_re = self._password_re = None
        self._success_re = self._failure_re = None
