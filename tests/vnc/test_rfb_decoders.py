"""Each decoder against hand-built rectangles (encoders in rfb_fakes), in several formats."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.constants import Encoding
from guacr.handlers.vnc.events import (
    Bell,
    ColourMapEntries,
    CopyRect,
    CursorShape,
    DesktopNameChanged,
    DesktopResized,
    Event,
    FramebufferUpdateEnd,
    FramebufferUpdateStart,
    JpegRect,
    RectDecoded,
    Screen,
    ServerCutText,
    SolidRect,
)
from guacr.handlers.vnc.pixels import PixelFormat
from guacr.handlers.vnc.tight import decode_jpeg
from tests.vnc import rfb_fakes as F

BGRX_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
RGBX_LE = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)
DEPTH16_IN_32 = PixelFormat(32, 16, False, True, 31, 63, 31, 11, 5, 0)
FORMATS = {
    "bgrx": F.BGRX,
    "rgbx": RGBX_LE,
    "bgrx-be": BGRX_BE,
    "565": F.RGB565,
    "233": F.BGR233,
    "565-in-32": DEPTH16_IN_32,
}

W, H = 150, 70  # not multiples of the 16/64 tile sizes on purpose


def paint(events: list[Event], fb: np.ndarray) -> None:
    for e in events:
        if isinstance(e, RectDecoded):
            assert e.pixels.shape == (e.height, e.width, 3)
            assert e.pixels.dtype == np.uint8
            fb[e.y : e.y + e.height, e.x : e.x + e.width] = e.pixels
        elif isinstance(e, SolidRect):
            fb[e.y : e.y + e.height, e.x : e.x + e.width] = e.rgb
        elif isinstance(e, CopyRect):
            src = fb[e.src_y : e.src_y + e.height, e.src_x : e.src_x + e.width].copy()
            fb[e.y : e.y + e.height, e.x : e.x + e.width] = src
        elif isinstance(e, JpegRect):
            fb[e.y : e.y + e.height, e.x : e.x + e.width] = decode_jpeg(e.data)


def run(client: RFBClient, data: bytes, fb: np.ndarray | None = None) -> list[Event]:
    events = client.receive_data(data)
    if fb is not None:
        paint(events, fb)
    return events


def check(pf_name: str, encode, colours: int = 0, w: int = W, h: int = H) -> None:  # type: ignore[no-untyped-def]
    pf = FORMATS[pf_name]
    client = F.connect(w, h, client_pf=pf)
    img = F.random_image(h, w, colours)
    fb = np.zeros((h, w, 3), np.uint8)
    events = run(client, encode(img, pf), fb)
    assert isinstance(events[0], FramebufferUpdateStart)
    assert isinstance(events[-1], FramebufferUpdateEnd)
    np.testing.assert_array_equal(fb, F.quantize(img, pf))


@pytest.mark.parametrize("pf_name", FORMATS)
def test_raw(pf_name: str) -> None:
    check(pf_name, lambda img, pf: F.update(F.rect(0, 0, W, H, 0, F.raw_body(img, pf))))


@pytest.mark.parametrize("pf_name", FORMATS)
@pytest.mark.parametrize("mode", ["mixed", "raw", "coloured", "mono"])
def test_hextile(pf_name: str, mode: str) -> None:
    colours = 2 if mode == "mono" else 5

    def enc(img: np.ndarray, pf: PixelFormat) -> bytes:
        return F.update(F.rect(0, 0, W, H, 5, F.hextile_body(img, pf, mode)))

    check(pf_name, enc, colours)


def test_hextile_background_carries_over() -> None:
    client = F.connect(32, 16)
    red = np.array([255, 0, 0], np.uint8)
    body = bytes([2]) + F.pack_pixels(red, F.BGRX) + bytes([0])  # tile 1: bg red
    events = run(client, F.update(F.rect(0, 0, 32, 16, 5, body)))
    (rect,) = [e for e in events if isinstance(e, RectDecoded)]
    assert (rect.pixels == red).all()


@pytest.mark.parametrize("pf_name", FORMATS)
def test_zlib_stream_persists_across_rects(pf_name: str) -> None:
    pf = FORMATS[pf_name]
    client = F.connect(W, H, client_pf=pf)
    stream = F.ZlibStream()
    fb = np.zeros((H, W, 3), np.uint8)
    img = F.random_image(H, W, 7)
    top, bottom = img[:30], img[30:]
    run(
        client,
        F.update(
            F.rect(0, 0, W, 30, 6, F.zlib_body(top, pf, stream)),
            F.rect(0, 30, W, H - 30, 6, F.zlib_body(bottom, pf, stream)),
        ),
        fb,
    )
    np.testing.assert_array_equal(fb, F.quantize(img, pf))


@pytest.mark.parametrize("pf_name", FORMATS)
@pytest.mark.parametrize("mode", ["mixed", "raw", "packed", "rle", "prle"])
def test_zrle(pf_name: str, mode: str) -> None:
    stream = F.ZlibStream()
    colours = {"packed": 3, "prle": 9, "mixed": 2}.get(mode, 40)
    w, h = 200, 130

    def enc(img: np.ndarray, pf: PixelFormat) -> bytes:
        return F.update(F.rect(0, 0, w, h, 16, F.zrle_body(img, pf, stream, mode)))

    check(pf_name, enc, colours, w, h)


@pytest.mark.parametrize("colours", [2, 3, 5, 16])
def test_zrle_packed_palette_sizes(colours: int) -> None:
    stream = F.ZlibStream()
    check(
        "bgrx",
        lambda img, pf: F.update(F.rect(0, 0, 70, 33, 16, F.zrle_body(img, pf, stream, "packed"))),
        colours,
        70,
        33,
    )


def test_zrle_solid_and_long_runs() -> None:
    client = F.connect(130, 64)
    img = np.zeros((64, 130, 3), np.uint8)
    img[:, :64] = (10, 20, 30)  # solid tile
    img[:, 64:128] = (200, 100, 0)  # one run of 4096 pixels: lengths with many 255s
    img[:, 128:] = (1, 2, 3)
    stream = F.ZlibStream()
    tiles = (
        F.zrle_tile(img[:, :64], F.BGRX, "solid")
        + F.zrle_tile(img[:, 64:128], F.BGRX, "rle")
        + F.zrle_tile(img[:, 128:], F.BGRX, "rle")
    )
    data = stream(tiles)
    fb = np.zeros_like(img)
    run(client, F.update(F.rect(0, 0, 130, 64, 16, struct.pack(">I", len(data)) + data)), fb)
    np.testing.assert_array_equal(fb, img)


@pytest.mark.parametrize("pf_name", FORMATS)
def test_rre(pf_name: str) -> None:
    pf = FORMATS[pf_name]
    client = F.connect(40, 30, client_pf=pf)
    bg = np.array([0, 128, 255], np.uint8)
    subs = [
        (np.array([255, 0, 0], np.uint8), 1, 2, 10, 5),
        (np.array([0, 255, 0], np.uint8), 5, 5, 35, 25),
    ]
    expected = np.empty((30, 40, 3), np.uint8)
    expected[:] = bg
    for colour, x, y, w, h in subs:
        expected[y : y + h, x : x + w] = colour
    fb = np.zeros_like(expected)
    events = run(client, F.update(F.rect(0, 0, 40, 30, 2, F.rre_body(bg, subs, pf))), fb)
    np.testing.assert_array_equal(fb, F.quantize(expected, pf))
    empty = run(client, F.update(F.rect(3, 4, 5, 6, 2, F.rre_body(bg, [], pf))))
    assert SolidRect(3, 4, 5, 6, tuple(F.quantize(bg, pf).tolist()), 2) in empty
    assert not any(isinstance(e, RectDecoded) for e in empty) and events


def test_copyrect_event() -> None:
    client = F.connect(64, 48)
    events = run(client, F.update(F.rect(10, 20, 30, 5, 1, struct.pack(">HH", 0, 1))))
    assert CopyRect(10, 20, 30, 5, 0, 1) in events


@pytest.mark.parametrize("pf_name", ["bgrx", "rgbx", "bgrx-be", "565", "233"])
def test_tight_basic_filters(pf_name: str) -> None:
    pf = FORMATS[pf_name]
    w, h = 90, 40
    client = F.connect(w, h * 4, client_pf=pf)
    streams = [F.ZlibStream() for _ in range(4)]
    imgs = [F.random_image(h, w), F.random_image(h, w, 2), F.random_image(h, w, 50)]
    grad = np.linspace(0, 255, w * h * 3).reshape(h, w, 3).astype(np.uint8)
    grad[5:9, 10:70] = (255, 0, 255)  # an edge so the clamp matters
    rects = [
        F.rect(0, 0, w, h, 7, F.tight_copy(imgs[0], pf, streams[0], 0)),
        F.rect(0, h, w, h, 7, F.tight_palette(imgs[1], pf, streams[1], 1)),
        F.rect(0, 2 * h, w, h, 7, F.tight_palette(imgs[2], pf, streams[1], 1)),
        F.rect(0, 3 * h, w, h, 7, F.tight_gradient(grad, pf, streams[2], 2)),
    ]
    fb = np.zeros((4 * h, w, 3), np.uint8)
    run(client, F.update(*rects), fb)
    expected = np.concatenate([imgs[0], imgs[1], imgs[2], grad])
    np.testing.assert_array_equal(fb, F.quantize(expected, pf))


def test_tight_fill_jpeg_small_and_reset() -> None:
    client = F.connect(64, 64)
    colour = np.array([12, 34, 56], np.uint8)
    jpeg_body, jpeg = F.tight_jpeg(F.random_image(16, 16, 3), quality=80)
    tiny = F.random_image(1, 3)  # 9 bytes of TPIXELs: sent raw, uncompressed
    stream = F.ZlibStream()
    copy = F.tight_copy(F.random_image(8, 8), F.BGRX, stream, 3)
    events = run(
        client,
        F.update(
            F.rect(0, 0, 64, 64, 7, F.tight_fill(colour, F.BGRX)),
            F.rect(8, 8, 16, 16, 7, jpeg_body),
            F.rect(0, 40, 3, 1, 7, bytes([0]) + tiny.tobytes()),
            F.rect(0, 50, 8, 8, 7, copy),
        ),
    )
    assert SolidRect(0, 0, 64, 64, (12, 34, 56), 7) in events
    assert JpegRect(8, 8, 16, 16, jpeg) in events
    rects = [e for e in events if isinstance(e, RectDecoded)]
    np.testing.assert_array_equal(rects[0].pixels, tiny)
    # Reset bit for stream 3 + a fresh server stream: decodes only if the reset happened.
    fresh = F.ZlibStream()
    img = F.random_image(8, 8, seed=7)
    body = F.tight_copy(img, F.BGRX, fresh, 3)
    events = run(client, F.update(F.rect(0, 0, 8, 8, 7, bytes([body[0] | 0x08]) + body[1:])))
    np.testing.assert_array_equal(events[1].pixels, img)  # type: ignore[attr-defined]


def test_tight_swap_red_blue() -> None:
    client = F.connect(4, 4, swap_red_blue=True)
    events = run(
        client, F.update(F.rect(0, 0, 4, 4, 7, F.tight_fill(np.array([1, 2, 3], np.uint8), F.BGRX)))
    )
    assert SolidRect(0, 0, 4, 4, (3, 2, 1), 7) in events
    img = F.random_image(4, 4)
    events = run(client, F.update(F.rect(0, 0, 4, 4, 0, F.raw_body(img, F.BGRX))))
    np.testing.assert_array_equal(events[1].pixels, img[..., ::-1])  # type: ignore[attr-defined]


def test_cursor_shape() -> None:
    client = F.connect(64, 64)
    img = F.random_image(5, 10)
    mask = np.zeros((5, 10), np.uint8)
    mask[1:4, 2:9] = 1
    body = F.pack_pixels(img, F.BGRX) + np.packbits(mask, axis=1).tobytes()
    events = run(client, F.update(F.rect(3, 2, 10, 5, Encoding.CURSOR, body)))
    (cursor,) = [e for e in events if isinstance(e, CursorShape)]
    assert (cursor.hotspot_x, cursor.hotspot_y, cursor.width, cursor.height) == (3, 2, 10, 5)
    rgba = np.frombuffer(cursor.rgba, np.uint8).reshape(5, 10, 4)
    np.testing.assert_array_equal(rgba[..., :3], img)
    np.testing.assert_array_equal(rgba[..., 3], mask * 255)


def test_desktop_size_pseudo_encodings_and_last_rect() -> None:
    client = F.connect(64, 64)
    screens = struct.pack(">B3x", 1) + struct.pack(">IHHHHI", 7, 0, 0, 100, 80, 0)
    name = b"renamed"
    data = F.update(
        F.rect(0, 0, 100, 80, Encoding.DESKTOP_SIZE),
        F.rect(0, 0, 120, 90, Encoding.EXTENDED_DESKTOP_SIZE, screens),
        F.rect(0, 0, 0, 0, Encoding.DESKTOP_NAME, struct.pack(">I", len(name)) + name),
        F.rect(0, 0, 0, 0, Encoding.LAST_RECT),
        count=0xFFFF,
    )
    events = run(client, data + b"\x02")
    assert events[1] == DesktopResized(100, 80)
    assert events[2] == DesktopResized(120, 90, 0, 0, (Screen(7, 0, 0, 100, 80, 0),))
    assert events[3] == DesktopNameChanged("renamed")
    assert isinstance(events[4], FramebufferUpdateEnd) and isinstance(events[5], Bell)
    assert (client.width, client.height) == (120, 90) and client.supports_set_desktop_size
    # The client's own refused resize keeps the size.
    refused = F.update(F.rect(1, 3, 640, 480, Encoding.EXTENDED_DESKTOP_SIZE, screens))
    events = run(client, refused)
    assert events[1] == DesktopResized(120, 90, 1, 3, (Screen(7, 0, 0, 100, 80, 0),))
    assert client.set_desktop_size(300, 200)
    assert client.data_to_send() == struct.pack(">BxHHBx", 251, 300, 200, 1) + struct.pack(
        ">IHHHHI", 7, 0, 0, 300, 200, 0
    )


def test_colour_map_entries_drive_8bit_colour_mapped_pixels() -> None:
    indexed = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
    client = F.connect(4, 1, client_pf=None, server_pf=indexed)
    colours = np.array([[0xFFFF, 0, 0], [0, 0x8000, 0], [0x1234, 0x5678, 0x9ABC]], ">u2")
    msg = struct.pack(">BxHH", 1, 10, 3) + colours.tobytes()
    events = run(client, msg)
    (entries,) = events
    assert isinstance(entries, ColourMapEntries) and entries.first == 10
    np.testing.assert_array_equal(entries.colours, [[255, 0, 0], [0, 128, 0], [0x12, 0x56, 0x9A]])
    events = run(client, F.update(F.rect(0, 0, 4, 1, 0, bytes([10, 11, 12, 0]))))
    np.testing.assert_array_equal(
        events[1].pixels[0],  # type: ignore[attr-defined]
        [[255, 0, 0], [0, 128, 0], [0x12, 0x56, 0x9A], [0, 0, 0]],
    )


def test_client_messages_wire_format() -> None:
    client = F.connect(100, 50)
    client.set_encodings([7, 16, -239, Encoding.EXTENDED_CLIPBOARD])
    client.framebuffer_update_request(False)
    client.framebuffer_update_request(True, 10, 5, 20, 8)
    client.key_event(0xFF0D, True)
    client.pointer_event(500, -4, 0b101)  # clamped to the screen
    client.client_cut_text("caf\u00e9")
    assert client.data_to_send() == (
        struct.pack(">BxH4i", 2, 4, 7, 16, -239, -1063131698)
        + struct.pack(">BBHHHH", 3, 0, 0, 0, 100, 50)
        + struct.pack(">BBHHHH", 3, 1, 10, 5, 20, 8)
        + struct.pack(">BBxxI", 4, 1, 0xFF0D)
        + struct.pack(">BBHH", 5, 5, 99, 0)
        + struct.pack(">B3xI", 6, 4)
        + b"caf\xe9"
    )
    assert not client.set_desktop_size(10, 10)  # server never offered ExtendedDesktopSize


def test_server_cut_text_latin1_and_configured_encoding() -> None:
    client = F.connect()
    assert run(client, F.cut_text(b"na\xefve")) == [ServerCutText("na\u00efve")]
    cp1252 = RFBClient(clipboard_encoding="cp1252")
    cp1252.receive_data(b"RFB 003.008\n\x01\x01\0\0\0\0" + F.server_init(2, 2))
    assert run(cp1252, F.cut_text(b"\x80 5")) == [ServerCutText("\u20ac 5")]
    cp1252.client_cut_text("\u20ac")
    assert cp1252.data_to_send().endswith(struct.pack(">B3xI", 6, 1) + b"\x80")


def test_extended_clipboard_flow() -> None:
    from guacr.handlers.vnc import messages as m

    client = F.connect()
    # Server caps: text up to 1000 bytes, supports request/peek/notify/provide.
    caps = struct.pack(">II", m.CLIP_CAPS | m.CLIP_TEXT | 0x1E000000, 1000)
    run(client, F.extended_clipboard(caps))
    assert client.extended_clipboard
    sent = client.data_to_send()
    assert sent[:4] == b"\x06\0\0\0" and struct.unpack(">i", sent[4:8])[0] == -8
    flags, size = struct.unpack(">II", sent[8:16])
    assert flags & m.CLIP_CAPS and flags & m.CLIP_TEXT and size == 256 * 1024
    # Server notifies: the client requests the text.
    run(client, F.extended_clipboard(struct.pack(">I", m.CLIP_NOTIFY | m.CLIP_TEXT)))
    assert client.data_to_send() == m.clipboard_request()
    # Server provides UTF-8 text with CRLF line ends.
    text = "h\u00e9llo\r\nw\u00f6rld\0".encode()
    payload = struct.pack(">I", m.CLIP_PROVIDE | m.CLIP_TEXT) + zlib.compress(
        struct.pack(">I", len(text)) + text
    )
    assert run(client, F.extended_clipboard(payload)) == [
        ServerCutText("h\u00e9llo\nw\u00f6rld", extended=True)
    ]
    # Classic Latin-1 text first (for libvncserver), then the UTF-8 copy as an
    # unsolicited Provide (it fits the server's 1000 bytes).
    client.client_cut_text("\u20ac1\nline")
    sent = client.data_to_send()
    legacy = struct.pack(">B3xI", 6, 7) + b"?1\nline"
    assert sent.startswith(legacy)
    parsed = m.parse_extended_clipboard(sent[len(legacy) + 8 :], 10_000)
    assert parsed.action == m.CLIP_PROVIDE and parsed.text == "\u20ac1\nline"
    # Too big for unsolicited: notify, then answer the server's request.
    big = "x" * 2000
    client.client_cut_text(big)
    assert client.data_to_send() == m.client_cut_text(big.encode()) + m.clipboard_notify(True)
    run(client, F.extended_clipboard(struct.pack(">I", m.CLIP_REQUEST | m.CLIP_TEXT)))
    assert m.parse_extended_clipboard(client.data_to_send()[8:], 10_000).text == big
    run(client, F.extended_clipboard(struct.pack(">I", m.CLIP_PEEK)))
    assert client.data_to_send() == m.clipboard_notify(True)


def test_jpeg_helper_decodes() -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 200
    _, jpeg = F.tight_jpeg(img, 95)
    out = decode_jpeg(jpeg)
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - img).max() < 30


@pytest.mark.parametrize("mode", ["rle", "prle"])
def test_zrle_vectorised_runs_with_long_runs_inside(mode: str) -> None:
    """Many short runs (past the Python fast path), long runs (multi-byte lengths) in
    the middle and at the end: exercises the vectorised scanners' hand-offs."""
    rng = np.random.default_rng(11)
    palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    idx = rng.integers(0, 6, 64 * 64)
    idx[500:1300] = 2  # an 800-pixel run: lengths 255, 255, 255, 34
    idx[2000:2256] = 4  # exactly 256: lengths 255, 0
    idx[3500:] = 5  # the tile ends inside a long run
    img = palette[idx].reshape(64, 64, 3)
    client = F.connect(64, 64)
    stream = F.ZlibStream()
    fb = np.zeros_like(img)
    run(client, F.update(F.rect(0, 0, 64, 64, 16, F.zrle_body(img, F.BGRX, stream, mode))), fb)
    np.testing.assert_array_equal(fb, img)


