"""Terminal emulation throughput: `ls -laR --color=always /usr` through guacr.terminal.

    .venv/bin/python benchmarks/bench_terminal.py [--mb 10] [--repeat 3] [--baseline]

Feeds at least --mb MB of the listing (newlines turned into CR LF, as a PTY would
send them) in 4 KiB writes at 80x24 and 200x50 with 1000 lines of scrollback, and
prints MB/s per core for:

* feed + take_damage() after every write (the engine alone, damage collected as
  often as writes arrive);
* feed, and every 16 writes take_damage() plus row_runs() of every damaged row
  (what a renderer fetches per frame).

--baseline also times libvterm's own screen layer through ctypes (no Python
callbacks at all, damage merged per write) to show why guacr does not use it.
Target: >= 15 MB/s per core at both sizes.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import time

from guacr.terminal import Terminal

CHUNK = 4096
SIZES = ((80, 24), (200, 50))


def make_input(megabytes: float) -> bytes:
    listing = subprocess.run(
        ["ls", "-laR", "--color=always", "/usr"],
        capture_output=True,
        check=False,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    ).stdout.replace(b"\n", b"\r\n")
    want = int(megabytes * 1_000_000)
    data = listing * (want // len(listing) + 1)
    return data[:want]


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_engine(parts: list[bytes], cols: int, rows: int) -> float:
    term = Terminal(cols, rows, scrollback=1000)
    feed, take = term.feed, term.take_damage
    start = time.perf_counter()
    for part in parts:
        feed(part)
        take()
    return time.perf_counter() - start


def run_renderer_like(parts: list[bytes], cols: int, rows: int) -> float:
    term = Terminal(cols, rows, scrollback=1000)
    start = time.perf_counter()
    for i, part in enumerate(parts, 1):
        term.feed(part)
        if i % 16 == 0:
            for y in term.take_damage().rows:
                term.row_runs(y)
    return time.perf_counter() - start


def run_libvterm_screen(parts: list[bytes], cols: int, rows: int) -> float:
    """libvterm 0.1's screen layer, no callbacks: an upper bound for any binding of it."""
    lib = ctypes.CDLL("libvterm.so.0")
    lib.vterm_new.restype = ctypes.c_void_p
    lib.vterm_new.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.vterm_obtain_screen.restype = ctypes.c_void_p
    lib.vterm_obtain_screen.argtypes = [ctypes.c_void_p]
    for name in ("vterm_screen_reset", "vterm_screen_set_damage_merge", "vterm_set_utf8"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.vterm_screen_flush_damage.argtypes = [ctypes.c_void_p]
    lib.vterm_input_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.vterm_free.argtypes = [ctypes.c_void_p]
    vt = lib.vterm_new(rows, cols)
    lib.vterm_set_utf8(vt, 1)
    screen = lib.vterm_obtain_screen(vt)
    lib.vterm_screen_set_damage_merge(screen, 3)  # VTERM_DAMAGE_SCROLL
    lib.vterm_screen_reset(screen, 1)
    write, flush = lib.vterm_input_write, lib.vterm_screen_flush_damage
    start = time.perf_counter()
    for part in parts:
        write(vt, part, len(part))
        flush(screen)
    elapsed = time.perf_counter() - start
    lib.vterm_free(vt)
    return elapsed


def report(label: str, size: int, times: list[float]) -> None:
    rates = sorted(size / t / 1e6 for t in times)
    print(f"  {label:<46} {rates[-1]:6.1f} MB/s  (median {statistics.median(rates):.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="input size in MB (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is shown)")
    parser.add_argument("--baseline", action="store_true", help="also time libvterm's screen")
    args = parser.parse_args()

    data = make_input(args.mb)
    parts = chunks(data)
    print(f"input: ls -laR --color=always /usr, {len(data) / 1e6:.1f} MB, {CHUNK} B writes")
    cases = [
        ("feed + take_damage per write", run_engine),
        ("+ row_runs of damaged rows every 16 writes", run_renderer_like),
    ]
    if args.baseline:
        cases.append(("libvterm screen layer (ctypes, no callbacks)", run_libvterm_screen))
    for cols, rows in SIZES:
        print(f"{cols}x{rows}:")
        for label, fn in cases:
            report(label, len(data), [fn(parts, cols, rows) for _ in range(args.repeat)])


if __name__ == "__main__":
    main()
