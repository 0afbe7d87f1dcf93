"""The C ZRLE tile decoder (_zrle.c) against the Python reference in zrle.py.

Every vector runs through both decoders, which must agree exactly: same pixels and end
offset, or the same RFBProtocolError message. Vectors: the existing ZRLE tests of
test_rfb_decoders/test_rfb_malformed (re-run with both decoders side by side), edge
cases of the error order, and fuzzing (generated tile streams with known pixels, then
mutated: flipped, cut, inserted and deleted bytes).

Memory safety was checked by running this file against an AddressSanitizer build::

    gcc -O1 -g -fsanitize=address -fno-omit-frame-pointer -fPIC -shared \\
        -o /tmp/zrle-asan.so guacr/handlers/vnc/_zrle.c
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) \\
        ASAN_OPTIONS=detect_leaks=0:log_path=/tmp/zrle-asan PYTHONMALLOC=malloc \\
        GUACR_TEST_ZRLE_SO=/tmp/zrle-asan.so \\
        .venv/bin/pytest -q -p no:cacheprovider tests/vnc/test_zrle_native.py

(a finding aborts the run; the report is in /tmp/zrle-asan.<pid>). With
``GUACR_TEST_ZRLE_SO`` set, inputs are handed to C in buffers of their exact size
(``bytes`` carry a spare NUL byte that would hide a one-byte over-read); a deliberate
one-byte over-read in run_length() was caught this way.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guacr.handlers.vnc import native, zrle
from guacr.handlers.vnc.events import RFBProtocolError
from guacr.native_build import CLibrary, NativeLibraryError
from tests.vnc import rfb_fakes as F
from tests.vnc import test_rfb_decoders as decoders_tests
from tests.vnc import test_rfb_malformed as malformed_tests

U8 = npt.NDArray[np.uint8]
Outcome = tuple[int | str, U8 | None]


def _c_decoder() -> zrle.TileDecoder:
    test_build = os.environ.get("GUACR_TEST_ZRLE_SO")
    if not test_build:
        return zrle.native_decoder(native.load())
    raw = native.bind(ctypes.CDLL(test_build))

    def exact(buf: bytes, out: int, w: int, h: int, cps: int) -> tuple[int, int]:
        return raw(ctypes.create_string_buffer(buf, len(buf)), out, w, h, cps)  # type: ignore[arg-type]

    return zrle.native_decoder(exact)


C_DECODE = _c_decoder()


def outcome(decode: zrle.TileDecoder, buf: bytes, w: int, h: int, cps: int) -> Outcome:
    out = np.zeros((h, w, cps), np.uint8)
    try:
        return decode(buf, out, w, h, cps), out
    except RFBProtocolError as exc:
        return str(exc), None


def same(buf: bytes, w: int, h: int, cps: int) -> Outcome:
    """Decode with both; they must agree. Returns the common outcome."""
    py = outcome(zrle.decode_tiles_py, buf, w, h, cps)
    c = outcome(C_DECODE, buf, w, h, cps)
    assert c[0] == py[0]
    if py[1] is not None:
        assert c[1] is not None
        np.testing.assert_array_equal(c[1], py[1])
    return c


@pytest.fixture
def side_by_side(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Make the RFB client decode ZRLE with both decoders, checking they agree."""
    calls: list[int] = []

    def both(buf: bytes, out: U8, w: int, h: int, cps: int) -> int:
        calls.append(len(buf))
        end, pixels = same(buf, w, h, cps)
        if pixels is None:
            raise RFBProtocolError(str(end))
        out[:] = pixels
        assert isinstance(end, int)
        return end

    monkeypatch.setattr(zrle, "decode_tiles", both)
    yield calls
    assert calls, "no ZRLE rectangle went through the decoders"


# --- the existing ZRLE vectors, both decoders side by side ------------------------------


@pytest.mark.parametrize("pf_name", decoders_tests.FORMATS)
@pytest.mark.parametrize("mode", ["mixed", "raw", "packed", "rle", "prle"])
def test_existing_zrle_images(side_by_side: list[int], pf_name: str, mode: str) -> None:
    decoders_tests.test_zrle(pf_name, mode)


@pytest.mark.parametrize("colours", [2, 3, 5, 16])
def test_existing_packed_palette_sizes(side_by_side: list[int], colours: int) -> None:
    decoders_tests.test_zrle_packed_palette_sizes(colours)


def test_existing_long_runs(side_by_side: list[int]) -> None:
    decoders_tests.test_zrle_solid_and_long_runs()
    for mode in ("rle", "prle"):
        decoders_tests.test_zrle_vectorised_runs_with_long_runs_inside(mode)


