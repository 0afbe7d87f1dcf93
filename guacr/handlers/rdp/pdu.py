"""guacr's own parsers for the RDP PDUs that carry the screen (sans-I/O: bytes in).

Why our own: aardwolf decodes every incoming MCS PDU with asn1tools' generic PER codec
and every bitmap update into Python objects with enum flags read through ``io.BytesIO``.
On a busy 32 bpp desktop xrdp sends ~600 such PDUs a second holding ~6000 rectangles;
profiled in a guacr worker (py-spy, ``benchmarks/bench_rdp.py`` scene), asn1tools
alone took a quarter of aardwolf's CPU. These parsers read the same fields with
``struct`` at fixed offsets and are several times cheaper; anything they do not
recognise goes back to aardwolf's own decoding, so they only ever take the hot path.

Also cheaper than aardwolf: rewriting a bulk-compressed share data header after
decompression, and recognising the screen updates that need no look for a logon or
error notice (aardwolf parses every PDU twice more for those).

Layouts: T.125 (ALIGNED PER, as aardwolf's ASN.1 module spells it) for Send Data
Indication; MS-RDPBCGR 2.2.8.1.1.1 for the share headers, 2.2.9.1.1.3.1.2 for the
bitmap update.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, Protocol

# DomainMCSPDU CHOICE index 26 (sendDataIndication) in the top 6 bits of the first byte.
SEND_DATA_INDICATION = 26 << 2
DATA_PRIORITIES = ("top", "high", "medium", "low")
_SDI_HEAD = struct.Struct(">BHHB")  # choice, initiator, channelId, priority+segmentation
_RECT = struct.Struct("<9H")
_U16 = struct.Struct("<H")

BITMAP_COMPRESSION = 0x0001
NO_BITMAP_COMPRESSION_HDR = 0x0400
CD_HEADER_SIZE = 8  # TS_CD_HEADER, present unless NO_BITMAP_COMPRESSION_HDR


class SendDataIndication(NamedTuple):
    """An MCS Send Data Indication: channel and the payload for it."""

    initiator: int
    channel_id: int
    priority: int
    segmentation: int  # the two bits: begin (0x2), end (0x1)
    user_data: bytes

    def as_asn1(self) -> tuple[str, dict[str, Any]]:
        """The value asn1tools' decoder gives for the same PDU (what aardwolf reads)."""
        return (
            "sendDataIndication",
            {
                "initiator": self.initiator,
                "channelId": self.channel_id,
                "dataPriority": DATA_PRIORITIES[self.priority],
                "segmentation": (bytes([self.segmentation << 6]), 2),
                "userData": self.user_data,
            },
        )


def parse_send_data_indication(data: bytes) -> SendDataIndication | None:
    """Parse a PER-encoded Send Data Indication; ``None`` for any other MCS PDU, or a
    length form this parser leaves to asn1tools (fragmented, >= 16 KiB)."""
    if len(data) < 7 or data[0] & 0xFC != SEND_DATA_INDICATION:
        return None
    _, initiator, channel_id, bits = _SDI_HEAD.unpack_from(data)
    first = data[6]
    if first < 0x80:
        length, start = first, 7
    elif first < 0xC0:
        if len(data) < 8:
            return None
        length, start = ((first & 0x3F) << 8) | data[7], 8
    else:
        return None
    if start + length > len(data):
        raise ValueError(f"MCS user data truncated: {length} announced, {len(data) - start} left")
    return SendDataIndication(
        initiator, channel_id, bits >> 6, (bits >> 4) & 0x3, bytes(data[start : start + length])
    )


class Bitmap(NamedTuple):
    """One TS_BITMAP_DATA: where it goes and its encoded pixels.

    ``width``/``height`` are the encoded bitmap's (xrdp pads widths to a multiple of 4);
    the destination rectangle is inclusive, as on the wire.
    """

    left: int
    top: int
    right: int
    bottom: int
    width: int
    height: int
    bpp: int
    flags: int
    data: bytes

    @property
    def compressed(self) -> bool:
        return bool(self.flags & BITMAP_COMPRESSION)


