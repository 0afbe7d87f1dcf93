"""Parser vectors (guacd's own, reference §8.1) fed whole, byte by byte and with tails."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guacr.errors import InstructionTooLong, ProtocolError
from guacr.protocol import parser as parser_mod
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Parser, parse_exact

X = "\u72ac\U00010b00z\u00e1"  # 4 code points, 10 UTF-8 bytes

# Property tests run a bounded number of cases in the suite; set GUACR_FUZZ_EXAMPLES
# (e.g. 200000) to run them longer on demand.
FUZZ = int(os.environ.get("GUACR_FUZZ_EXAMPLES", "300"))
assert len(X.encode()) == 10


def feed_all(data: bytes, step: int | None = None) -> list[tuple[str, ...]]:
    p = Parser()
    if step is None:
        return p.receive_data(data)
    out = []
    for i in range(0, len(data), step):
        out.extend(p.receive_data(data[i : i + step]))
    return out


VECTORS = [
    (
        b"4.test,8.testdata,5.zxcvb,13.guacamoletest;",
        [("test", "testdata", "zxcvb", "guacamoletest")],
    ),
    (
        f"4.test,6.a{X}b,5.12345,10.a{X}{X}c;5.test2,10.hellohello,15.worldworldworld;".encode(),
        [("test", f"a{X}b", "12345", f"a{X}{X}c"), ("test2", "hellohello", "worldworldworld")],
    ),
    (b"0.;", [("",)]),
    (b"4.test,0.;", [("test", "")]),
    (b"5.mouse,3.512,3.384,1.1;", [("mouse", "512", "384", "1")]),
    (b"4.blob,5.a,b;c;", [("blob", "a,b;c")]),  # values may contain , and ;
    (b"3.a.b,3.;;;;", [("a.b", ";;;")]),
    (b"04.sync,01.5;", [("sync", "5")]),  # leading zeros, like guacd's digit loop
]


@pytest.mark.parametrize("data,expected", VECTORS)
@pytest.mark.parametrize("step", [None, 1, 3, 7])
def test_vectors(data: bytes, expected: list[tuple[str, ...]], step: int | None) -> None:
    assert feed_all(data, step) == expected


def test_trailing_bytes_stay_for_the_next_instruction() -> None:
    p = Parser()
    assert p.receive_data(b"4.test,8.testdata,5.zxcvb,13.guacamoletest;5.te") == [
        ("test", "testdata", "zxcvb", "guacamoletest")
    ]
    assert p.pending_bytes() == b"5.te"
    assert p.receive_data(b"st2,1.x;") == [("test2", "x")]


def test_utf8_split_inside_a_character() -> None:
    data = f"4.name,4.{X};".encode()
    for cut in range(len(data)):
        p = Parser()
        out = p.receive_data(data[:cut]) + p.receive_data(data[cut:])
        assert out == [("name", X)], cut


def test_pending_bytes_keeps_partial_utf8() -> None:
    p = Parser()
    data = f"4.name,4.{X}".encode()
    p.receive_data(data[:-1])
    assert p.pending_bytes() == data[:-1]


@pytest.mark.parametrize(
    "data",
    [b"hello world;", b"4.test;4;", b"x.test;", b"4.testX", b"-1.a;", b"4.test,1.a:", b";"],
)
def test_malformed_input_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        feed_all(data)
    with pytest.raises(ProtocolError):
        feed_all(data, 1)


def test_error_is_sticky() -> None:
    p = Parser()
    with pytest.raises(ProtocolError):
        p.receive_data(b"garbage;")
    with pytest.raises(ProtocolError):
        p.receive_data(b"4.sync,1.1;")


def test_element_longer_than_8192_code_points() -> None:
    with pytest.raises(InstructionTooLong):
        feed_all(b"8193." + b"a" * 8193 + b";")
    assert feed_all(b"4.blob,8192." + b"a" * 8192 + b";") == [("blob", "a" * 8192)]


def test_too_many_elements() -> None:
    ok = encode("x", *["1"] * 127)
    assert len(feed_all(ok)[0]) == 128
    with pytest.raises(InstructionTooLong):
        feed_all(encode("x", *["1"] * 128))


def test_instruction_over_32_kib_of_bytes() -> None:
    big = "\u72ac" * 8000  # 24000 bytes each
    with pytest.raises(InstructionTooLong):
        feed_all(encode("test", big, big))
    with pytest.raises(InstructionTooLong):  # also while still incomplete
        Parser().receive_data(encode("test", big, big)[:-5])


def test_fast_and_exact_paths_agree_on_tricky_values() -> None:
    text = "5.a,1.b,7.1.x,1.y;3.key,3.1;2;5.mouse,1.1,1.2,1.3;"
    exact, used = parse_exact(text)
    assert used == len(text)
    assert feed_all(text.encode()) == exact
    assert exact[0] == ("a,1.b", "1.x,1.y")


elements = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
instructions = st.lists(elements, min_size=1, max_size=6)


@settings(max_examples=FUZZ, deadline=None)
@given(st.lists(instructions, min_size=1, max_size=8), st.integers(1, 17))
def test_roundtrip_property(batch: list[list[str]], step: int) -> None:
    """Any encoded batch parses back identically, whole or in pieces, both paths."""
    data = b"".join(encode(i[0], *i[1:]) for i in batch)
    expected = [tuple(i) for i in batch]
    assert feed_all(data) == expected
    assert feed_all(data, step) == expected
    assert parse_exact(data.decode())[0] == expected


@settings(max_examples=FUZZ, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_documented_errors(data: bytes) -> None:
    try:
        feed_all(data)
        feed_all(data, 1)
    except ProtocolError:
        pass


def test_element_cache_is_bounded() -> None:
    p = Parser()
    for i in range(parser_mod._CACHE_MAX_ENTRIES + 100):
        p.receive_data(encode("k", i))
    assert len(parser_mod._ELEMENT_CACHE) <= parser_mod._CACHE_MAX_ENTRIES