def test_hextile_overlapping_subrects_last_wins() -> None:
    client = F.connect(16, 16)
    red, green, blue = (np.array(c, np.uint8) for c in ([255, 0, 0], [0, 255, 0], [0, 0, 255]))
    subs = b"".join(
        F.pack_pixels(colour, F.BGRX) + bytes([(x << 4) | y, ((w - 1) << 4) | (h - 1)])
        for colour, x, y, w, h in ((green, 0, 0, 8, 8), (blue, 4, 4, 8, 8), (green, 6, 6, 2, 2))
    )
    body = bytes([2 | 8 | 16]) + F.pack_pixels(red, F.BGRX) + b"\x03" + subs
    events = run(client, F.update(F.rect(0, 0, 16, 16, 5, body)))
    pixels = events[1].pixels  # type: ignore[attr-defined]
    expected = np.empty((16, 16, 3), np.uint8)
    expected[:] = red
    expected[0:8, 0:8] = green
    expected[4:12, 4:12] = blue
    expected[6:8, 6:8] = green
    np.testing.assert_array_equal(pixels, expected)


def test_every_encoding_survives_any_fragmentation() -> None:
    """One update mixing all encodings, fed whole, byte by byte and in random chunks."""
    w, h = 80, 64
    img = F.random_image(h, w, 5, seed=4)

    def build() -> bytes:
        zs, zr, tg = (F.ZlibStream() for _ in range(3))
        return F.update(
            F.rect(0, 0, w, 16, 0, F.raw_body(img[:16], F.BGRX)),
            F.rect(0, 16, w, 16, 5, F.hextile_body(img[16:32], F.BGRX)),
            F.rect(0, 32, w, 8, 6, F.zlib_body(img[32:40], F.BGRX, zs)),
            F.rect(0, 40, w, 8, 16, F.zrle_body(img[40:48], F.BGRX, zr, "prle")),
            F.rect(0, 48, w, 16, 7, F.tight_palette(img[48:], F.BGRX, tg)),
            F.rect(0, 0, 8, 8, 1, struct.pack(">HH", 8, 8)),
        )

    data = build()
    expected = img.copy()
    expected[0:8, 0:8] = img[8:16, 8:16]
    rng = np.random.default_rng(9)
    for mode in ("whole", "bytes", "random"):
        client = F.connect(w, h)
        fb = np.zeros_like(img)
        if mode == "whole":
            chunks = [data]
        elif mode == "bytes":
            chunks = [data[i : i + 1] for i in range(len(data))]
        else:
            cuts = np.sort(rng.integers(0, len(data), 40))
            chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        events: list[Event] = []
        for chunk in chunks:
            events += client.receive_data(chunk)
        paint(events, fb)
        assert isinstance(events[-1], FramebufferUpdateEnd), mode
        np.testing.assert_array_equal(fb, expected, err_msg=mode)


def test_build_encodings_from_guacd_names() -> None:
    from guacr.handlers.vnc.constants import GUACD_DEFAULT_ENCODINGS, build_encodings

    assert build_encodings(GUACD_DEFAULT_ENCODINGS, cursor=False, desktop_resize=False)[:5] == [
        16,
        1,
        5,
        6,
        2,
    ]
    full = build_encodings("tight zrle", quality_level=6, compress_level=2)
    assert full[:2] == [7, 16]
    assert {-239, -308, -223, -224, -307, Encoding.EXTENDED_CLIPBOARD, -254, -26} <= set(full)
    assert build_encodings("bogus raw", quality_level=12, clipboard=False)[0] == 0
    assert Encoding.EXTENDED_CLIPBOARD not in build_encodings("raw", clipboard=False)
