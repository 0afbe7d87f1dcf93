"""Server status PDUs on guacr's RDP receive path: Set Error Info and Set Keyboard
Indicators, built byte for byte as MS-RDPBCGR lays them out (TPKT, X.224, MCS Send Data
Indication, share control and share data headers), fed to the MCS channel as aardwolf's
reader does, and checked where the handler acts on them (guacd's status and text; the
lock-key state the next synchronisation sends)."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest

from guacr.handlers.rdp import compat
from guacr.handlers.rdp.client import RDPClient, RDPConfig, _Adapter
from guacr.handlers.rdp.handler import RDPHandler
from guacr.protocol.status import Status

IO_CHANNEL = 1003
SERVER_USER = 1002  # pduSource: the server's MCS channel
PDUTYPE_DATAPDU = 0x7 | 0x10  # TS_PROTOCOL_VERSION in the high bits
PDUTYPE2_SET_ERROR_INFO = 0x2F
PDUTYPE2_SET_KEYBOARD_INDICATORS = 0x29


def share_data_pdu(pdu_type2: int, body: bytes) -> bytes:
    """TS_SHARECONTROLHEADER + TS_SHAREDATAHEADER + body (MS-RDPBCGR 2.2.8.1.1.1)."""
    data_header = struct.pack(
        "<IBBHBBH", compat.SHARE_ID, 0, 0x01, len(body) + 4, pdu_type2, 0, 0
    )  # shareId, pad1, streamId LOW, uncompressedLength, pduType2, compressedType/Length
    total = 6 + len(data_header) + len(body)
    return struct.pack("<HHH", total, PDUTYPE_DATAPDU, SERVER_USER) + data_header + body


def frame(user_data: bytes, channel: int = IO_CHANNEL) -> bytes:
    """The whole slow-path PDU: TPKT, X.224 Data TPDU, MCS Send Data Indication (PER)."""
    length = len(user_data)
    per_length = bytes([length]) if length < 0x80 else struct.pack(">H", 0x8000 | length)
    mcs = (
        bytes([26 << 2])  # DomainMCSPDU choice 26: sendDataIndication
        + struct.pack(">HH", 1007 - 1001, channel)  # initiator (minus 1001), channelId
        + bytes([0x70])  # dataPriority high, segmentation begin|end
        + per_length
        + user_data
    )
    x224 = b"\x02\xf0\x80"
    return struct.pack(">BBH", 3, 0, 4 + len(x224) + len(mcs)) + x224 + mcs


def mcs_user_data(pdu: bytes) -> tuple[int, bytes]:
    """What the reader hands the channel: the T.125 PER decode of the frame by guacr's
    codec (the one in use), checked against asn1tools' (aardwolf's own)."""
    from aardwolf.protocol.T125.MCSPDU_ver_2 import MCSPDU_ver_2

    from guacr.handlers.rdp.pdu import FastMCSCodec

    compat.preload()
    assert pdu[:2] == b"\x03\x00" and struct.unpack(">H", pdu[2:4])[0] == len(pdu)
    assert pdu[4:7] == b"\x02\xf0\x80"
    asn1 = compat._compile(MCSPDU_ver_2, "per")
    kind, value = FastMCSCodec(asn1).decode("DomainMCSPDU", pdu[7:])
    assert kind == "sendDataIndication"
    assert asn1.decode("DomainMCSPDU", pdu[7:])[1]["userData"] == value["userData"]
    return value["channelId"], bytes(value["userData"])


def handler() -> Any:
    """An RDP handler's sink side, without a connection."""
    h = object.__new__(RDPHandler)
    h.__dict__.update(
        _failure=None, _locks=0, _locks_synced=False, _held={}, log=logging.getLogger("test")
    )
    return h


