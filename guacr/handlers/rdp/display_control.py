"""The Display Control dynamic virtual channel (MS-RDPEDISP): resizing a live session.

guacd's ``resize-method=display-update``: the client's new size goes to the server as a
monitor layout; the server resizes its desktop and re-activates the session at the new
size (handled by compat's ``deactivation_reactivation``). aardwolf has no such channel;
this is one on its dynamic-virtual-channel base.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from aardwolf.extensions.RDPEDYC.vchannels import VirtualChannelBase

CHANNEL_NAME = "Microsoft::Windows::RDS::DisplayControl"
PDU_CAPS = 0x5
PDU_MONITOR_LAYOUT = 0x2
MONITOR_PRIMARY = 0x1
MIN_SIZE, MAX_SIZE = 200, 8192


def layout_pdu(width: int, height: int) -> bytes:
    """DISPLAYCONTROL_MONITOR_LAYOUT_PDU for one primary monitor of width x height."""
    monitor = struct.pack(
        "<IiiIIIIIII", MONITOR_PRIMARY, 0, 0, width, height, 0, 0, 0, 100, 100
    )  # flags, left, top, size, physical size, orientation, desktop/device scale
    body = struct.pack("<II", len(monitor), 1) + monitor
    return struct.pack("<II", PDU_MONITOR_LAYOUT, 8 + len(body)) + body


def clamp_size(width: int, height: int) -> tuple[int, int]:
    """A requested size as guacd fits it: shrunk into 8192x8192 keeping the aspect
    ratio, then at least 200 each way (ratio not kept), width even."""
    width, height = max(1, width), max(1, height)
    max_w, max_h = min(MAX_SIZE, width), min(MAX_SIZE, height)
    if max_w * height < max_h * width:
        num, den = max_w, width
    else:
        num, den = max_h, height
    width, height = width * num // den, height * num // den
    width, height = max(MIN_SIZE, width), max(MIN_SIZE, height)
    return width - width % 2, height


class DisplayControl(VirtualChannelBase):  # type: ignore[misc]
    """The client end of the channel: waits for the server's caps, sends layouts."""

    def __init__(self) -> None:
        super().__init__(CHANNEL_NAME)
        self.ready = asyncio.Event()
        self.max_monitors = 0

    async def channel_data_in(self, data: bytes) -> None:
        if len(data) >= 20:
            kind, _length, monitors = struct.unpack_from("<III", data)
            if kind == PDU_CAPS:
                self.max_monitors = monitors
                self.ready.set()

    async def set_size(self, width: int, height: int) -> Any:
        width, height = clamp_size(width, height)
        return await self.channel_data_out(layout_pdu(width, height))
