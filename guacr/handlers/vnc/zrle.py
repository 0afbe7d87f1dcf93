"""ZRLE (encoding 16): 64x64 tiles inside one persistent zlib stream.

The whole rectangle's zlib payload is length-prefixed, so tiles are parsed from the
inflated bytes directly, by the C decoder in ``_zrle.c`` (see native.py) when it can be
built, else by the Python one here, which is also the reference the C one is tested
against (tests/vnc/test_zrle_native.py). In Python, raw, solid and packed-palette tiles
are pure numpy. RLE runs have variable-length encodings; the first few of a tile are
read in Python, the rest are located with vectorised scans (see
``_scan_palette_runs``/``_scan_plain_runs``) and expanded with ``np.repeat``.
benchmarks/bench_rfb_decode.py measures both.

A run is reported as overflowing its tile as soon as its length so far exceeds the
pixels left, before the rest of its length bytes are read (both decoders).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from guacr.handlers.vnc import native
from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.decoders import MAX_COMPRESSED, DecoderState, inflate_all
from guacr.handlers.vnc.events import Event, RectDecoded, RFBProtocolError
from guacr.handlers.vnc.stream import Reader
from guacr.native_build import NativeLibraryError

log = logging.getLogger("guacr.vnc")

_U32 = struct.Struct(">I")
_TILE = 64

_TRUNCATED = "ZRLE: tile data truncated"
_OVERFLOW = "ZRLE: run overflows tile"
_PALETTE_INDEX = "ZRLE: palette index out of range"
_SUBENCODING = "ZRLE: invalid tile sub-encoding {}"
# Error codes of gzrle_decode_tiles (_zrle.c); -2 is the sub-encoding one.
_NATIVE_ERRORS = {-1: _TRUNCATED, -3: _PALETTE_INDEX, -4: _OVERFLOW}

#: Fills an (h, w, cpixel size) array from tile bytes; returns the offset after the
#: last tile, or raises RFBProtocolError.
TileDecoder = Callable[[bytes, npt.NDArray[np.uint8], int, int, int], int]


def decode_zrle(st: DecoderState, x: int, y: int, w: int, h: int) -> Reader[Event | None]:
    length = _U32.unpack((yield 4))[0]
    if length > MAX_COMPRESSED:
        raise RFBProtocolError(f"ZRLE rect of {length} bytes")
    data = (yield length) if length else b""
    cps = st.converter.cpixel_size
    tiles = ((w + _TILE - 1) // _TILE) * ((h + _TILE - 1) // _TILE)
    # Worst case per tile: palette-RLE header plus two bytes per pixel, or plain RLE.
    bound = tiles * (1 + 127 * cps) + w * h * (cps + 2) + 16
    payload = inflate_all(st.zrle_stream, data, bound, "ZRLE")
    if w == 0 or h == 0:
        return None
    out = np.empty((h, w, cps), np.uint8)
    end = decode_tiles(payload, out, w, h, cps)
    if end != len(payload):
        raise RFBProtocolError(f"ZRLE: {len(payload) - end} stray bytes after tiles")
    return RectDecoded(x, y, w, h, st.converter.cpixels_to_rgb(out), Encoding.ZRLE)


def decode_tiles_py(buf: bytes, out: npt.NDArray[np.uint8], w: int, h: int, cps: int) -> int:
    """The Python tile decoder (fallback and reference)."""
    try:
        return _decode_tiles(buf, out, w, h, cps)
    except IndexError as exc:
        raise RFBProtocolError(_TRUNCATED) from exc


def native_decoder(raw: native.RawTileDecoder) -> TileDecoder:
    """A TileDecoder over the C library's entry point (see native.bind)."""

    def decode_tiles_c(buf: bytes, out: npt.NDArray[np.uint8], w: int, h: int, cps: int) -> int:
        # The C code trusts these: check them here (cheap next to any tile).
        if out.dtype != np.uint8 or out.shape != (h, w, cps) or not out.flags.c_contiguous:
            raise ValueError("ZRLE output must be a C-contiguous (h, w, cps) uint8 array")
        rc, end = raw(buf, out.ctypes.data, w, h, cps)
        if rc == 0:
            return end
        if rc == -2:
            raise RFBProtocolError(_SUBENCODING.format(buf[end]))
        raise RFBProtocolError(_NATIVE_ERRORS.get(rc, f"ZRLE: tile decoder error {rc}"))

    return decode_tiles_c


def _choose_decoder() -> TileDecoder:
    """Decided once per process (at import, so a forking server loads it once)."""
    try:
        return native_decoder(native.load())
    except NativeLibraryError as exc:
        log.warning("%s; ZRLE is decoded in Python (slower)", exc)
        return decode_tiles_py


