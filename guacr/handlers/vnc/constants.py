"""RFB numbers: encodings, pseudo-encodings, security types, message types.

Also maps guacd's ``encodings`` parameter names to numbers, so the handler can pass the
user's string straight through.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class Encoding(IntEnum):
    RAW = 0
    COPYRECT = 1
    RRE = 2
    HEXTILE = 5
    ZLIB = 6
    TIGHT = 7
    ZRLE = 16
    # pseudo-encodings
    JPEG_QUALITY_0 = -32  # ... -23 for level 9
    DESKTOP_SIZE = -223
    LAST_RECT = -224
    CURSOR = -239
    COMPRESS_LEVEL_0 = -256  # ... -247 for level 9
    DESKTOP_NAME = -307
    EXTENDED_DESKTOP_SIZE = -308
    EXTENDED_CLIPBOARD = -1063131698  # 0xC0A1E5CE as s32


class SecurityType(IntEnum):
    INVALID = 0
    NONE = 1
    VNC_AUTH = 2
    VENCRYPT = 19


class VeNCryptSubtype(IntEnum):
    PLAIN = 256
    TLS_NONE = 257
    TLS_VNC = 258
    TLS_PLAIN = 259
    X509_NONE = 260
    X509_VNC = 261
    X509_PLAIN = 262


class ServerMsg(IntEnum):
    FRAMEBUFFER_UPDATE = 0
    SET_COLOUR_MAP_ENTRIES = 1
    BELL = 2
    SERVER_CUT_TEXT = 3


class ClientMsg(IntEnum):
    SET_PIXEL_FORMAT = 0
    SET_ENCODINGS = 2
    FRAMEBUFFER_UPDATE_REQUEST = 3
    KEY_EVENT = 4
    POINTER_EVENT = 5
    CLIENT_CUT_TEXT = 6
    SET_DESKTOP_SIZE = 251


# Encodings whose rectangles our decoders understand.
SUPPORTED_ENCODINGS = frozenset(
    {
        Encoding.RAW,
        Encoding.COPYRECT,
        Encoding.RRE,
        Encoding.HEXTILE,
        Encoding.ZLIB,
        Encoding.TIGHT,
        Encoding.ZRLE,
    }
)

# guacd's ``encodings`` parameter words. "ultra" and "corre" are accepted but not
# implemented (as with an unknown word, they are skipped).
ENCODING_NAMES: dict[str, int] = {
    "raw": Encoding.RAW,
    "copyrect": Encoding.COPYRECT,
    "rre": Encoding.RRE,
    "hextile": Encoding.HEXTILE,
    "zlib": Encoding.ZLIB,
    "tight": Encoding.TIGHT,
    "zrle": Encoding.ZRLE,
}

GUACD_DEFAULT_ENCODINGS = "zrle ultra copyrect hextile zlib corre rre raw"

# Words libvncclient (and so guacd) understands that guacr does not decode: skipped,
# and logged so an operator knows the server will not be asked for them.
LIBVNC_ONLY_ENCODINGS = frozenset({"ultra", "corre", "zlibhex", "trle", "zywrle", "ultrazip"})

# libvncclient's defaults for its compress and quality levels, asked for when an
# encoding that uses them is requested (Tight: both; zlib: compression).
LIBVNC_COMPRESS_LEVEL = 3
LIBVNC_QUALITY_LEVEL = 5


def skipped_encodings(names: str) -> tuple[list[str], list[str]]:
    """Words of an ``encodings`` string guacr skips: (known to libvncclient, unknown)."""
    known: list[str] = []
    unknown: list[str] = []
    for word in names.split():
        w = word.lower()
        if w in ENCODING_NAMES:
            continue
        (known if w in LIBVNC_ONLY_ENCODINGS else unknown).append(word)
    return known, unknown


def libvnc_levels(
    names: str, compress_level: int | None, quality_level: int | None
) -> tuple[int | None, int | None]:
    """The compress and quality levels libvncclient would request for ``names``: the
    given ones, else its defaults (3, 5) when Tight (or zlib, for compression) is asked."""
    words = {w.lower() for w in names.split()}
    if compress_level is None and words & {"tight", "zlib"}:
        compress_level = LIBVNC_COMPRESS_LEVEL
    if quality_level is None and "tight" in words:
        quality_level = LIBVNC_QUALITY_LEVEL
    return compress_level, quality_level


# VeNCrypt sub-types that wrap everything after them in TLS.
TLS_SUBTYPES = frozenset(
    {
        VeNCryptSubtype.TLS_NONE,
        VeNCryptSubtype.TLS_VNC,
        VeNCryptSubtype.TLS_PLAIN,
        VeNCryptSubtype.X509_NONE,
        VeNCryptSubtype.X509_VNC,
        VeNCryptSubtype.X509_PLAIN,
    }
)
# Sub-types using anonymous Diffie-Hellman (no certificate).
ANON_TLS_SUBTYPES = frozenset(
    {VeNCryptSubtype.TLS_NONE, VeNCryptSubtype.TLS_VNC, VeNCryptSubtype.TLS_PLAIN}
)


def build_encodings(
    names: str | Iterable[str] = GUACD_DEFAULT_ENCODINGS,
    *,
    cursor: bool = True,
    desktop_resize: bool = True,
    clipboard: bool = True,
    quality_level: int | None = None,
    compress_level: int | None = None,
) -> list[int]:
    """The SetEncodings list for a guacd-style ``encodings`` string plus pseudo-encodings.

    ``quality_level`` (0-9) enables Tight JPEG; ``compress_level`` (0-9) tunes Tight/ZRLE.
    Unknown words are skipped, like libvncclient does.
    """
    words = names.split() if isinstance(names, str) else list(names)
    result: list[int] = []
    for word in words:
        number = ENCODING_NAMES.get(word.lower())
        if number is not None and number not in result:
            result.append(number)
    if cursor:
        result.append(Encoding.CURSOR)
    if desktop_resize:
        result += [Encoding.EXTENDED_DESKTOP_SIZE, Encoding.DESKTOP_SIZE]
    result += [Encoding.LAST_RECT, Encoding.DESKTOP_NAME]
    if clipboard:
        result.append(Encoding.EXTENDED_CLIPBOARD)
    if compress_level is not None and 0 <= compress_level <= 9:
        result.append(Encoding.COMPRESS_LEVEL_0 + compress_level)
    if quality_level is not None and 0 <= quality_level <= 9:
        result.append(Encoding.JPEG_QUALITY_0 + quality_level)
    return result