def receive(sink: Any, pdu: bytes) -> None:
    """One server PDU through the MCS channel's receive path into ``sink``."""
    from aardwolf.channels import MCSChannel

    channel_id, user_data = mcs_user_data(pdu)
    assert channel_id == IO_CHANNEL

    async def main() -> None:
        client = RDPClient(RDPConfig("h", 1, "u", "p", None, 1024, 768, 32), sink)
        channel = MCSChannel()
        channel.connection = type("Conn", (), {"guacr_sink": _Adapter(client)})()
        await channel.process_channel_data(user_data)
        assert channel.out_queue.empty(), "the PDU was left for aardwolf's queue"

    asyncio.run(main())


# MS-RDPBCGR 2.2.5.1.1 errorInfo -> guacd 1.6.1's status and text (rdp/error.c).
GUACD = [
    (0x00000001, Status.SESSION_CLOSED, "Forcibly disconnected."),
    (0x00000002, Status.SESSION_CLOSED, "Logged off."),
    (0x00000003, Status.SESSION_TIMEOUT, "Idle session time limit exceeded."),
    (0x00000004, Status.SESSION_CLOSED, "Active session time limit exceeded."),
    (0x00000005, Status.SESSION_CONFLICT, "Disconnected by other connection."),
    (0x00000006, Status.UPSTREAM_UNAVAILABLE, "Server refused connection."),
    (0x00000007, Status.UPSTREAM_UNAVAILABLE, "Server refused connection."),
    (0x00000009, Status.CLIENT_FORBIDDEN, "Insufficient privileges."),
    (0x0000000A, Status.CLIENT_FORBIDDEN, "Credentials expired."),
    (0x0000000B, Status.SUCCESS, "Manually disconnected."),
    (0x0000000C, Status.SUCCESS, "Manually logged off."),
    # Anything else, e.g. ERRINFO_LICENSE_NO_LICENSE and a protocol error code.
    (0x00000102, Status.UPSTREAM_ERROR, "Upstream error."),
    (0x000010C9, Status.UPSTREAM_ERROR, "Upstream error."),
]


@pytest.mark.parametrize("code, status, message", GUACD)
def test_set_error_info_pdu_gives_guacds_status_and_text(
    code: int, status: Status, message: str
) -> None:
    h = handler()
    receive(h, frame(share_data_pdu(PDUTYPE2_SET_ERROR_INFO, struct.pack("<I", code))))
    assert h._failure == (status, message)


def test_error_info_success_is_not_a_failure() -> None:
    """ERRINFO_NONE (sent by servers before a normal disconnect) keeps "Disconnected."."""
    h = handler()
    receive(h, frame(share_data_pdu(PDUTYPE2_SET_ERROR_INFO, struct.pack("<I", 0))))
    assert h._failure is None


class Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def synchronize(self, flags: int) -> None:
        self.sent.append(flags)


@pytest.mark.parametrize("leds", [0x0, 0x2, 0x4, 0x6, 0x7])
def test_set_keyboard_indicators_pdu_sets_the_lock_state(leds: int) -> None:
    """guacd takes the server's LED flags as its lock state: the first key's
    synchronisation then sends exactly those (no lock is flipped back)."""
    h = handler()
    h._locks = 0x4  # the client had Caps Lock on
    body = struct.pack("<HH", 0, leds)  # unitId (0), ledFlags
    receive(h, frame(share_data_pdu(PDUTYPE2_SET_KEYBOARD_INDICATORS, body)))
    assert h._locks == leds
    rdp = Recorder()
    h._update_locks(rdp, 0x61, True)  # "a": the session's first key
    assert rdp.sent == [leds]
    h._update_locks(rdp, 0xFFB1, True)  # KP_1 needs Num Lock: turned on only if off
    assert rdp.sent == [leds] if leds & 0x2 else [leds, leds | 0x2]


def test_long_pdu_uses_two_byte_per_length() -> None:
    """A PDU over 127 bytes of user data (two-byte PER length) parses the same way."""
    h = handler()
    body = struct.pack("<I", 0x3) + bytes(200)  # trailing padding a server may add
    pdu = frame(share_data_pdu(PDUTYPE2_SET_ERROR_INFO, body))
    assert pdu[7 + 6] & 0x80
    receive(h, pdu)
    assert h._failure == (Status.SESSION_TIMEOUT, "Idle session time limit exceeded.")