def _decode_tiles(buf: bytes, out: npt.NDArray[np.uint8], w: int, h: int, cps: int) -> int:
    """Fill ``out`` (h, w, cps) from tile data; returns the offset after the last tile."""
    arr = np.frombuffer(buf, np.uint8)
    pos = 0
    for ty in range(0, h, _TILE):
        th = min(_TILE, h - ty)
        for tx in range(0, w, _TILE):
            tw = min(_TILE, w - tx)
            tile = out[ty : ty + th, tx : tx + tw]
            sub = buf[pos]
            pos += 1
            npix = tw * th
            if sub == 0:
                end = pos + npix * cps
                _need(buf, end)
                tile[:] = arr[pos:end].reshape(th, tw, cps)
                pos = end
            elif sub == 1:
                _need(buf, pos + cps)
                tile[:] = arr[pos : pos + cps]
                pos += cps
            elif 2 <= sub <= 16:
                palette = _palette(arr, buf, pos, sub, cps)
                pos += sub * cps
                bits = 1 if sub == 2 else 2 if sub <= 4 else 4
                row_bytes = (tw * bits + 7) // 8
                end = pos + row_bytes * th
                _need(buf, end)
                idx = _unpack_indices(arr[pos:end].reshape(th, row_bytes), bits, tw)
                pos = end
                if int(idx.max()) >= sub:
                    raise RFBProtocolError(_PALETTE_INDEX)
                tile[:] = palette[idx]
            elif sub == 128:
                pos = _plain_rle(buf, arr, pos, tile, npix, cps)
            elif sub >= 130:
                size = sub - 128
                palette = _palette(arr, buf, pos, size, cps)
                pos += size * cps
                pos = _palette_rle(buf, arr, pos, tile, palette, npix)
            else:
                raise RFBProtocolError(_SUBENCODING.format(sub))
    return pos


def _need(buf: bytes, end: int) -> None:
    if end > len(buf):
        raise RFBProtocolError(_TRUNCATED)


def _palette(
    arr: npt.NDArray[np.uint8], buf: bytes, pos: int, size: int, cps: int
) -> npt.NDArray[np.uint8]:
    _need(buf, pos + size * cps)
    return arr[pos : pos + size * cps].reshape(size, cps)


def _unpack_indices(rows: npt.NDArray[np.uint8], bits: int, width: int) -> npt.NDArray[np.uint8]:
    """Packed palette indices, MSB first, each row padded to a byte."""
    if bits == 1:
        return np.unpackbits(rows, axis=1)[:, :width]
    per_byte = 8 // bits
    shifts = np.arange(8 - bits, -1, -bits, dtype=np.uint8)
    mask = np.uint8((1 << bits) - 1)
    idx = (rows[:, :, None] >> shifts) & mask
    return idx.reshape(rows.shape[0], rows.shape[1] * per_byte)[:, :width]


# Runs decoded in Python before switching to a vectorised scan: cheap tiles (a few
# long runs) stay cheap, busy ones (thousands of runs) avoid a Python loop per run.
_PY_RUNS = 24
# Palette RLE (text) parses faster in Python up to several hundred runs: the scan's
# fixed cost (some 25 numpy calls) exceeds ~0.12 us per run in Python. With 800, a
# scrolling xterm decodes ~15% faster than with 24, full frames no slower, and a
# worst-case tile (4096 one-pixel runs) 1.4x slower than all-vectorised instead of 3x
# for all-Python (benchmarks/bench_vnc.py, bench_rfb_decode.py).
_PALETTE_PY_RUNS = 800


def _scan_palette_runs(
    buf: bytes, arr: npt.NDArray[np.uint8], pos: int, pixels: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], int]:
    """Find the rest of a palette-RLE tile's runs without a loop per run.

    Parsing is a two-state machine (expect an index / expect a length byte). A byte
    below 128 always leads to "index" (a lone pixel, or the last length byte), 255
    always to "length" (run flag on index 127, or a length continuation) and any
    other byte flips the state. So the state before each byte follows from the last
    byte that forces it and the parity of flips since: a cumulative max and sum.
    Returns the offsets of the index bytes, the run lengths and the offset after the
    tile. A run costs at most two bytes per pixel, which bounds the window; runs past
    the tile's end are cut off by the pixel count. A run cut by the window counts with
    the length bytes it has there: an overflow if they already exceed the tile, else
    truncated data (a window cut short of the data's end always means an overflow).
    """
    window = arr[pos : min(len(buf), pos + 2 * pixels + 8)]
    n = len(window)
    if n == 0:
        raise RFBProtocolError(_TRUNCATED)
    forced = (window < 128) | (window == 255)
    last_forced = np.maximum.accumulate(np.where(forced, np.arange(n), -1))
    flips = np.cumsum(~forced, dtype=np.int64)
    anchor = np.maximum(last_forced, 0)
    has_anchor = last_forced >= 0
    base = has_anchor & (window[anchor] == 255)
    parity = (flips - np.where(has_anchor, flips[anchor], 0)) & 1
    expect_length_after = base ^ (parity == 1)
    expect_index_before = np.empty(n, bool)
    expect_index_before[0] = True
    expect_index_before[1:] = ~expect_length_after[:-1]
    starts = np.flatnonzero(expect_index_before)
    ends = np.append(starts[1:], n)
    sums = np.concatenate(([0], np.cumsum(window, dtype=np.int64)))
    # Run length = 1 + its length bytes = 1 + token bytes - the index byte.
    lengths = 1 + sums[ends] - sums[starts] - window[starts]
    done = np.cumsum(lengths)
    last = int(np.searchsorted(done, pixels))
    if last >= len(done):
        raise RFBProtocolError(_TRUNCATED)
    if done[last] > pixels:
        raise RFBProtocolError(_OVERFLOW)
    if last == len(done) - 1 and expect_length_after[-1]:  # cut before its end
        raise RFBProtocolError(_TRUNCATED)
    return (pos + starts[: last + 1]).astype(np.intp), lengths[: last + 1], pos + int(ends[last])


