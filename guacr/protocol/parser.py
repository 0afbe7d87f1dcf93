"""Sans-I/O streaming parser for the Guacamole wire format.

Bytes go in through :meth:`Parser.receive_data`; complete instructions come out as
tuples of strings whose element 0 is the opcode. It never touches a socket, so the
same parser serves the listener (which only reads ``select``), the workers and tests.

Why text, not bytes: element lengths count code points, and Python's ``str`` indexes
by code point, so after one incremental UTF-8 decode per read every length check is a
plain slice. Invalid UTF-8 is kept with ``surrogateescape`` so a stray byte counts as
one code point, as guacd's lead-byte walker counts it.

Limits are guacd's (libguac ``parser-constants.h``): an element may hold at most 8192
code points, an instruction at most 128 elements, and a single instruction must fit in
32 KiB of bytes.

Two paths produce identical results (tests/protocol/test_parser.py checks both):

* the *exact* path walks length prefixes one element at a time, as guacd does;
* the *fast* path splits a read at ``;`` and ``,`` and accepts the split only if every
  piece is a well-formed ``LEN.VALUE`` whose value has exactly LEN code points.
  A value that itself contains ``,`` or ``;`` always leaves a first piece shorter than
  its declared length, so such input is never accepted wrongly; it just takes the
  exact path. Short validated pieces are remembered in a bounded dict, which turns the
  per-element check into one C-level ``map`` for the small instructions (``mouse``,
  ``key``, ``sync``) that dominate input. benchmarks/bench_codec.py measured the
  exact path alone at 0.55-0.9 M instructions/s and the fast path at 1.7-2.5 M/s.
"""

from __future__ import annotations

import codecs

from guacr.errors import InstructionTooLong, ProtocolError

Instruction = tuple[str, ...]
"""A parsed instruction: ``(opcode, arg1, arg2, ...)``."""

MAX_ELEMENT_LENGTH = 8192
MAX_ELEMENTS = 128
MAX_INSTRUCTION_BYTES = 32768

# Length prefix -> int for every legal length: a dict lookup both validates the digits
# and converts them.
_LENGTHS: dict[str, int] = {str(i): i for i in range(MAX_ELEMENT_LENGTH + 1)}

# Validated short elements ("3.512" -> "512"). Bounded so hostile input cannot grow it:
# 16384 entries of at most 16 characters stay under about 2 MB per process.
_ELEMENT_CACHE: dict[str, str] = {}
_CACHE_MAX_ENTRIES = 16384
_CACHE_MAX_ELEMENT = 16


class _NeedExact(Exception):
    """Internal: the fast path cannot prove its split right; use the exact path."""


def _element_value(element: str) -> str:
    """Validate one ``LEN.VALUE`` piece for the fast path and remember it."""
    head, dot, value = element.partition(".")
    if not dot or _LENGTHS.get(head) != len(value):
        raise _NeedExact
    if len(element) <= _CACHE_MAX_ELEMENT and len(_ELEMENT_CACHE) < _CACHE_MAX_ENTRIES:
        _ELEMENT_CACHE[element] = value
    return value


def _parse_length(text: str) -> int:
    """Exact path: a length prefix not in the table (leading zeros or garbage)."""
    if not text or not text.isascii() or not text.isdigit():
        raise ProtocolError(f"Invalid element length {text[:16]!r}")
    value = int(text)
    if value > MAX_ELEMENT_LENGTH:
        raise InstructionTooLong(f"Element of {value} code points exceeds {MAX_ELEMENT_LENGTH}")
    return value


def _byte_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def parse_exact(buf: str) -> tuple[list[Instruction], int]:
    """Parse whole instructions from ``buf`` one element at a time.

    Returns the instructions and how many characters they used; raises
    :class:`ProtocolError` on malformed input and :class:`InstructionTooLong` past a
    limit.
    """
    out: list[Instruction] = []
    n = len(buf)
    start = 0
    find = buf.find
    while start < n:
        pos = start
        elements: list[str] = []
        while True:
            dot = find(".", pos)
            if dot < 0:
                tail = buf[pos:]
                if tail and not (tail.isascii() and tail.isdigit()):
                    raise ProtocolError("Malformed instruction: bad element length")
                if len(tail) > 5:
                    raise InstructionTooLong("Element length prefix too long")
                return out, start
            length = _LENGTHS.get(buf[pos:dot])
            if length is None:
                length = _parse_length(buf[pos:dot])
            end = dot + 1 + length
            if end >= n:
                return out, start
            elements.append(buf[dot + 1 : end])
            term = buf[end]
            pos = end + 1
            if term == ";":
                break
            if term != ",":
                raise ProtocolError("Malformed instruction: element not followed by ',' or ';'")
            if len(elements) >= MAX_ELEMENTS:
                raise InstructionTooLong(f"Instruction has more than {MAX_ELEMENTS} elements")
        if pos - start > MAX_ELEMENT_LENGTH and _byte_length(buf[start:pos]) > (
            MAX_INSTRUCTION_BYTES
        ):
            raise InstructionTooLong("Instruction too long")
        out.append(tuple(elements))
        start = pos
    return out, start


def _parse_fast(buf: str) -> tuple[list[Instruction], int]:
    """Split-and-verify parse; raises :class:`_NeedExact` when it cannot decide."""
    parts = buf.split(";")
    rest = parts.pop()
    out: list[Instruction] = []
    append = out.append
    cached = _ELEMENT_CACHE.get
    for text in parts:
        if len(text) > MAX_ELEMENT_LENGTH:
            raise _NeedExact
        pieces = text.split(",")
        if len(pieces) > MAX_ELEMENTS:
            raise _NeedExact
        found = tuple(map(cached, pieces))
        if None in found:
            append(tuple([_element_value(p) for p in pieces]))
        else:
            append(found)  # type: ignore[arg-type]  # no None: checked above
    if rest:
        # The unfinished tail has no ';' so it cannot complete an instruction; the exact
        # walk only checks that it is not already garbage.
        parse_exact(rest)
    return out, len(buf) - len(rest)


class Parser:
    """Incremental parser: feed bytes, get instructions.

    After a parse error the parser is unusable; every further call raises the same
    error, because a length-prefixed stream cannot be resynchronised.
    """

    __slots__ = ("_buf", "_decoder", "_error")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._buf = ""
        self._error: ProtocolError | None = None

    def receive_data(self, data: bytes) -> list[Instruction]:
        """Consume ``data`` and return every instruction it completes, in order."""
        if self._error is not None:
            raise self._error
        text = self._decoder.decode(data)
        buf = self._buf + text if self._buf else text
        try:
            try:
                out, consumed = _parse_fast(buf)
            except _NeedExact:
                out, consumed = parse_exact(buf)
        except ProtocolError as exc:
            self._error = exc
            raise
        self._buf = buf[consumed:]
        if len(self._buf) > MAX_ELEMENT_LENGTH and _byte_length(self._buf) > (
            MAX_INSTRUCTION_BYTES
        ):
            self._error = InstructionTooLong("Instruction too long")
            raise self._error
        return out

    def pending_bytes(self) -> bytes:
        """Bytes received but not yet part of a complete instruction."""
        undecoded = self._decoder.getstate()[0]
        return self._buf.encode("utf-8", "surrogateescape") + undecoded