def parse_bitmap_update(data: bytes, offset: int = 0) -> list[Bitmap]:
    """A TS_UPDATE_BITMAP_DATA (updateType 1) starting at ``offset`` -> its bitmaps.

    Raises ``ValueError`` on a truncated or mistyped update.
    """
    if len(data) < offset + 4:
        raise ValueError("bitmap update truncated")
    kind, count = struct.unpack_from("<HH", data, offset)
    if kind != 1:
        raise ValueError(f"not a bitmap update (updateType {kind})")
    pos = offset + 4
    end = len(data)
    rects: list[Bitmap] = []
    unpack = _RECT.unpack_from
    for _ in range(count):
        if pos + 18 > end:
            raise ValueError("bitmap rectangle header truncated")
        left, top, right, bottom, width, height, bpp, flags, length = unpack(data, pos)
        pos += 18
        if flags & BITMAP_COMPRESSION and not flags & NO_BITMAP_COMPRESSION_HDR:
            # bitmapLength counts the TS_CD_HEADER too (MS-RDPBCGR 2.2.9.1.1.3.1.2.2).
            if length < CD_HEADER_SIZE:
                raise ValueError("bitmap compression header truncated")
            pos += CD_HEADER_SIZE
            length -= CD_HEADER_SIZE
        if pos + length > end:
            raise ValueError("bitmap data truncated")
        rects.append(
            Bitmap(left, top, right, bottom, width, height, bpp, flags, data[pos : pos + length])
        )
        pos += length
    return rects


SHARE_DATA_HEADER = 18  # TS_SHARECONTROLHEADER (6) + the rest of TS_SHAREDATAHEADER (12)
PDUTYPE_DATA = 0x7
PDUTYPE2_UPDATE = 0x02
PDUTYPE2_POINTER = 0x1B
# Share data header compressedType bits saying the payload went through the bulk
# compressor: PACKET_COMPR_TYPE_* (low nibble), COMPRESSED, AT_FRONT, FLUSHED.
BULK_STATE = 0x0F | 0x20 | 0x40 | 0x80


def is_screen_update(data: bytes, offset: int = 0) -> bool:
    """A slow-path Data PDU carrying an Update or a Pointer update (the stream of screen
    changes, i.e. neither Save Session Info nor Set Error Info)."""
    return (
        len(data) >= offset + SHARE_DATA_HEADER
        and data[offset + 2] & 0x0F == PDUTYPE_DATA
        and data[offset + 14] in (PDUTYPE2_UPDATE, PDUTYPE2_POINTER)
    )


class Decompressor(Protocol):
    def decompress(self, data: bytes, flags: int, expected_size: int | None = None) -> bytes: ...


def decompress_share_data(data: bytes, decompressor: Decompressor | None) -> bytes | None:
    """A slow-path Data PDU with its payload bulk-decompressed and its header rewritten
    to say so (uncompressed, lengths updated), as aardwolf's reader expects it.

    Returns ``data`` itself when it is not compressed, and ``None`` for anything not a
    well-formed Data PDU (aardwolf's own function then decides, and raises its errors).
    """
    if len(data) < SHARE_DATA_HEADER or data[2] & 0x0F != PDUTYPE_DATA:
        return None
    total, uncompressed = struct.unpack_from("<H10xH", data)
    flags = data[15]
    if total != len(data):
        return None
    if not flags & BULK_STATE:
        return bytes(data)
    if decompressor is None or (uncompressed and uncompressed < 4):
        return None
    expected = uncompressed - 4 if uncompressed else None
    payload = decompressor.decompress(data[SHARE_DATA_HEADER:], flags, expected_size=expected)
    size = len(payload)
    header = struct.pack("<HBx", SHARE_DATA_HEADER + size, data[2]) + data[4:12]
    return header + struct.pack("<HBBH", size + 4, data[14], 0, 0) + bytes(payload)


class FastMCSCodec:
    """Stands in for aardwolf's compiled T.125 PER codec: Send Data Indications (the
    stream of screen updates) are parsed here, everything else by asn1tools."""

    def __init__(self, codec: Any) -> None:
        self._codec = codec

    def decode(self, name: str, data: bytes, *args: Any, **kw: Any) -> Any:
        if name == "DomainMCSPDU" and not args and not kw:
            found = parse_send_data_indication(data)
            if found is not None:
                return found.as_asn1()
        return self._codec.decode(name, data, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._codec, name)


__all__ = [
    "Bitmap",
    "Decompressor",
    "FastMCSCodec",
    "SendDataIndication",
    "decompress_share_data",
    "is_screen_update",
    "parse_bitmap_update",
    "parse_send_data_indication",
]
