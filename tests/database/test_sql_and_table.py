"""Unit tests of the console's sans-I/O parts: the SQL lexer (statement ends, first
keywords, MySQL executable comments), result tables and CSV records."""

from __future__ import annotations

import datetime
import decimal

import pytest

from guacr.handlers.database.console import csv_line
from guacr.handlers.database.sql import (
    Dialect,
    first_keyword,
    is_incomplete,
    split_statements,
    statement_words,
)
from guacr.handlers.database.table import NULL_SGR, format_table, safe_text

MY, PG = Dialect.MYSQL, Dialect.POSTGRESQL


@pytest.mark.parametrize(
    ("text", "dialect", "statements", "rest"),
    [
        ("SELECT 1; SELECT 2;", PG, ["SELECT 1", "SELECT 2"], ""),
        ("SELECT 'a;b'; x", PG, ["SELECT 'a;b'"], " x"),
        ("SELECT $f$ ; $f$;", PG, ["SELECT $f$ ; $f$"], ""),
        ("SELECT /* ; /* nested ; */ */ 1;", PG, ["SELECT /* ; /* nested ; */ */ 1"], ""),
        ("SELECT E'\\';' ;", PG, ["SELECT E'\\';'"], ""),
        ("SELECT 'it''s;';", PG, ["SELECT 'it''s;'"], ""),
        ("SELECT '\\';' ;", MY, ["SELECT '\\';'"], ""),
        ("SELECT 1 # ; comment\n;", MY, ["SELECT 1 # ; comment"], ""),
        ("SELECT `a;b` FROM t;", MY, ["SELECT `a;b` FROM t"], ""),
        ("-- only a comment;\n", PG, [], "-- only a comment;\n"),
        ("; ;", PG, [], ""),
    ],
)
def test_split_statements(text: str, dialect: Dialect, statements: list[str], rest: str) -> None:
    assert split_statements(text, dialect) == (statements, rest)


@pytest.mark.parametrize(
    ("text", "dialect", "incomplete"),
    [
        ("SELECT 1", PG, True),
        ("SELECT 1;", PG, False),
        ("SELECT 1; -- trailing comment", PG, False),
        ("SELECT 'open", PG, True),
        ("SELECT $$ body;", PG, True),
        ("/* open comment", MY, True),
        ("SELECT 1 /*! open executable", MY, True),
        ("", PG, False),
    ],
)
def test_is_incomplete(text: str, dialect: Dialect, incomplete: bool) -> None:
    assert is_incomplete(text, dialect) is incomplete


def test_first_keyword_sees_through_comments_and_parentheses() -> None:
    assert first_keyword("  /* x */ -- y\n (SELECT 1)", PG) == "SELECT"
    assert first_keyword("# c\nset @a = 1", MY) == "SET"
    # MySQL runs the inside of /*! ... */: guacr must read it as code too
    assert first_keyword("/*!50000 SET */ SESSION tx_read_only=0", MY) == "SET"
    assert first_keyword("/*M!100000 CALL */ p()", MY) == "CALL"
    assert first_keyword("/*!50000 SET */ x", PG) == "X"  # a plain comment in PostgreSQL
    assert first_keyword("'str'", PG) == ""


def test_statement_words_skip_strings() -> None:
    words = statement_words("SELECT 'INTO OUTFILE' AS x INTO OUTFILE '/tmp/f'", MY)
    assert words == ["SELECT", "AS", "X", "INTO", "OUTFILE"]


def test_table_alignment_null_and_control_characters() -> None:
    lines = format_table(
        ["id", "name", "price"],
        [(1, "apple", decimal.Decimal("0.50")), (10, None, None), (2, "a\x1b[2Jb\n", 3)],
    )
    assert lines[0] == lines[2] == lines[-1] == "+----+-------------+-------+"
    assert lines[1] == "| id | name        | price |"
    assert lines[3] == "|  1 | apple       |  0.50 |"
    assert NULL_SGR + "NULL" in lines[4]
    assert "\x1b[2J" not in lines[5] and "a\\x1b[2Jb\\n" in lines[5]
    assert safe_text("\x9b31m") == "\\x9b31m"


def test_wide_characters_align() -> None:
    lines = format_table(["k"], [("表",), ("ab",), ("abc",)])
    assert lines[3] == "| 表  |"
    assert lines[4] == "| ab  |"


def test_csv_records() -> None:
    assert csv_line([1, None, "", "a,b", 'q"x', "line\nbreak"]) == (
        '1,,"","a,b","q""x","line\nbreak"\r\n'
    )
    assert csv_line([datetime.datetime(2026, 1, 2, 3, 4, 5), b"\x01\xff", True]) == (
        "2026-01-02 03:04:05,\\x01ff,true\r\n"
    )
