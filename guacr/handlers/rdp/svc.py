"""Named static virtual channels (guacd's ``static-channels``), as pipe streams.

As guacd: each name in the comma-separated list (at most 7 characters, longer ones
truncated with a warning) is announced to the server as a static channel; once it is
joined, a ``pipe`` stream of that name (``application/octet-stream``) goes to every
user and carries what the server sends on it, one blob per complete channel message;
a ``pipe`` the owner or another writable user opens with that name carries data the
other way, each blob written to the channel as one message.

The channel is an aardwolf channel (joined with the others), with reassembly and
chunking of MS-RDPBCGR 2.2.6.1 done here. CHANNEL_OPTION_COMPRESS_RDP, which FreeRDP
sets for these channels, is left out: aardwolf does not decompress channel data.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from aardwolf.channels import Channel
from aardwolf.protocol.T124.userdata.constants import ChannelOption

MAX_NAME = 7  # CHANNEL_NAME_LEN: 8 bytes with the NUL
CHUNK = 1600  # CHANNEL_CHUNK_LENGTH, the chunk size every server accepts
FLAG_FIRST, FLAG_LAST = 0x01, 0x02


def channel_names(value: str, warn: Callable[[str], None]) -> list[str]:
    """guacd's parsing of ``static-channels``: split on commas, names cut to 7."""
    names: list[str] = []
    for raw in value.split(","):
        if not raw:
            continue
        name = raw[:MAX_NAME]
        if name != raw:
            warn(
                f'Static channel name "{raw[:64]}" exceeds maximum length of {MAX_NAME} '
                f'characters and will be truncated to "{name}".'
            )
        if name not in names:
            names.append(name)
    return names


def chunks(data: bytes) -> list[bytes]:
    """One message as Channel PDUs: CHANNEL_PDU_HEADER (total length, flags) + chunk."""
    out = []
    total = len(data)
    for start in range(0, max(total, 1), CHUNK):
        flags = (FLAG_FIRST if start == 0 else 0) | (FLAG_LAST if start + CHUNK >= total else 0)
        out.append(struct.pack("<II", total, flags) + data[start : start + CHUNK])
    return out


class Reassembler:
    """Channel PDUs back into messages (FIRST starts one, LAST ends it)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, pdu: bytes) -> bytes | None:
        if len(pdu) < 8:
            return None
        flags = struct.unpack_from("<I", pdu, 4)[0]
        if flags & FLAG_FIRST:
            self._parts = []
        self._parts.append(pdu[8:])
        if flags & FLAG_LAST:
            message, self._parts = b"".join(self._parts), []
            return message
        return None


class _Raw:
    """Bytes as aardwolf's ``handle_out_data`` takes a PDU (it calls ``to_bytes``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def to_bytes(self) -> bytes:
        return self._data


def channel_class(name: str) -> type[Channel]:
    """An aardwolf channel class for static channel ``name``; the instance reports to
    ``iosettings.guacr_svc_sink`` (``svc_opened(name, channel)``, ``svc_data(name,
    data)``)."""

    class PipeChannel(Channel):  # type: ignore[misc]
        def __init__(self, iosettings: Any) -> None:
            super().__init__(name, ChannelOption.INITIALIZED | ChannelOption.ENCRYPT_RDP)
            self.sink = getattr(iosettings, "guacr_svc_sink", None)
            self._in = Reassembler()
            self._lock = asyncio.Lock()

        async def start(self) -> tuple[bool, None]:
            if self.sink is not None:
                self.sink.svc_opened(name, self)
            return True, None

        async def process_channel_data(self, data: bytes) -> None:
            message = self._in.feed(bytes(data))
            if message is not None and self.sink is not None:
                self.sink.svc_data(name, message)

        async def write(self, data: bytes) -> None:
            """One message to the server, in chunks (sent together, in order)."""
            from aardwolf.protocol.T128.security import SEC_HDR_FLAG, TS_SECURITY_HEADER

            async with self._lock:
                for pdu in chunks(data):
                    sec_hdr = None
                    if getattr(self.connection, "cryptolayer", None) is not None:
                        sec_hdr = TS_SECURITY_HEADER()
                        sec_hdr.flags = SEC_HDR_FLAG.ENCRYPT
                        sec_hdr.flagsHi = 0
                    await self.send_channel_data(_Raw(pdu), sec_hdr, None, None, False)

    PipeChannel.name = name
    PipeChannel.__qualname__ = f"PipeChannel[{name}]"
    return PipeChannel
