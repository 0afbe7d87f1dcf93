"""The palette indexer: C and Python versions against each other and against the pixels."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from guacr.native_build import NativeLibraryError
from guacr.render import encode as enc
from guacr.render import palette

U32 = npt.NDArray[np.uint32]

try:
    _COUNT_C, _INDEX_C = palette.native_functions(palette.bind(palette.LIBRARY.load()))
except NativeLibraryError as exc:  # pragma: no cover - the suite builds it at install
    pytest.fail(f"the palette library must build in the test environment: {exc}")

PAD = 0xFF000000  # the framebuffer's padding byte (alpha 255), never part of a colour


def frame(colours: int, h: int, w: int, seed: int = 0) -> U32:
    """An (h, w) uint32 RGBX view with ``colours`` distinct colours, padding set."""
    rng = np.random.default_rng(seed)
    table = rng.choice(1 << 24, colours, replace=False).astype(np.uint32) | np.uint32(PAD)
    index = rng.integers(0, colours, (h, w))
    index.ravel()[:colours] = np.arange(colours)  # every colour really occurs
    return table[index]


def decode(colours: U32, rows: npt.NDArray[np.uint8]) -> U32:
    """What a PNG decoder would draw from the scanlines: RGB as uint32, no padding."""
    assert (rows[:, 0] == 0).all()  # filter type "none" on every row
    return colours[rows[:, 1:]]


def rgb(pixels: U32) -> U32:
    return pixels & np.uint32(palette.RGB_MASK)


@pytest.mark.parametrize(("n", "h", "w"), [(1, 1, 1), (2, 7, 174), (130, 40, 90), (256, 64, 64)])
def test_indexes_every_pixel_exactly(n: int, h: int, w: int) -> None:
    pixels = frame(n, h, w, seed=n)
    out = _INDEX_C(pixels)
    assert out is not None
    colours, rows = out
    assert len(colours) == n
    assert rows.shape == (h, w + 1)
    assert np.array_equal(decode(colours, rows), rgb(pixels))


@pytest.mark.parametrize("index", [_INDEX_C, palette.index_colours_py], ids=["c", "py"])
def test_more_than_256_colours_is_none(index) -> None:  # type: ignore[no-untyped-def]
    assert index(frame(257, 32, 32)) is None


def test_python_fallback_indexes_exactly_or_declines() -> None:
    """The fallback hashes colours into a lookup table and declines (None: the caller
    sends RGB) on a hash collision rather than risk a wrong pixel."""
    for n, h, w in ((1, 1, 1), (2, 7, 174), (130, 40, 90)):
        out = palette.index_colours_py(frame(n, h, w, seed=n))
        assert out is not None and len(out[0]) == n
        assert np.array_equal(decode(*out), rgb(frame(n, h, w, seed=n)))


def test_padding_byte_never_splits_a_colour() -> None:
    pixels = frame(3, 8, 8)
    pixels[::2] &= np.uint32(0x00FFFFFF)  # same colours, padding 0 on every other row
    out = _INDEX_C(pixels)
    assert out is not None and len(out[0]) == 3
    assert np.array_equal(decode(*out), rgb(pixels))
    # Python counts them twice and declines: never a wrong image
    assert palette.index_colours_py(pixels) is None


def test_strided_views_read_only_their_region() -> None:
    """A region of a wider frame (row stride > width), as the display passes it."""
    full = frame(300, 64, 128, seed=3)  # busy around the region
    full[10:30, 20:70] = frame(5, 20, 50, seed=4)
    region = full[10:30, 20:70]
    assert not region.flags.c_contiguous
    out = _INDEX_C(region)
    assert out is not None and len(out[0]) == 5
    assert np.array_equal(decode(*out), rgb(region))
    assert _COUNT_C(region, 1) == 5


def test_unaligned_or_odd_layouts_are_copied_first() -> None:
    raw = np.zeros(4 * 6 * 5 + 1, np.uint8)[1:]  # misaligned by one byte
    pixels = raw.view(np.uint32).reshape(6, 5)
    pixels[:] = frame(4, 6, 5)
    assert pixels.ctypes.data % 4
    out = _INDEX_C(pixels)
    assert out is not None and np.array_equal(decode(*out), rgb(pixels))
    transposed = frame(4, 6, 5).T  # column stride is a whole row
    out = _INDEX_C(transposed)
    assert out is not None and np.array_equal(decode(*out), rgb(transposed))


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_count_of_a_sample_matches_pillow(step: int) -> None:
    for n in (1, 17, 200, 256, 257, 1000):
        pixels = frame(n, 50, 61, seed=n)
        assert _COUNT_C(pixels, step) == palette.count_colours_py(pixels, step)


def test_bad_arguments_are_refused_not_read() -> None:
    raw = palette.bind(palette.LIBRARY.load())
    buf = np.zeros(16, np.uint32)
    pal = np.zeros(256, np.uint32)
    addr, pal_addr = buf.ctypes.data, pal.ctypes.data
    assert raw(addr, 4, 4, 3, 1, palette.RGB_MASK, pal_addr, None) == -2  # stride < width
    assert raw(addr, 4, 4, 4, 0, palette.RGB_MASK, pal_addr, None) == -2  # step 0
    assert raw(addr, 0, 4, 4, 1, palette.RGB_MASK, pal_addr, None) == -2  # empty
    assert raw(addr, 4, 4, 4, 1, 0xFFFFFFFF, pal_addr, None) == -2  # mask keeps all bits
    assert raw(addr, 4, 4, 4, 1, palette.RGB_MASK, pal_addr, None) == 1


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    h=st.integers(1, 40),
    w=st.integers(1, 70),
    seed=st.integers(0, 2**16),
)
def test_c_and_python_agree(n: int, h: int, w: int, seed: int) -> None:
    n = min(n, h * w)
    pixels = frame(n, h, w, seed)
    c, py = _INDEX_C(pixels), palette.index_colours_py(pixels)
    assert (c is None) == (n > 256)
    assert py is None or n <= 256  # the fallback may also decline (hash collision)
    if c is not None and py is not None:
        assert sorted(c[0].tolist()) == sorted(py[0].tolist())
        assert np.array_equal(decode(*c), decode(*py))


def test_palette_png_decodes_to_the_pixels() -> None:
    pixels = frame(40, 33, 77, seed=9)
    rgbx = pixels.view(np.uint8).reshape(33, 77, 4)
    data = enc.encode_png(rgbx)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "P"
        back = np.asarray(image.convert("RGB"))
    assert np.array_equal(back, rgbx[..., :3])
