"""RFB pixel formats and their bulk conversion to RGB with numpy.

Every decoder produces rectangles of raw pixel bytes in the negotiated format; this
module turns them into ``(h, w, 3)`` uint8 RGB in one vectorised step. The common
32 bpp / depth 24 formats become zero-copy views; 8/16 bpp go through a lookup table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

U8Array = npt.NDArray[np.uint8]

_PF = struct.Struct(">BBBBHHHBBB3x")


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """The 16-byte PIXEL_FORMAT structure of RFC 6143 §7.4."""

    bits_per_pixel: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    def pack(self) -> bytes:
        return _PF.pack(
            self.bits_per_pixel,
            self.depth,
            int(self.big_endian),
            int(self.true_colour),
            self.red_max,
            self.green_max,
            self.blue_max,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        bpp, depth, be, tc, rm, gm, bm, rs, gs, bs = _PF.unpack(data)
        return cls(bpp, depth, be != 0, tc != 0, rm, gm, bm, rs, gs, bs)

    @classmethod
    def for_color_depth(cls, color_depth: int) -> PixelFormat:
        """The format guacd asks for given its ``color-depth`` parameter (8, 16, 24, 32)."""
        if color_depth == 8:
            return cls(8, 8, False, True, 7, 7, 3, 0, 3, 6)
        if color_depth == 16:
            return cls(16, 16, False, True, 31, 63, 31, 11, 5, 0)
        return cls()

    @property
    def bytes_per_pixel(self) -> int:
        return self.bits_per_pixel // 8

    def validate(self) -> None:
        """Reject formats our decoders cannot interpret (raises ValueError)."""
        if self.bits_per_pixel not in (8, 16, 32):
            raise ValueError(f"unsupported bits-per-pixel {self.bits_per_pixel}")
        if not self.true_colour and self.bits_per_pixel > 16:
            raise ValueError("colour-mapped pixels wider than 16 bits")
        if self.true_colour:
            for mx, sh in self._channels():
                if mx <= 0 or mx > 0xFFFF or (mx << sh) >= (1 << self.bits_per_pixel):
                    raise ValueError(f"channel max {mx} << {sh} does not fit the pixel")

    def is_888(self) -> bool:
        """True-colour 32 bpp, depth 24, 8-bit channels: Tight sends 3-byte TPIXELs then."""
        return (
            self.true_colour
            and self.bits_per_pixel == 32
            and self.depth == 24
            and self.red_max == self.green_max == self.blue_max == 255
        )

    def _channels(self) -> tuple[tuple[int, int], ...]:
        return (
            (self.red_max, self.red_shift),
            (self.green_max, self.green_shift),
            (self.blue_max, self.blue_shift),
        )


def _scale_lut(maximum: int) -> U8Array:
    """Map channel values 0..max to 0..255 (rounded), as a lookup table."""
    values = np.arange(maximum + 1, dtype=np.uint32)
    return ((values * 255 + maximum // 2) // maximum).astype(np.uint8)


class PixelConverter:
    """Turns raw pixel bytes of one PixelFormat into RGB arrays.

    ``swap_red_blue`` mirrors guacd's parameter: it swaps the red and blue channels of
    everything decoded, for servers that ignore the requested channel order.
    """

    def __init__(self, pf: PixelFormat, swap_red_blue: bool = False) -> None:
        pf.validate()
        self.pf = pf
        self.swap_red_blue = swap_red_blue
        self.bpp = pf.bytes_per_pixel
        self._decode_pf = (
            replace(
                pf,
                red_max=pf.blue_max,
                blue_max=pf.red_max,
                red_shift=pf.blue_shift,
                blue_shift=pf.red_shift,
            )
            if swap_red_blue
            else pf
        )
        entries = 1 << pf.bits_per_pixel if not pf.true_colour else 256
        self._colour_map: U8Array = np.zeros((entries, 3), np.uint8)
        self._lut: U8Array | None = None
        self._byte_index: tuple[int, int, int] | None = None
        self.cpixel_size, self._cpixel_pad = self._cpixel_layout()
        self.tpixel_size = 3 if pf.is_888() else self.bpp
        self._prepare()

    # --- set-up --------------------------------------------------------------------------

    def _prepare(self) -> None:
        pf = self._decode_pf
        if not pf.true_colour:
            self._lut = self._colour_map
            return
        if pf.bits_per_pixel <= 16:
            values = np.arange(1 << pf.bits_per_pixel, dtype=np.uint32)
            self._lut = self._channels_of(values)
            return
        if all(mx == 255 and sh % 8 == 0 for mx, sh in pf._channels()):
            idx = [sh // 8 for _, sh in pf._channels()]
            if pf.big_endian:
                idx = [3 - i for i in idx]
            self._byte_index = (idx[0], idx[1], idx[2])

    def _cpixel_layout(self) -> tuple[int, int]:
        """ZRLE's compressed pixel: 3 bytes when the colour bits fit in 3 of the 4 bytes.

        Returns (size, index of the dropped byte within the 4-byte pixel, -1 if none).
        """
        pf = self.pf
        if not (pf.true_colour and pf.bits_per_pixel == 32 and pf.depth <= 24):
            return self.bpp, -1
        used = 0
        for mx, sh in pf._channels():
            used |= mx << sh
        fits_ls3 = used < (1 << 24)
        fits_ms3 = (used & 0xFF) == 0
        first3_is_ls = not pf.big_endian
        if fits_ls3 and fits_ms3:
            return 3, 3
        if fits_ls3:
            return 3, 3 if first3_is_ls else 0
        if fits_ms3:
            return 3, 0 if first3_is_ls else 3
        return self.bpp, -1

    def _channels_of(self, values: npt.NDArray[np.uint32]) -> U8Array:
        """Extract and scale R, G, B from integer pixel values (any shape)."""
        pf = self._decode_pf
        out = np.empty((*values.shape, 3), np.uint8)
        for i, (mx, sh) in enumerate(pf._channels()):
            chan = (values >> np.uint32(sh)) & np.uint32(mx)
            out[..., i] = chan if mx == 255 else _scale_lut(mx)[chan]
        return out

    # --- colour map ----------------------------------------------------------------------

    def set_colour_map(self, first: int, rgb16: npt.NDArray[np.uint16]) -> U8Array:
        """Store SetColourMapEntries values (16-bit per channel); returns them as RGB8."""
        rgb8 = (rgb16 >> 8).astype(np.uint8)
        if self.swap_red_blue:
            rgb8 = rgb8[:, ::-1]
        end = min(first + len(rgb8), len(self._colour_map))
        if end > first:
            self._colour_map[first:end] = rgb8[: end - first]
        return rgb8

    # --- conversion ----------------------------------------------------------------------

    def values(self, raw: U8Array) -> npt.NDArray[np.uint32]:
        """Integer pixel values of a (..., bpp) byte array."""
        if self.bpp == 1:
            return raw[..., 0].astype(np.uint32)
        dt = np.dtype(f"{'>' if self.pf.big_endian else '<'}u{self.bpp}")
        flat = np.ascontiguousarray(raw).view(dt)[..., 0]
        return flat.astype(np.uint32)

    def to_rgb(self, raw: U8Array) -> U8Array:
        """Convert a (..., bpp) uint8 array of pixels to (..., 3) RGB."""
        if self._byte_index is not None:
            return _pick_bytes(raw, self._byte_index)
        if self._lut is not None:
            return self._lut[self.values(raw)]
        return self._channels_of(self.values(raw))

    def cpixels_to_rgb(self, raw: U8Array) -> U8Array:
        """Convert ZRLE CPIXELs, (..., cpixel_size) uint8, to RGB."""
        if self.cpixel_size == self.bpp:
            return self.to_rgb(raw)
        if self._byte_index is not None:
            shift = 1 if self._cpixel_pad == 0 else 0
            r, g, b = (i - shift for i in self._byte_index)
            if min(r, g, b) >= 0 and max(r, g, b) < 3:
                return _pick_bytes(raw, (r, g, b))
        full = np.zeros((*raw.shape[:-1], 4), np.uint8)
        keep = [i for i in range(4) if i != self._cpixel_pad]
        full[..., keep] = raw
        return self.to_rgb(full)

    def tpixels_to_rgb(self, raw: U8Array) -> U8Array:
        """Convert Tight TPIXELs to RGB; 3-byte TPIXELs are always R, G, B on the wire."""
        if self.tpixel_size == 3 and self.bpp == 4:
            return raw[..., ::-1] if self.swap_red_blue else raw
        return self.to_rgb(raw)

    def pixel_rgb(self, raw: bytes) -> tuple[int, int, int]:
        """RGB of a single PIXEL given as bytes."""
        rgb = self.to_rgb(np.frombuffer(raw, np.uint8).reshape(1, self.bpp))[0]
        return int(rgb[0]), int(rgb[1]), int(rgb[2])


def _pick_bytes(raw: U8Array, index: tuple[int, int, int]) -> U8Array:
    """Select three byte lanes, as a strided view when the lanes are consecutive."""
    r, g, b = index
    if g == r + 1 and b == r + 2:
        return raw[..., r : r + 3]
    if g == r - 1 and b == r - 2:
        stop = r - 3
        return raw[..., r : (stop if stop >= 0 else None) : -1]
    return raw[..., [r, g, b]]