def _scan_plain_runs(
    buf: bytes, arr: npt.NDArray[np.uint8], pos: int, pixels: int, cps: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], int]:
    """Vectorised plain RLE: runs shorter than 256 pixels are exactly CPIXEL + 1 byte,
    so the rest of the tile is read as a strided array up to the first longer run,
    which is parsed in Python before looking again. A 64x64 tile holds at most 16 runs
    of 256 pixels or more, which bounds the rescans."""
    stride = cps + 1
    heads: list[npt.NDArray[np.intp]] = []
    runs: list[npt.NDArray[np.int64]] = []
    while pixels > 0:
        count = min(pixels, (len(buf) - pos) // stride)
        if count <= 0:
            raise RFBProtocolError(_TRUNCATED)
        lens = arr[pos + cps : pos + count * stride : stride]
        long_runs = np.flatnonzero(lens == 255)
        regular = int(long_runs[0]) if long_runs.size else count
        lengths = lens[:regular].astype(np.int64) + 1
        done = np.cumsum(lengths)
        if regular and done[-1] >= pixels:
            last = int(np.searchsorted(done, pixels))
            if done[last] != pixels:
                raise RFBProtocolError(_OVERFLOW)
            heads.append(pos + stride * np.arange(last + 1))
            runs.append(lengths[: last + 1])
            return np.concatenate(heads), np.concatenate(runs), pos + stride * (last + 1)
        heads.append(pos + stride * np.arange(regular))
        runs.append(lengths)
        pixels -= int(done[-1]) if regular else 0
        pos += stride * regular
        if regular == count:
            continue
        head = pos
        length, pos = _run_length(buf, pos + cps, pixels)
        heads.append(np.array([head], np.intp))
        runs.append(np.array([length], np.int64))
        pixels -= length
    return np.concatenate(heads), np.concatenate(runs), pos


def _run_length(buf: bytes, pos: int, left: int) -> tuple[int, int]:
    """A run's length bytes at ``pos`` (1 + each byte, 255 continues): (length, offset
    after them). Overflow as soon as the length exceeds the ``left`` pixels of its tile."""
    length = 1
    while True:
        c = buf[pos]
        pos += 1
        length += c
        if length > left:
            raise RFBProtocolError(_OVERFLOW)
        if c != 255:
            return length, pos


def _plain_rle(
    buf: bytes,
    arr: npt.NDArray[np.uint8],
    pos: int,
    tile: npt.NDArray[np.uint8],
    npix: int,
    cps: int,
) -> int:
    starts: list[int] = []
    lengths: list[int] = []
    filled = 0
    while filled < npix and len(starts) < _PY_RUNS:
        starts.append(pos)
        length, pos = _run_length(buf, pos + cps, npix - filled)
        lengths.append(length)
        filled += length
    heads = np.asarray(starts, np.intp)
    runs = np.asarray(lengths, np.int64)
    if filled < npix:
        more_heads, more_runs, pos = _scan_plain_runs(buf, arr, pos, npix - filled, cps)
        heads = np.concatenate((heads, more_heads))
        runs = np.concatenate((runs, more_runs))
    _need(buf, pos)
    colours = arr[heads[:, None] + np.arange(cps)]
    th, tw = tile.shape[:2]
    tile[:] = np.repeat(colours, runs, axis=0).reshape(th, tw, cps)
    return pos


def _palette_rle(
    buf: bytes,
    arr: npt.NDArray[np.uint8],
    pos: int,
    tile: npt.NDArray[np.uint8],
    palette: npt.NDArray[np.uint8],
    npix: int,
) -> int:
    indices: list[int] = []
    lengths: list[int] = []
    filled = 0
    while filled < npix and len(indices) < _PALETTE_PY_RUNS:
        b = buf[pos]
        pos += 1
        if b < 128:
            indices.append(b)
            lengths.append(1)
            filled += 1
            continue
        length, pos = _run_length(buf, pos, npix - filled)
        indices.append(b & 127)
        lengths.append(length)
        filled += length
    idx = np.asarray(indices, np.intp)
    runs = np.asarray(lengths, np.int64)
    if filled < npix:
        heads, more_runs, pos = _scan_palette_runs(buf, arr, pos, npix - filled)
        idx = np.concatenate((idx, (arr[heads] & 127).astype(np.intp)))
        runs = np.concatenate((runs, more_runs))
    if int(idx.max()) >= len(palette):
        raise RFBProtocolError(_PALETTE_INDEX)
    th, tw = tile.shape[:2]
    tile[:] = np.repeat(palette[idx], runs, axis=0).reshape(th, tw, -1)
    return pos


decode_tiles: TileDecoder = _choose_decoder()
