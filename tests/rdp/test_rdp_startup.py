"""Connection-sequence parameters (``initial-program``, ``client-name``, ``console``,
``console-audio``, ``load-balance-info``, ``preconnection-id``/``-blob``, ``cert-tofu``).

End to end against an xrdp without guest's session (the first login creates it, so the
alternate shell runs) where xrdp shows the effect; on the bytes guacr sends, checked
against MS-RDPBCGR / MS-RDPEPS, where xrdp ignores the field (cluster flags, routing
token, preconnection PDU, audio flags).
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.xrdp import XrdpServer

from guacr.handlers.rdp import compat, startup
from guacr.handlers.rdp.client import RDPClient, RDPConfig, RDPConnectError
from guacr.handlers.rdp.handler import CERTIFICATE_REFUSED
from guacr.handlers.rdp.startup import StartupOptions
from tests.guacr_process import Guacr, run_guacr
from tests.rdp.test_rdp_handler import HANDLERS, error_of, values
from tests.vnc_handler.guac_session import GuacSession

# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def known_hosts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("known-hosts") / "rdp-known-hosts"


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory, known_hosts: Path) -> Iterator[Guacr]:
    env = {"GUACR_RDP_KNOWN_HOSTS": str(known_hosts)}
    with run_guacr(
        tmp_path_factory.mktemp("guacr-rdp-startup"), workers=1, handlers=HANDLERS, env=env
    ) as g:
        yield g


def test_initial_program_runs_and_client_name_reaches_xrdp(
    guacr: Guacr, fresh_xrdp: XrdpServer
) -> None:
    """initial-program is the new session's alternate shell (xrdp runs it instead of the
    window manager); client-name is the client core data's clientName, cut to 15
    characters as FreeRDP does (xrdp logs it). console, load-balance-info and
    timezone, which xrdp ignores, do not disturb the connection."""
    marker = Path(f"/tmp/guacr-rdp-initial-{secrets.token_hex(6)}")
    extra = {
        "initial-program": f"echo $DISPLAY > {marker}; exec sleep 600",
        "client-name": "guacr test client name",
        "console": "true",
        "load-balance-info": "tsv://MS Terminal Services Plugin.1.Sessions",
        "timezone": "Europe/Berlin",
    }
    try:
        with GuacSession(guacr) as s:
            s.connect(values(fresh_xrdp, **extra), protocol="rdp")
            s.wait_frames(1, 30)
            deadline = time.monotonic() + 30
            while not (marker.exists() and marker.read_text().startswith(":")):
                assert time.monotonic() < deadline, fresh_xrdp.log("sesman.log")[-2000:]
                s.pump(0.3)
            assert "Connected client computer name: guacr test clie\n" in fresh_xrdp.log()
            assert not s.errors
    finally:
        marker.unlink(missing_ok=True)


def test_cert_tofu_remembers_the_certificate_and_refuses_a_changed_one(
    guacr: Guacr, fresh_xrdp: XrdpServer, known_hosts: Path
) -> None:
    """cert-tofu (FreeRDP's auto-accept): an unknown certificate is trusted and recorded
    in the known-hosts file; a recorded one is trusted without cert-tofu too; a changed
    one is refused, even with cert-tofu, with guacd's 519 and text."""
    known_hosts.unlink(missing_ok=True)
    checking = {"ignore-cert": ""}
    fingerprint = fresh_xrdp.cert_fingerprint.removeprefix("sha256:")
    try:
        with GuacSession(guacr) as s:
            s.connect(values(fresh_xrdp, **checking, **{"cert-tofu": "true"}), protocol="rdp")
            s.wait_frames(1, 20)
            assert not s.errors
        line = f"{fresh_xrdp.host} {fresh_xrdp.port} {fingerprint}\n"
        assert known_hosts.read_text() == line
        with GuacSession(guacr) as s:  # recorded: trusted without cert-tofu
            s.connect(values(fresh_xrdp, **checking), protocol="rdp")
            s.wait_frames(1, 20)
            assert not s.errors
        changed = "00:" * 31 + "00"
        known_hosts.write_text(f"# edited\n{fresh_xrdp.host} {fresh_xrdp.port} {changed}\n")
        with GuacSession(guacr) as s:
            s.connect(values(fresh_xrdp, **checking, **{"cert-tofu": "true"}), protocol="rdp")
            assert error_of(s) == (CERTIFICATE_REFUSED, "519")
        assert "has CHANGED" in guacr.log()
        assert known_hosts.read_text().count("\n") == 2  # nothing added
    finally:
        known_hosts.unlink(missing_ok=True)


# --------------------------------------------------------------------------------- bytes


def test_client_name_is_cut_to_15_utf16_units() -> None:
    assert startup.client_name("Guacamole RDP") == "Guacamole RDP"
    assert startup.client_name("x" * 20) == "x" * 15
    # a character outside the BMP takes two units and is never split
    assert startup.client_name("a" * 14 + "\U0001f600") == "a" * 14


def test_cluster_data_asks_for_the_console_session() -> None:
    """TS_UD_CS_CLUSTER: FreeRDP's REDIRECTION_SUPPORTED | version 4, plus
    REDIRECTED_SESSIONID_FIELD_VALID with session id 0 for console."""
    from aardwolf.protocol.T124.userdata.clientclusterdata import TS_UD_CS_CLUSTER

    compat.install()
    for console, flags in ((False, 0x0D), (True, 0x0F)):
        block = TS_UD_CS_CLUSTER()
        block.Flags, block.RedirectedSessionID = 0, 7
        token = compat.STARTUP.set(StartupOptions(console=console))
        try:
            data = block.to_bytes()
        finally:
            compat.STARTUP.reset(token)
        assert data == struct.pack("<HHII", 0xC004, 12, flags, 0)


def test_info_packet_carries_the_alternate_shell_and_audio_flags() -> None:
    """TS_INFO_PACKET: AlternateShell (cbAlternateShell without the NUL);
    INFO_REMOTECONSOLEAUDIO for console-audio, INFO_NOAUDIOPLAYBACK for
    disable-audio (FreeRDP's rdp_write_info_packet)."""
    from aardwolf.protocol.T125.infopacket import INFO_FLAG, TS_INFO_PACKET

    def packet(options: StartupOptions) -> bytes:
        info = TS_INFO_PACKET()
        info.CodePage = 0
        info.flags = INFO_FLAG.UNICODE | INFO_FLAG.MOUSE
        info.Domain, info.UserName, info.Password = "", "guest", "pw"
        info.AlternateShell, info.WorkingDir, info.extrainfo = "", "", None
        compat._info_packet(info, options)
        data: bytes = info.to_bytes()
        return data

    data = packet(
        StartupOptions(alternate_shell="xterm -T X", console_audio=True, audio_playback=False)
    )
    flags, _, _, _, cb_shell = struct.unpack_from("<IHHHH", data, 4)
    assert flags & 0x00002000 and flags & 0x00080000 and flags & INFO_FLAG.UNICODE
    shell = "xterm -T X".encode("utf-16-le")
    assert cb_shell == len(shell)
    assert shell + b"\0\0" in data
    flags, _, _, _, cb_shell = struct.unpack_from("<IHHHH", packet(StartupOptions()), 4)
    assert not flags & (0x00002000 | 0x00080000) and cb_shell == 0


def test_preconnection_pdu_bytes() -> None:
    """RDP_PRECONNECTION_PDU_V2 (MS-RDPEPS 2.2.1.2): cbSize, Flags 0, Version 2, Id,
    cchPCB (UTF-16 units with the NUL), wszPCB."""
    blob = "vm-\u00e9"
    pcb = (blob + "\0").encode("utf-16-le")
    assert startup.preconnection_pdu(42, blob) == (
        struct.pack("<IIIIH", 18 + len(pcb), 0, 2, 42, 5) + pcb
    )
    assert startup.preconnection_pdu(7, None) == struct.pack("<IIIIH", 18, 0, 2, 7, 0)
    assert startup.preconnection_pdu(None, "b")[12:16] == b"\0\0\0\0"


def test_routing_token_and_cookie() -> None:
    assert startup.routing_token("tsv://x.1") == b"tsv://x.1\r\n"
    assert startup.routing_token("Cookie: msts=1\r\n") == b"Cookie: msts=1\r\n"
    assert startup.cookie("administrator") == b"Cookie: mstshash=administrator\r\n"
    assert startup.cookie("") is None


def first_bytes(options: StartupOptions, username: str = "guest") -> bytes:
    """What an RDPClient sends before the server's first answer (a loopback listener
    records it, then closes)."""

    async def run() -> bytes:
        got = bytearray()
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while len(got) < 4 or not _complete(bytes(got)):
                    chunk = await asyncio.wait_for(reader.read(4096), 5)
                    if not chunk:
                        break
                    got.extend(chunk)
            finally:
                writer.close()
                done.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = RDPConfig(
            host="127.0.0.1", port=port, username=username, password="pw", domain=None,
            width=1024, height=768, color_depth=32, timeout=5.0, startup=options,
        )  # fmt: skip
        try:
            with pytest.raises(RDPConnectError):
                await RDPClient(config, _NoSink()).connect()
            await asyncio.wait_for(done.wait(), 5)
        finally:
            server.close()
        return bytes(got)

    def _complete(data: bytes) -> bool:
        if options.sends_preconnection_pdu:  # then a TLS record: 5-byte header + length
            rest = data[struct.unpack_from("<I", data)[0] :]
            return len(rest) >= 5 and len(rest) >= 5 + struct.unpack_from(">H", rest, 3)[0]
        return len(data) >= 4 and len(data) >= struct.unpack_from(">H", data, 2)[0]

    return asyncio.run(run())


class _NoSink:
    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: None


def test_preconnection_pdu_then_security_without_negotiation() -> None:
    """On the wire, as FreeRDP for guacd: the preconnection PDU first (raw, no TPKT),
    then no X.224 Connection Request (security negotiation is off with it): the TLS
    handshake of the highest protocol asked for starts at once."""
    data = first_bytes(StartupOptions(preconnection_id=3, preconnection_blob="vm"))
    pdu = startup.preconnection_pdu(3, "vm")
    assert data.startswith(pdu)
    assert data[len(pdu) : len(pdu) + 2] == b"\x16\x03"  # a TLS handshake record


def test_routing_token_replaces_the_cookie_in_the_x224_request() -> None:
    """load-balance-info is the X.224 Connection Request's routingToken with CR LF
    (instead of the mstshash cookie), followed by RDP_NEG_REQ."""
    data = first_bytes(StartupOptions(load_balance_info="tsv://MS Terminal Services Plugin.1"))
    assert data[:2] == b"\x03\x00" and struct.unpack_from(">H", data, 2)[0] == len(data)
    assert data[5] == 0xE0  # X.224 CR
    token = b"tsv://MS Terminal Services Plugin.1\r\n"
    assert data[11 : 11 + len(token)] == token
    assert data[11 + len(token)] == 0x01  # TYPE_RDP_NEG_REQ follows
    assert b"mstshash" not in data


def test_cookie_is_the_whole_username_without_load_balance_info() -> None:
    data = first_bytes(StartupOptions(), username="a-long-user-name")
    assert data[:2] == b"\x03\x00"  # no preconnection PDU
    assert data[11:].startswith(b"Cookie: mstshash=a-long-user-name\r\n")


def test_time_zone_information_as_winpr_builds_it() -> None:
    """TS_TIME_ZONE_INFORMATION (MS-RDPBCGR 2.2.1.11.1.1.1) for Europe/Berlin, the
    values WinPR's table has for "W. Europe Standard Time": Bias -60, daylight time
    from the last Sunday of March 02:00 to the last Sunday of October 03:00, -60."""
    from datetime import UTC, datetime

    from guacr.handlers.rdp.timezone import time_zone_information

    def name(text: str) -> bytes:
        return text.encode("utf-16-le").ljust(64, b"\0")

    data = time_zone_information("Europe/Berlin", datetime(2026, 1, 15, tzinfo=UTC))
    assert data == (
        struct.pack("<i", -60)
        + name("W. Europe Standard Time") + struct.pack("<8H", 0, 10, 0, 5, 3, 0, 0, 0)
        + struct.pack("<i", 0)
        + name("W. Europe Daylight Time") + struct.pack("<8H", 0, 3, 0, 5, 2, 0, 0, 0)
        + struct.pack("<i", -60)
    )  # fmt: skip
    # New York: second Sunday of March, first Sunday of November, 02:00; Bias 300
    ny = time_zone_information("America/New_York", datetime(2026, 7, 1, tzinfo=UTC))
    assert struct.unpack_from("<i", ny)[0] == 300
    assert struct.unpack_from("<8H", ny, 68) == (0, 11, 0, 1, 2, 0, 0, 0)
    assert struct.unpack_from("<8H", ny, 152) == (0, 3, 0, 2, 2, 0, 0, 0)
    # no daylight saving: no dates, no daylight bias; WinPR's own name for UTC
    utc = time_zone_information("UTC")
    assert utc[4:68] == name("Coordinated Universal Time") and utc[68:] == (
        bytes(20) + name("Coordinated Universal Time") + bytes(20)
    )
    # unknown: "Client Local Time", offset 0, as WinPR falls back
    unknown = time_zone_information("Nowhere/Nothing")
    assert unknown[:4] == bytes(4) and unknown[4:68] == name("Client Local Time")


def test_info_packet_carries_the_time_zone() -> None:
    from types import SimpleNamespace

    from aardwolf.protocol.T125.infopacket import INFO_FLAG

    tz = b"\x01" * 172
    info = SimpleNamespace(flags=INFO_FLAG.UNICODE, extrainfo=SimpleNamespace(clientTimeZone=None))
    compat._info_packet(info, StartupOptions(time_zone=tz))
    assert info.extrainfo.clientTimeZone.to_bytes() == tz


def test_static_channel_names_chunks_and_reassembly() -> None:
    """guacd's static-channels list (names cut to 7 with a warning); messages as
    Channel PDUs (MS-RDPBCGR 2.2.6.1: total length, FIRST/LAST flags, 1600-byte
    chunks) and back."""
    from guacr.handlers.rdp import svc

    warnings: list[str] = []
    assert svc.channel_names("abc,,toolongname,abc", warnings.append) == ["abc", "toolong"]
    assert len(warnings) == 1 and '"toolong"' in warnings[0]
    message = bytes(range(256)) * 13  # 3328 bytes: three chunks
    pdus = svc.chunks(message)
    assert [struct.unpack_from("<II", p) for p in pdus] == [(3328, 1), (3328, 0), (3328, 2)]
    assert [len(p) - 8 for p in pdus] == [1600, 1600, 128]
    assert svc.chunks(b"x") == [struct.pack("<II", 1, 3) + b"x"]
    joined = svc.Reassembler()
    assert [joined.feed(p) for p in pdus] == [None, None, message]
