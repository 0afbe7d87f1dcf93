"""Vectors for the guacd-style login matcher."""

from __future__ import annotations

import logging
import re

import pytest

from guacr.handlers.telnet.login import (
    DEFAULT_PASSWORD_REGEX,
    DEFAULT_USERNAME_REGEX,
    LoginAction,
    LoginFailed,
    LoginMatcher,
    LoginSucceeded,
    SendInput,
    posix_to_python,
)

USER = SendInput("username", b"guest\r")
PASS = SendInput("password", b"s3cret\r")


def matcher(**kwargs: str | None) -> LoginMatcher:
    args: dict[str, str | None] = {"username": "guest", "password": "s3cret"}
    args.update(kwargs)
    return LoginMatcher(**args)


def feed_all(m: LoginMatcher, chunks: list[bytes]) -> list[LoginAction]:
    actions: list[LoginAction] = []
    for chunk in chunks:
        actions += m.feed(chunk)
    return actions


def test_defaults_are_guacds() -> None:
    assert DEFAULT_USERNAME_REGEX == "[Ll]ogin:"
    assert DEFAULT_PASSWORD_REGEX == "[Pp]assword:"


def test_username_then_password_each_once() -> None:
    m = matcher()
    assert m.feed(b"\r\nvm login: ") == [USER]
    assert m.feed(b"guest\r\nPassword: ") == [PASS]
    # Later prompts are not answered again.
    assert m.feed(b"\r\nLogin incorrect\r\nvm login: Password: ") == []
    assert not m.active


def test_capitalised_prompts_and_no_credentials() -> None:
    assert matcher().feed(b"Login: ") == [USER]
    assert matcher().feed(b"password: ") == [PASS]
    m = LoginMatcher()
    assert not m.active
    assert m.feed(b"login: Password: ") == []
    # Empty strings mean "not set", as guacd reads empty parameters.
    m = LoginMatcher(username="", password="", username_regex="", password_regex="")
    assert m.feed(b"login: Password: ") == []
    # Only a password: the login prompt is left to the user.
    m = LoginMatcher(password="s3cret")
    assert m.feed(b"login: ") == []
    assert m.feed(b"x\r\nPassword:") == [PASS]


def test_password_stops_the_username_search() -> None:
    m = matcher()
    assert m.feed(b"Password: ") == [PASS]
    assert m.feed(b"\r\nlogin: ") == []


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_prompt_split_across_reads(size: int) -> None:
    stream = (
        b"Debian GNU/Linux 12\r\n\r\nvm \x1b[1mlog\x1b[0min: guest\r\n"
        b"\x1b]0;t\x07Pass\xc3\xa9 Password: "
    )
    m = matcher()
    actions = feed_all(m, [stream[i : i + size] for i in range(0, len(stream), size)])
    assert actions == [USER, PASS]


def test_escape_sequences_and_controls_do_not_hide_prompts() -> None:
    assert matcher().feed(b"\x1b[31;1mPass\x1b[0mword\x00:") == [PASS]
    assert matcher().feed(b"\x1b]0;title\x1b\\login:") == [USER]
    assert matcher().feed(b"\x1bP1$r0m\x1b\\\x1b(Blogin:") == [USER]
    assert matcher().feed(b"\x9b1mlogin:") == [USER]
    # A colour code arriving split over three reads.
    assert feed_all(matcher(), [b"lo\x1b", b"[3", b"2mgin:"]) == [USER]
    # Text after an unfinished OSC is held until the OSC ends.
    m = matcher()
    assert m.feed(b"\x1b]0;login: ") == []
    assert m.feed(b"x\x07 ok") == []
    assert m.feed(b"\r\nlogin: ") == [USER]


def test_regexes_see_one_line_at_a_time() -> None:
    m = matcher(username_regex="^login:", password_regex="word: $")
    assert m.feed(b"vm login: \r\n") == []
    assert m.feed(b"login: ") == [USER]
    # "$" matches at the end of the line (CR removed), not the end of the stream.
    assert m.feed(b"\r\nPassword: \r\nmore text") == [PASS]


def test_success_and_failure_pair() -> None:
    m = matcher(login_success_regex=r"[$#] $", login_failure_regex="Login incorrect")
    assert m.hold_output
    assert m.feed(b"login: ") == [USER]
    assert m.feed(b"guest\r\nPassword:") == [PASS]
    assert m.hold_output
    assert m.feed(b"\r\nguest@test:~") == []
    assert m.feed(b"$ ") == [LoginSucceeded()]
    assert not m.hold_output
    assert not m.active
    # Nothing is searched any more: not even the failure text.
    assert m.feed(b"Login incorrect\r\nPassword:") == []


