"""Instruction encoding: ``LEN.VALUE,LEN.VALUE,...;`` with LEN in code points.

A Python ``str`` length already counts code points, which is why the codec works on
text and encodes to UTF-8 only at the edge. :func:`encode` is the generic writer;
``guacr.protocol.builders`` has one fast, typed builder per server instruction.
"""

from __future__ import annotations

from collections.abc import Iterable

# Pre-encoded elements for the small integers that dominate output (coordinates,
# layer indices, masks, button states). benchmarks/bench_codec.py measured builders
# using this table at ~2-4 M instructions/s versus ~0.9-1.3 M/s with str() per
# element. The range is kept small so the table costs a few hundred KB per process.
_SMALL_INTS: dict[int, str] = {i: f"{len(str(i))}.{i}" for i in range(-256, 4096)}


def element(value: object) -> str:
    """One ``LEN.VALUE`` element for any value (ints via the fast table)."""
    if type(value) is int:
        cached = _SMALL_INTS.get(value)
        if cached is not None:
            return cached
    s = value if isinstance(value, str) else str(value)
    return f"{len(s)}.{s}"


def encode_str(opcode: str, *args: object) -> str:
    """Encode an instruction as text."""
    if not args:
        return f"{len(opcode)}.{opcode};"
    return f"{len(opcode)}.{opcode}," + ",".join([element(a) for a in args]) + ";"


def encode(opcode: str, *args: object) -> bytes:
    """Encode an instruction to UTF-8 wire bytes."""
    return encode_str(opcode, *args).encode("utf-8", "surrogateescape")


def encode_many(instructions: Iterable[tuple[object, ...]]) -> bytes:
    """Encode several ``(opcode, *args)`` tuples into one buffer (one write)."""
    return "".join(encode_str(str(ins[0]), *ins[1:]) for ins in instructions).encode(
        "utf-8", "surrogateescape"
    )
