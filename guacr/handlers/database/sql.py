"""SQL text as a console sees it: statement ends, first keywords, words outside strings.

This is a lexer, not a parser: it knows where strings, quoted identifiers and comments
start and end in each dialect, so a ``;`` inside ``'a;b'`` or a ``$$`` function body does
not end a statement. The console uses it to decide when a statement is complete (the
continuation prompt), to split typed input into statements, and to classify them.

It is *not* the read-only guarantee: the engines make the server enforce that. Where
the lexer and the server could disagree (MySQL's ``/*! ... */`` executable comments,
backslash escapes), the lexer takes the server's reading: executable comments are code.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Dialect",
    "Token",
    "first_keyword",
    "split_statements",
    "statement_words",
    "tokenize",
]


class Dialect(enum.Enum):
    """Lexical rules of one SQL engine family."""

    MYSQL = "mysql"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Token:
    """One lexical unit: ``word``, ``string``, ``ident`` (quoted), ``semicolon``, ``other``."""

    kind: str
    text: str
    start: int


_WORD: Final = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER: Final = re.compile(r"[0-9][0-9A-Za-z_.]*")
_DOLLAR_TAG: Final = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_EXEC_COMMENT: Final = re.compile(r"/\*M?!\d*")


class _Unterminated(Exception):
    """Input ended inside a string, quoted identifier or comment."""


def tokenize(text: str, dialect: Dialect) -> tuple[list[Token], bool]:
    """Tokens of ``text`` without whitespace and comments, and whether it ended cleanly.

    ``False`` means the text stopped inside a string, identifier or comment (the
    statement needs more lines).
    """
    tokens: list[Token] = []
    try:
        for tok in _lex(text, dialect):
            tokens.append(tok)
    except _Unterminated:
        return tokens, False
    return tokens, True


def _lex(text: str, dialect: Dialect) -> Iterator[Token]:
    mysql = dialect is Dialect.MYSQL
    i, n = 0, len(text)
    exec_comment = False  # inside MySQL /*! ... */: the content is code
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        two = text[i : i + 2]
        if exec_comment and two == "*/":
            exec_comment = False
            i += 2
            continue
        if two == "--" and (not mysql or i + 2 >= n or text[i + 2].isspace()):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "#" and mysql:
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if two == "/*":
            m = _EXEC_COMMENT.match(text, i) if mysql else None
            if m is not None and not exec_comment:
                exec_comment = True
                i = m.end()
                continue
            i = _skip_block_comment(text, i, nested=not mysql)
            continue
        if c == "'" or (c in "eE" and text[i + 1 : i + 2] == "'" and not mysql):
            start = i
            if c != "'":
                i += 1
            backslash = mysql or c in "eE"
            i = _skip_quoted(text, i, "'", backslash)
            yield Token("string", text[start:i], start)
            continue
        if c == '"':
            start = i
            i = _skip_quoted(text, i, '"', mysql)
            yield Token("string" if mysql else "ident", text[start:i], start)
            continue
        if c == "`" and mysql:
            start = i
            i = _skip_quoted(text, i, "`", False)
            yield Token("ident", text[start:i], start)
            continue
        if c == "$" and not mysql:
            m = _DOLLAR_TAG.match(text, i)
            if m is not None:
                end = text.find(m.group(0), m.end())
                if end < 0:
                    raise _Unterminated
                start, i = i, end + len(m.group(0))
                yield Token("string", text[start:i], start)
                continue
        if c == ";":
            yield Token("semicolon", c, i)
            i += 1
            continue
        m = _WORD.match(text, i)
        if m is not None:
            yield Token("word", m.group(0), i)
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m is not None:
            yield Token("other", m.group(0), i)
            i = m.end()
            continue
        yield Token("other", c, i)
        i += 1
    if exec_comment:
        raise _Unterminated


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    """Index after the quoted item starting at ``i`` (doubled quotes escape)."""
    j, n = i + 1, len(text)
    while j < n:
        c = text[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if text[j + 1 : j + 2] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    raise _Unterminated


def _skip_block_comment(text: str, i: int, nested: bool) -> int:
    depth, j, n = 1, i + 2, len(text)
    while j < n:
        two = text[j : j + 2]
        if two == "*/":
            depth -= 1
            j += 2
            if depth == 0:
                return j
            continue
        if nested and two == "/*":
            depth += 1
            j += 2
            continue
        j += 1
    raise _Unterminated


def split_statements(text: str, dialect: Dialect) -> tuple[list[str], str]:
    """Complete statements (text before each ``;``, stripped) and the unfinished rest."""
    tokens, _ = tokenize(text, dialect)
    out: list[str] = []
    start = 0
    for tok in tokens:
        if tok.kind == "semicolon":
            stmt = text[start : tok.start].strip()
            if stmt and _has_code(stmt, dialect):
                out.append(stmt)
            start = tok.start + 1
    return out, text[start:]


def _has_code(text: str, dialect: Dialect) -> bool:
    tokens, complete = tokenize(text, dialect)
    return bool(tokens) or not complete


def is_incomplete(text: str, dialect: Dialect) -> bool:
    """True while ``text`` has code after its last ``;`` (or ends inside a string)."""
    tokens, complete = tokenize(text, dialect)
    if not complete:
        return True
    return bool(tokens) and tokens[-1].kind != "semicolon"


def statement_words(stmt: str, dialect: Dialect) -> list[str]:
    """Upper-cased words of ``stmt`` outside strings, quoted identifiers and comments."""
    tokens, _ = tokenize(stmt, dialect)
    return [t.text.upper() for t in tokens if t.kind == "word"]


def first_keyword(stmt: str, dialect: Dialect) -> str:
    """The statement's first word, upper-cased ('' if none); leading ``(`` is skipped."""
    tokens, _ = tokenize(stmt, dialect)
    for t in tokens:
        if t.kind == "word":
            return t.text.upper()
        if t.text != "(":
            return ""
    return ""