def test_failure_ends_everything() -> None:
    m = matcher(login_success_regex=r"\$ $", login_failure_regex="Login incorrect")
    assert m.feed(b"login: ") == [USER]
    assert m.feed(b"guest\r\nPassword: ") == [PASS]
    actions = m.feed(b"\r\n\r\nLogin incorrect\r\nvm login: ")
    assert actions == [LoginFailed()]
    assert not m.active
    assert m.hold_output  # the connection is aborted; the terminal is never shown
    assert m.feed(b"guest@test:~$ ") == []


def test_success_wins_over_failure_on_one_line() -> None:
    m = matcher(login_success_regex="ok", login_failure_regex="fail")
    assert m.feed(b"ok fail") == [LoginSucceeded()]
    # In order: a failure on an earlier line comes first.
    m = matcher(login_success_regex="ok", login_failure_regex="fail")
    assert m.feed(b"fail\r\nok") == [LoginFailed()]


def test_success_before_password_stops_the_password() -> None:
    m = matcher(login_success_regex="Welcome", login_failure_regex="denied")
    assert m.feed(b"Welcome\r\nPassword: ") == [LoginSucceeded()]


@pytest.mark.parametrize("kwargs", [{"login_success_regex": "ok"}, {"login_failure_regex": "fail"}])
def test_half_a_pair_is_ignored_with_a_warning(
    kwargs: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        m = matcher(**kwargs)
    assert "login-success-regex and login-failure-regex" in caplog.text
    assert not m.hold_output
    assert m.feed(b"ok fail login:") == [USER]


def test_invalid_regex_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        m = matcher(username_regex="(unclosed", password_regex="[[:alpha:]")
    assert "username-regex" in caplog.text and "password-regex" in caplog.text
    assert m.feed(b"login: Password: (unclosed") == []
    assert not m.active
    # A broken success regex disables the pair.
    m = matcher(login_success_regex="(", login_failure_regex="x")
    assert not m.hold_output


def test_user_input_stops_credentials_but_not_outcome() -> None:
    m = matcher(login_success_regex=r"\$ $", login_failure_regex="incorrect")
    m.user_typed()
    assert m.feed(b"login: Password: ") == []
    assert m.active and m.hold_output
    assert m.feed(b"\r\nuser@host:~$ ") == [LoginSucceeded()]
    m = matcher()
    m.user_typed()
    assert not m.active
    assert m.feed(b"login:") == []


def test_long_lines_are_bounded_and_the_tail_still_matches() -> None:
    m = matcher()
    for _ in range(50):
        assert m.feed(b"x" * 10_000) == []
    assert len(m._line) <= 4096
    assert m.feed(b"login:") == [USER]
    # A runaway escape sequence is dropped rather than held forever.
    m = matcher()
    assert m.feed(b"\x1b]" + b"y" * 2000) == []
    assert m.feed(b"\r\nPassword:") == [PASS]


def test_non_ascii_credentials_and_no_password_in_repr() -> None:
    m = LoginMatcher(username="jürgen", password="pässwörd")
    assert m.feed(b"Login: ") == [SendInput("username", "jürgen\r".encode())]
    actions = m.feed("Passwort? no — Password:".encode())
    assert actions == [SendInput("password", "pässwörd\r".encode())]
    assert "pässwörd" not in repr(actions) and "p\\xc3" not in repr(actions)


@pytest.mark.parametrize(
    ("posix", "text", "found"),
    [
        ("[[:alpha:]]+@test:~[$#][[:space:]]*$", "guest@test:~$ ", True),
        ("[[:digit:]]{3}", "ab12c", False),
        ("[[:digit:]]{3}", "a123", True),
        ("[^[:space:]]x", " x", False),
        (r"[\]", "a\\b", True),  # backslash is literal inside POSIX brackets
        ("[]a]", "]", True),
        ("[^]a]", "]a", False),
        (r"\<word\>", "a word here", True),
        (r"\<word\>", "swordfish", False),
        ("[[:upper:][:digit:]_]+:", "USER_1:", True),
        ("a|b", "b", True),
        ("[[.-.]]", "-", True),
    ],
)
def test_posix_regex_translation(posix: str, text: str, found: bool) -> None:
    assert bool(re.search(posix_to_python(posix), text)) is found


def test_posix_unterminated_bracket_raises() -> None:
    with pytest.raises(re.error):
        posix_to_python("[abc")
