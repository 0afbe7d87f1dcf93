"""guacr's own parsers of the hot RDP PDUs, on PDUs captured from the real xrdp.

The reference is what aardwolf's own decoding (asn1tools' PER codec, its bitmap
update classes) gives for the same bytes: ours must agree exactly, and fall back to
it for anything else. Captures (tests/rdp/data): xrdp 0.9.21 + xorgxrdp, TLS,
1024x768; the MCS PDUs as read off the X.224 layer, the bitmap updates after bulk
decompression (share control header onwards).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from guacr.handlers.rdp import compat, pdu

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / f"{name}.bin").read_bytes()


def mcs_codec() -> object:
    from aardwolf.protocol.T125.MCSPDU_ver_2 import MCSPDU_ver_2

    compat.preload()
    return compat._codecs[(MCSPDU_ver_2, "per")]


SDI = ["mcs-sdi-license-valid-client", "mcs-sdi-synchronize", "mcs-sdi-bitmap-update-bulk"]


@pytest.mark.parametrize("name", SDI)
def test_send_data_indication_matches_asn1tools(name: str) -> None:
    raw = load(name)
    ours = pdu.parse_send_data_indication(raw)
    assert ours is not None
    assert ours.as_asn1() == mcs_codec().decode("DomainMCSPDU", raw)  # type: ignore[attr-defined]
    assert ours.channel_id == 1003  # xrdp's I/O channel


def test_send_data_indication_fields() -> None:
    ours = pdu.parse_send_data_indication(load("mcs-sdi-bitmap-update-bulk"))
    assert ours is not None
    assert (ours.channel_id, ours.priority, ours.segmentation) == (1003, 1, 3)
    assert len(ours.user_data) == 0x1A9  # two-byte PER length form
    assert ours.user_data[14] == 0x02  # a share data PDU: Update


@pytest.mark.parametrize("name", ["mcs-attach-user-confirm", "mcs-channel-join-confirm"])
def test_other_mcs_pdus_are_left_to_asn1tools(name: str) -> None:
    raw = load(name)
    assert pdu.parse_send_data_indication(raw) is None
    codec = pdu.FastMCSCodec(mcs_codec())
    assert codec.decode("DomainMCSPDU", raw) == mcs_codec().decode("DomainMCSPDU", raw)  # type: ignore[attr-defined]


def test_installed_codec_is_ours_and_switchable() -> None:
    from aardwolf import connection
    from aardwolf.protocol.T125.MCSPDU_ver_2 import MCSPDU_ver_2

    compat.preload()
    codec = connection.asn1tools.compile_string(MCSPDU_ver_2, "per")
    assert isinstance(codec, pdu.FastMCSCodec)
    raw = load("mcs-sdi-synchronize")
    reference = mcs_codec().decode("DomainMCSPDU", raw)  # type: ignore[attr-defined]
    assert codec.decode("DomainMCSPDU", raw) == reference
    compat.OWN_PARSERS["mcs"] = False
    try:
        assert codec.decode("DomainMCSPDU", raw) == reference
    finally:
        compat.OWN_PARSERS["mcs"] = True
    # Encoding still goes to asn1tools.
    ultimatum = ("disconnectProviderUltimatum", {"reason": "rn-user-requested"})
    assert codec.encode("DomainMCSPDU", ultimatum) == mcs_codec().encode("DomainMCSPDU", ultimatum)  # type: ignore[attr-defined]


def test_truncated_send_data_indication_is_an_error() -> None:
    raw = load("mcs-sdi-bitmap-update-bulk")
    with pytest.raises(ValueError, match="truncated"):
        pdu.parse_send_data_indication(raw[:-1])
    assert pdu.parse_send_data_indication(raw[:7]) is None  # length byte 2 missing
    assert pdu.parse_send_data_indication(b"") is None


def test_fragmented_length_is_left_to_asn1tools() -> None:
    head = load("mcs-sdi-synchronize")[:6]
    assert pdu.parse_send_data_indication(head + b"\xc1" + bytes(16384)) is None


def aardwolf_rects(raw: bytes) -> list[pdu.Bitmap]:
    from aardwolf.protocol.fastpath.bitmap import TS_UPDATE_BITMAP_DATA

    return [
        compat.from_aardwolf(bd) for bd in TS_UPDATE_BITMAP_DATA.from_bytes(raw[18:]).rectangles
    ]


@pytest.mark.parametrize("depth, count", [(32, 26), (16, 26)])
def test_bitmap_update_matches_aardwolf(depth: int, count: int) -> None:
    raw = load(f"bitmap-update-{depth}bpp")
    assert raw[14] == 0x02 and raw[2] & 0x0F == 0x7  # Data PDU, Update
    ours = pdu.parse_bitmap_update(raw, 18)
    assert len(ours) == count
    assert ours == aardwolf_rects(raw)
    assert {r.bpp for r in ours} == {depth}
    assert all(r.compressed for r in ours)


def test_bitmap_update_errors() -> None:
    raw = load("bitmap-update-16bpp")
    with pytest.raises(ValueError, match="truncated"):
        pdu.parse_bitmap_update(raw[:-1], 18)
    with pytest.raises(ValueError, match="truncated"):
        pdu.parse_bitmap_update(raw[:30], 18)
    with pytest.raises(ValueError, match="updateType 2"):
        pdu.parse_bitmap_update(b"\x02\x00\x00\x00")
    with pytest.raises(ValueError):
        pdu.parse_bitmap_update(b"\x01\x00")


def test_bitmap_with_compression_header() -> None:
    """A rectangle with TS_CD_HEADER (MS-RDPBCGR 2.2.9.1.1.3.1.2.2): bitmapLength counts
    the 8 header bytes, which are not part of the encoded bitmap."""
    body = b"\xaa" * 5
    header = struct.pack("<4H", 0, len(body), 8, 32)
    rect = struct.pack("<9H", 1, 2, 4, 3, 4, 2, 32, 0x0001, 8 + len(body)) + header + body
    tail = struct.pack("<9H", 0, 0, 0, 0, 1, 1, 32, 0, 4) + b"\x01\x02\x03\x04"
    update = struct.pack("<HH", 1, 2) + rect + tail
    first, second = pdu.parse_bitmap_update(update)
    assert first == pdu.Bitmap(1, 2, 4, 3, 4, 2, 32, 1, body)
    assert second.data == b"\x01\x02\x03\x04" and not second.compressed


@pytest.mark.parametrize("depth", [32, 16])
def test_decoded_pixels_match_the_reference_decode(depth: int) -> None:
    """Our decode (a channel-reversed view at 32 bpp) gives the pixels aardwolf's decoder
    gives, reordered to RGB as the 32 bpp fix describes."""
    from aardwolf import _rle

    raw = load(f"bitmap-update-{depth}bpp")
    for bd in pdu.parse_bitmap_update(raw, 18):
        decoded = compat.decode_bitmap(bd)
        assert decoded is not None
        x, y, pixels = decoded
        assert (x, y) == (bd.left, bd.top)
        dw, dh = bd.right - bd.left + 1, bd.bottom - bd.top + 1
        assert pixels.shape[:2] == (dh, dw)
        ref = np.frombuffer(
            bytes(_rle.bitmap_decompress(bd.data, bd.width, bd.height, depth, 1)), np.uint8
        ).reshape(bd.height, bd.width, 4)[:dh, :dw]
        if depth == 32:
            ref = ref[..., [2, 1, 0]]  # B,G,R,0 from the decoder
        assert np.array_equal(pixels[..., :3], ref[..., :3])


def sdi_payload(name: str) -> bytes:
    found = pdu.parse_send_data_indication(load(name))
    assert found is not None
    return found.user_data


def new_decompressor() -> object:
    from aardwolf.protocol.compression import BulkDecompressor

    compat.install()  # xrdp's lenient uncompressedLength (bulk_decompression_length)
    return BulkDecompressor()


def test_decompressed_share_data_matches_aardwolf() -> None:
    """The first bulk-compressed PDU of a session (fresh MPPC history on both sides)."""
    from aardwolf.protocol.T128.share import normalize_share_data_pdu

    data = sdi_payload("mcs-sdi-bitmap-update-bulk")
    assert data[15] & pdu.BULK_STATE  # compressed
    ours = pdu.decompress_share_data(data, new_decompressor())  # type: ignore[arg-type]
    assert ours is not None and ours == normalize_share_data_pdu(data, new_decompressor())
    assert ours[15] == 0 and len(ours) == int.from_bytes(ours[:2], "little")
    # ...and it is a bitmap update we can parse.
    assert pdu.is_screen_update(ours)
    assert len(pdu.parse_bitmap_update(ours, 18)) > 0


def test_uncompressed_and_irregular_share_data() -> None:
    data = sdi_payload("mcs-sdi-synchronize")
    assert data[15] == 0
    assert pdu.decompress_share_data(data, None) == data
    assert pdu.decompress_share_data(data[:-1], None) is None  # length mismatch: aardwolf's
    assert pdu.decompress_share_data(data[:10], None) is None
    compressed = sdi_payload("mcs-sdi-bitmap-update-bulk")
    assert pdu.decompress_share_data(compressed, None) is None  # aardwolf raises for this
    license_pdu = sdi_payload("mcs-sdi-license-valid-client")
    assert pdu.decompress_share_data(license_pdu, None) is None  # not a share PDU


def test_screen_updates_are_recognised() -> None:
    assert pdu.is_screen_update(load("bitmap-update-32bpp"))
    assert not pdu.is_screen_update(sdi_payload("mcs-sdi-synchronize"))  # pduType2 0x1F
    assert not pdu.is_screen_update(sdi_payload("mcs-sdi-license-valid-client"))
    assert not pdu.is_screen_update(load("bitmap-update-32bpp")[:17])
    save_session_info = bytearray(load("bitmap-update-32bpp")[:40])
    save_session_info[14] = 0x26
    assert not pdu.is_screen_update(bytes(save_session_info))


@pytest.mark.parametrize("own", [True, False])
def test_fast_path_bitmap_update(own: bool) -> None:
    """xrdp sends its bitmaps on the slow path; Windows on the fast path, where the
    update data is the same TS_UPDATE_BITMAP_DATA (MS-RDPBCGR 2.2.9.1.2.1.2)."""
    from aardwolf.protocol.fastpath import FASTPATH_UPDATETYPE

    class Update:  # aardwolf's reassembled fast-path update, as the fix receives it
        updateCode = FASTPATH_UPDATETYPE.BITMAP
        updateData = load("bitmap-update-16bpp")[18:]

        def parse_update_data(self) -> object:
            from aardwolf.protocol.fastpath.bitmap import TS_UPDATE_BITMAP_DATA

            return TS_UPDATE_BITMAP_DATA.from_bytes(self.updateData)

    saved = compat.OWN_PARSERS["bitmap_update"]
    compat.OWN_PARSERS["bitmap_update"] = own
    try:
        rects = compat.fast_path_bitmaps(Update())
    finally:
        compat.OWN_PARSERS["bitmap_update"] = saved
    assert rects == pdu.parse_bitmap_update(load("bitmap-update-16bpp"), 18)
    assert len(rects) == 26
