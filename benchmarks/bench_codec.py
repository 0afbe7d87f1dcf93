"""Codec benchmark: instructions/s parsed and encoded on one core.

    python benchmarks/bench_codec.py [--seconds 1.0]

Parsing is measured the way a worker sees input: reads of many pipelined small
instructions (``sync``, ``key``, ``mouse``), and 8 KiB ``blob``s. Encoding uses the
typed builders. Targets (issue 2): >= 1 M small instructions/s parsed, >= 2 M/s
encoded. The machine is shared and noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import base64
import random
import time
from collections.abc import Callable

from guacr.protocol import builders as b
from guacr.protocol.instruction import encode
from guacr.protocol.parser import Parser, parse_exact


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Items per second over repeated calls of ``fn`` (which returns items done)."""
    fn()  # warm up
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


def parse_bench(chunk: bytes, per_chunk: int, seconds: float) -> float:
    parser = Parser()

    def run() -> int:
        parser.receive_data(chunk)
        return per_chunk

    return rate(run, seconds)


def exact_bench(chunk: bytes, per_chunk: int, seconds: float) -> float:
    text = chunk.decode()

    def run() -> int:
        parse_exact(text)
        return per_chunk

    return rate(run, seconds)


def encode_bench(fn: Callable[[], bytes], seconds: float) -> float:
    def run() -> int:
        for _ in range(1000):
            fn()
        return 1000

    return rate(run, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ns = ap.parse_args()
    rnd = random.Random(1)
    n = 500
    small = {
        "sync": b"".join(encode("sync", 1_000_000 + i) for i in range(n)),
        "key": b"".join(encode("key", rnd.choice([97, 98, 65293, 65307]), i % 2) for i in range(n)),
        "mouse": b"".join(
            encode("mouse", rnd.randrange(1920), rnd.randrange(1080), rnd.choice([0, 1]))
            for _ in range(n)
        ),
    }
    blob = encode("blob", 3, base64.b64encode(rnd.randbytes(6048)).decode())  # 8064 chars
    print(f"{'case':<28}{'M instr/s':>12}")
    for name, chunk in small.items():
        r = parse_bench(chunk, n, ns.seconds)
        print(f"{'parse ' + name:<28}{r / 1e6:>12.2f}")
    for name, chunk in small.items():
        r = exact_bench(chunk, n, ns.seconds)
        print(f"{'parse ' + name + ' (exact path)':<28}{r / 1e6:>12.2f}")
    r = parse_bench(blob * 8, 8, ns.seconds)
    print(f"{'parse blob 8 KiB':<28}{r / 1e6:>12.3f}   ({r * len(blob) / 1e9:.2f} GB/s)")
    encoders: dict[str, Callable[[], bytes]] = {
        "sync": lambda: b.sync(123_456_789, 0),
        "key": lambda: b.key(65293, True, 123_456_789),
        "mouse": lambda: b.mouse(812, 401, 1, 123_456_789),
        "copy": lambda: b.copy(1, 0, 19, 990, 703, 14, 1, 0, 0),
    }
    for name, fn in encoders.items():
        r = encode_bench(fn, ns.seconds)
        print(f"{'encode ' + name:<28}{r / 1e6:>12.2f}")
    payload = rnd.randbytes(6048)
    r = encode_bench(lambda: b.blob(3, payload), ns.seconds)
    print(f"{'encode blob 8 KiB':<28}{r / 1e6:>12.3f}")


if __name__ == "__main__":
    main()