def test_existing_fragmentation(side_by_side: list[int]) -> None:
    decoders_tests.test_every_encoding_survives_any_fragmentation()


@pytest.mark.parametrize(
    "case",
    [
        malformed_tests.test_zrle_invalid_subencoding,
        malformed_tests.test_zrle_run_overflow,
        malformed_tests.test_zrle_truncated,
        malformed_tests.test_zrle_palette_index_out_of_range,
        malformed_tests.test_zrle_stray_bytes,
        malformed_tests.test_mutated_valid_updates_only_raise_rfb_errors,
    ],
    ids=lambda f: f.__name__,
)
def test_existing_malformed(side_by_side: list[int], case: Callable[[], None]) -> None:
    case()


# --- a tile stream generator that knows the pixels it encodes ---------------------------


def _length(n: int) -> bytes:
    return b"\xff" * ((n - 1) // 255) + bytes([(n - 1) % 255])


def _runs(rng: np.random.Generator, npix: int) -> list[int]:
    """Run lengths adding up to npix: mostly short, some long (multi-byte lengths)."""
    runs: list[int] = []
    left = npix
    while left:
        n = int(rng.integers(256, 1200)) if rng.random() < 0.03 else int(rng.integers(1, 9))
        n = min(n, left)
        runs.append(n)
        left -= n
    return runs


def _tile(rng: np.random.Generator, tw: int, th: int, cps: int, kind: str) -> tuple[bytes, U8]:
    """One tile's bytes in sub-encoding ``kind`` and the (th, tw, cps) pixels it holds."""
    npix = tw * th
    if kind == "raw":
        px = rng.integers(0, 256, (th, tw, cps), dtype=np.uint8)
        return b"\x00" + px.tobytes(), px
    if kind == "solid":
        colour = rng.integers(0, 256, cps, dtype=np.uint8)
        return b"\x01" + colour.tobytes(), np.broadcast_to(colour, (th, tw, cps)).copy()
    if kind == "packed":
        size = int(rng.integers(2, 17))
        palette = rng.integers(0, 256, (size, cps), dtype=np.uint8)
        bits = 1 if size == 2 else 2 if size <= 4 else 4
        idx = rng.integers(0, size, (th, tw))
        per = 8 // bits
        # Padding bits are random too: decoders must ignore them.
        padded = rng.integers(0, 1 << bits, (th, -(-tw // per) * per))
        padded[:, :tw] = idx
        packed = np.zeros((th, padded.shape[1] // per), np.uint8)
        for k in range(per):
            packed |= (padded[:, k::per] << (8 - bits * (k + 1))).astype(np.uint8)
        return bytes([size]) + palette.tobytes() + packed.tobytes(), palette[idx]
    runs = _runs(rng, npix)
    if kind == "plain":
        colours = rng.integers(0, 256, (len(runs), cps), dtype=np.uint8)
        body = b"".join(c.tobytes() + _length(n) for c, n in zip(colours, runs, strict=True))
        return b"\x80" + body, np.repeat(colours, runs, axis=0).reshape(th, tw, cps)
    size = int(rng.choice([2, 3, 16, 127])) if rng.random() < 0.5 else int(rng.integers(2, 128))
    palette = rng.integers(0, 256, (size, cps), dtype=np.uint8)
    idx = rng.integers(0, size, len(runs))
    out = bytearray([128 + size]) + palette.tobytes()
    for i, n in zip(idx, runs, strict=True):
        # A lone pixel may also be sent as a run of 1 (index | 128, length byte 0).
        out += bytes([i]) if n == 1 and rng.random() < 0.8 else bytes([i | 128]) + _length(n)
    return bytes(out), np.repeat(palette[idx], runs, axis=0).reshape(th, tw, cps)


KINDS = ("raw", "solid", "packed", "plain", "palette")


def tile_stream(
    seed: int, w: int, h: int, cps: int, kinds: tuple[str, ...]
) -> tuple[bytes, U8, list[int]]:
    """Tiles of random kinds: their bytes, pixels and where each tile starts."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, cps), np.uint8)
    data = bytearray()
    starts = []
    for ty in range(0, h, 64):
        for tx in range(0, w, 64):
            tw, th = min(64, w - tx), min(64, h - ty)
            tile, px = _tile(rng, tw, th, cps, str(rng.choice(kinds)))
            starts.append(len(data))
            data += tile
            out[ty : ty + th, tx : tx + tw] = px
    return bytes(data), out, starts


# --- fuzzing ----------------------------------------------------------------------------

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.tuples(st.integers(1, 140), st.integers(1, 140), st.integers(1, 4))


@SETTINGS
@given(st.integers(0, 2**32), sizes, st.sets(st.sampled_from(KINDS), min_size=1))
def test_generated_streams_decode_to_their_pixels(
    seed: int, size: tuple[int, int, int], kinds: set[str]
) -> None:
    w, h, cps = size
    data, expected, _ = tile_stream(seed, w, h, cps, tuple(sorted(kinds)))
    end, pixels = same(data, w, h, cps)
    assert end == len(data)
    assert pixels is not None
    np.testing.assert_array_equal(pixels, expected)


mutation = st.tuples(
    st.sampled_from(["flip", "cut", "insert", "delete"]),
    st.floats(0, 1, exclude_max=True),
    st.binary(min_size=1, max_size=8),
)


@SETTINGS
@given(st.integers(0, 2**32), sizes, st.lists(mutation, min_size=1, max_size=4))
def test_mutated_streams_agree(
    seed: int, size: tuple[int, int, int], mutations: list[tuple[str, float, bytes]]
) -> None:
    w, h, cps = size
    data = bytearray(tile_stream(seed, w, h, cps, KINDS)[0])
    for op, where, blob in mutations:
        at = int(where * len(data))
        if op == "flip":
            data[at] = blob[0]
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = blob
        else:
            del data[at : at + len(blob)]
        if not data:
            break
    same(bytes(data), w, h, cps)


@SETTINGS
@given(st.binary(max_size=600), sizes)
def test_random_bytes_agree(data: bytes, size: tuple[int, int, int]) -> None:
    same(data, *size)


@pytest.mark.parametrize("cps", [1, 2, 3, 4])
def test_many_mutations_agree(cps: int) -> None:
    """Bulk single-byte mutations of streams with busy RLE tiles (past the Python
    decoder's switch to vectorised scans), every kind of tile, every pixel size."""
    rng = np.random.default_rng(cps)
    results: set[str] = set()
    for i in range(150):
        stream, _, tile_starts = tile_stream(1000 * cps + i, 100, 70, cps, KINDS)
        data = bytearray(stream)
        if rng.random() < 0.1:
            data[int(rng.choice(tile_starts))] = int(rng.integers(0, 256))
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            del data[int(rng.integers(0, len(data))) :]
        end = same(bytes(data), 100, 70, cps)[0]
        results.add(end if isinstance(end, str) else "ok")
    # The mutations reach every kind of outcome.
    assert {"ok", zrle._TRUNCATED, zrle._OVERFLOW, zrle._PALETTE_INDEX} <= results
    assert any(r.startswith("ZRLE: invalid tile sub-encoding") for r in results)


# --- edge cases of the error rules ------------------------------------------------------


def _prle(size: int) -> bytes:
    return bytes([128 + size]) + bytes(3 * size)


def test_overflow_reported_before_the_length_ends() -> None:
    """A run whose length bytes already pass the tile's end is an overflow, also when
    the data ends inside them, and also past the Python decoder's vectorised switch
    (where the scan window cuts the run)."""
    for k in (16, 12):  # 15 or 1035 lone pixels first, leaving 1 + 255 * k pixels
        head = _prle(2) + bytes(4095 - 255 * k) + b"\x80"
        chain = b"\xff" * (k + 1)  # length so far > pixels left
        assert same(head + chain, 64, 64, 3)[0] == zrle._OVERFLOW
        long_chain = b"\xff" * (600 * k) + b"\x00"
        assert same(head + long_chain, 64, 64, 3)[0] == zrle._OVERFLOW
        # Exactly the pixels left, but the length bytes go on: more data is needed.
        assert same(head + b"\xff" * k, 64, 64, 3)[0] == zrle._TRUNCATED
        assert same(head + b"\xff" * k + b"\x00", 64, 64, 3)[0] == len(head) + k + 1
    plain_head = b"".join(bytes([1, 2, 3, 0]) for _ in range(100))  # 100 plain runs of 1
    chain = b"\xff" * 20
    assert same(b"\x80" + plain_head + b"\x01\x02\x03" + chain, 64, 64, 3)[0] == zrle._OVERFLOW


def test_error_order_within_and_across_tiles() -> None:
    bad_index = _prle(2) + b"\x05" * 4096  # index 5 of a 2-colour palette
    # A bad index, then truncation in the same tile: truncation wins (found first).
    assert same(bad_index[:-1], 64, 64, 3)[0] == zrle._TRUNCATED
    # A bad index in the first tile beats a bad sub-encoding in the second.
    assert same(bad_index + b"\x11", 128, 64, 3)[0] == zrle._PALETTE_INDEX
    for sub in (17, 127, 129):
        assert (
            same(b"\x01abc" + bytes([sub]), 128, 1, 3)[0]
            == f"ZRLE: invalid tile sub-encoding {sub}"
        )
    # Packed: an index past the palette inside the width is an error, in padding not.
    assert same(b"\x03" + bytes(9) + b"\xc0", 1, 1, 3)[0] == zrle._PALETTE_INDEX
    assert same(b"\x03" + bytes(9) + b"\x3f", 1, 1, 3)[0] == 1 + 9 + 1
    # Index 127 with the run flag is byte 255, also a length continuation.
    end, px = same(bytes([255]) + bytes(3 * 127) + b"\xff\xff\x00" + bytes(3840), 64, 64, 3)
    assert end == zrle._PALETTE_INDEX and px is None
    # Index 126's run with a 255 length byte, then lone pixels (vectorised in Python).
    stream = bytes([255]) + bytes(3 * 126) + b"\x09\x08\x07" + b"\xfe\xff\x01" + bytes(3839)
    end, px = same(stream, 64, 64, 3)
    assert end == len(stream) and px is not None
    assert (px.reshape(-1, 3)[:257] == (9, 8, 7)).all() and not px.reshape(-1, 3)[257:].any()


# --- loading, building, falling back ----------------------------------------------------


def test_client_uses_the_native_decoder() -> None:
    assert zrle.decode_tiles.__name__ == "decode_tiles_c"
    path = native.LIBRARY.built()
    assert path is not None and path.name.startswith("_zrle-")


def test_fallback_to_python_when_the_library_is_unusable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> native.RawTileDecoder:
        raise NativeLibraryError("cannot build guacr's ZRLE tile decoder: no C compiler")

    monkeypatch.setattr(native, "load", broken)
    with caplog.at_level(logging.WARNING, "guacr.vnc"):
        assert zrle._choose_decoder() is zrle.decode_tiles_py
    assert "no C compiler" in caplog.text and "decoded in Python" in caplog.text


def test_output_array_is_checked() -> None:
    with pytest.raises(ValueError):
        C_DECODE(b"\x01abc", np.zeros((2, 2, 3), np.uint8), 3, 2, 3)
    with pytest.raises(ValueError):
        C_DECODE(b"\x01abc", np.zeros((2, 6, 3), np.uint8)[:, ::2], 3, 2, 3)


def test_build_load_and_abi_check(tmp_path: Path) -> None:
    src = tmp_path / "_probe.c"
    src.write_text("int gzrle_abi(void) { return 99; }\n")
    lib = CLibrary(src, "probe")
    stale = tmp_path / "_probe-000000000000.so"
    stale.write_bytes(b"")
    path = lib.build(lib.candidates()[0])
    assert path.name == f"_probe-{lib.tag()}.so" and stale.exists()  # explicit dest: kept
    assert lib.build() == path and not stale.exists()  # regular build: stale one removed
    assert lib.built() == path
    with pytest.raises(NativeLibraryError, match="ABI 99"):
        native.bind(lib.load())
    src.write_text("#include <no-such-header.h>\n")
    hinted = CLibrary(src, "probe", hints=(("no-such-header.h", "install libprobe-dev"),))
    with pytest.raises(NativeLibraryError, match=r"probe failed \(install libprobe-dev\)"):
        hinted.build()
    src.unlink()  # an installation without the source: refused, not crashed
    with pytest.raises(NativeLibraryError, match="No such file"):
        lib.load()


def test_zero_sized_and_bad_arguments_are_refused() -> None:
    raw = native.load()
    out = np.zeros(16, np.uint8)
    for w, h, cps in ((0, 1, 3), (1, 0, 3), (1, 1, 0), (1, 1, 5), (70000, 1, 1)):
        assert raw(b"\x01abcd", out.ctypes.data, w, h, cps)[0] == -5


def test_rect_through_client_matches_fakes() -> None:
    """One end-to-end rectangle through RFBClient with the native decoder in place."""
    data, expected, _ = tile_stream(7, 130, 70, 3, KINDS)
    comp = F.ZlibStream()(data)
    client = F.connect(130, 70)
    events = client.receive_data(
        F.update(F.rect(0, 0, 130, 70, 16, struct.pack(">I", len(comp)) + comp))
    )
    pixels = events[1].pixels  # type: ignore[attr-defined]
    # BGRX: CPIXEL bytes are B, G, R.
    np.testing.assert_array_equal(pixels, expected[..., ::-1])
