"""Connection-sequence fields guacr sets itself, as FreeRDP 2.11 (guacd) builds them.

aardwolf hard-codes these (its client name, no alternate shell, no routing token, no
preconnection PDU, a fixed cluster block); :mod:`guacr.handlers.rdp.compat` puts the
values from :class:`StartupOptions` into what aardwolf sends. Pure functions, bytes out
(MS-RDPBCGR, MS-RDPEPS), so each is unit-tested on its bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CLIENT_NAME_UNITS = 15  # clientName: 32 bytes of UTF-16, the last unit NUL
PRECONNECTION_PDU_V2 = 0x2
PRECONNECTION_V2_MIN_SIZE = 18  # cbSize, Flags, Version, Id (4 each), cchPCB (2)
# TS_UD_CS_CLUSTER flags (MS-RDPBCGR 2.2.1.3.5), as FreeRDP writes them.
REDIRECTION_SUPPORTED = 0x01
REDIRECTED_SESSIONID_FIELD_VALID = 0x02
REDIRECTION_VERSION4 = 0x03 << 2
# TS_INFO_PACKET flags (2.2.1.11.1.1).
INFO_REMOTECONSOLEAUDIO = 0x00002000
INFO_NOAUDIOPLAYBACK = 0x00080000


@dataclass(frozen=True)
class StartupOptions:
    """What one connection asks for in its connection sequence (guacd's parameters)."""

    client_name: str = "Guacamole RDP"  # client-name
    alternate_shell: str = ""  # initial-program
    console: bool = False  # console
    console_audio: bool = False  # console-audio
    audio_playback: bool = True  # not disable-audio
    load_balance_info: str = ""  # load-balance-info
    preconnection_id: int | None = None  # preconnection-id
    preconnection_blob: str | None = None  # preconnection-blob
    time_zone: bytes | None = None  # TS_TIME_ZONE_INFORMATION (timezone), else aardwolf's

    @property
    def sends_preconnection_pdu(self) -> bool:
        return self.preconnection_id is not None or self.preconnection_blob is not None


def client_name(name: str) -> str:
    """``name`` cut to what fits clientName: 15 UTF-16 code units and a NUL, as
    FreeRDP truncates it (a character is never split)."""
    out, units = [], 0
    for ch in name:
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > CLIENT_NAME_UNITS:
            break
        out.append(ch)
        units += width
    return "".join(out)


def cluster_flags(console: bool) -> tuple[int, int]:
    """TS_UD_CS_CLUSTER (flags, redirectedSessionID): FreeRDP marks the session id
    valid and 0 (the console session) when ``console`` is asked for."""
    flags = REDIRECTION_SUPPORTED | REDIRECTION_VERSION4
    if console:
        flags |= REDIRECTED_SESSIONID_FIELD_VALID
    return flags, 0


def info_flags(flags: int, options: StartupOptions) -> int:
    """The Info Packet's flags with FreeRDP's audio bits for these options."""
    if options.console_audio:
        flags |= INFO_REMOTECONSOLEAUDIO
    if not options.audio_playback:
        flags |= INFO_NOAUDIOPLAYBACK
    return flags


def routing_token(value: str) -> bytes:
    """``load-balance-info`` as the X.224 Connection Request's routingToken: sent as is,
    CR LF added unless it already ends with one (FreeRDP's rule)."""
    token = value.encode("utf-8")
    return token if len(token) > 2 and token.endswith(b"\r\n") else token + b"\r\n"


def cookie(username: str) -> bytes | None:
    """The ``Cookie: mstshash=`` field FreeRDP sends without a routing token (the
    username, up to 255 bytes), or None without a username."""
    name = username.encode("utf-8")[:255]
    if not name or any(c in name for c in b"\r\n\0"):
        return None
    return b"Cookie: mstshash=" + name + b"\r\n"


def preconnection_pdu(pdu_id: int | None, blob: str | None) -> bytes:
    """RDP_PRECONNECTION_PDU_V2 (MS-RDPEPS 2.2.1.2), the first bytes on the connection,
    to pick a VM (Hyper-V). cchPCB counts the blob's UTF-16 units and its NUL (FreeRDP
    2.11 counts one unit more and sends 2 bytes beyond the string); no blob: cchPCB 0
    and nothing after it."""
    pcb = (blob + "\0").encode("utf-16-le") if blob is not None else b""
    size = PRECONNECTION_V2_MIN_SIZE + len(pcb)
    head = struct.pack("<IIIIH", size, 0, PRECONNECTION_PDU_V2, pdu_id or 0, len(pcb) // 2)
    return head + pcb
