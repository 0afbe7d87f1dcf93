"""guacr's fixes to aardwolf 0.2.16, so it works against xrdp 0.9 (and stays bounded).

aardwolf is the only maintained asyncio RDP client on PyPI, but against xrdp it cannot
connect, decode or log in without these changes. Each fix is small, named after the
problem it solves, and switched by one flag in :data:`ENABLED`, so a test can turn one
off and see the symptom come back (``tests/rdp/test_compat.py``). They patch aardwolf
at run time, once, in :func:`install`; upstream versions of them should go to aardwolf.

* ``mcs_user_channel_join``: aardwolf never joins the MCS user channel; xrdp counts the
  joins and aborts ("receive channel join request failed"), showing up as a licensing
  timeout.
* ``unknown_capability_sets``: the strict capability-type enum raises on type 6 in
  xrdp's Demand Active; unknown sets are skipped instead.
* ``client_first_finalization``: aardwolf waits for the server's Synchronize before
  sending its own, xrdp waits for the client's: deadlock. Our Synchronize, Control x2
  and Font List go out right after Confirm Active; aardwolf's later copies are dropped.
* ``share_data_header_length``: aardwolf counts the share data header as 24 bytes (it is
  18), so every slow-path PDU, input included, is 6 bytes "too long" for xrdp.
* ``slow_path_bitmaps``: xrdp sends bitmaps as slow-path Update PDUs, which aardwolf
  leaves in an unbounded queue; they are decoded and handed to the session's sink.
  Slow-path pointer PDUs and Set Error Info are handled there too.
* ``padded_bitmap_width``: xrdp pads bitmap widths to a multiple of 4; decode with the
  bitmap's own size, then crop to the destination rectangle.
* ``auto_logon``: without INFO_AUTOLOGON xrdp shows its login dialog even with a
  password.
* ``bulk_decompression_length``: xrdp's ``uncompressedLength`` disagrees with aardwolf's
  strict check by the header size; the length is not enforced.
* ``request_32bpp``: aardwolf has no 32 bpp branch and never sets WANT_32BPP_SESSION.
* ``pixel_order_32bpp``: at 32 bpp the decoder returns B,G,R with alpha 0.
* ``fast_path_updates``: aardwolf decodes fast-path bitmaps into a PIL desktop copy
  with the padded-width bug and drops pointer updates (xrdp sends its pointers on the
  fast path); both go to the session's sink instead, bitmaps through guacr's decoder.
* ``dvc_version_2``: aardwolf answers the dynamic virtual channel capabilities with
  version 1, which xrdp 0.9 rejects ("Dynamic Virtual Channel version 1 is not
  supported"): no Display Control, no resize. Version 2 is answered instead.
* ``deactivation_reactivation``: after a Display Control layout change xrdp sends
  Deactivate All and a new Demand Active with the new size; aardwolf queues them
  forever. The session is re-activated (capability exchange again) at the new size.
* ``clipboard_startup``: aardwolf announces ~20 empty clipboard formats at start-up,
  so xrdp's chansrv takes the X CLIPBOARD from its owner and answers pastes with
  failures; an empty list is announced instead. A server format list arriving before
  our list is acknowledged was dropped; it is handled like one arriving later.

Plus hooks that are not interop fixes: the ASN.1 codecs aardwolf compiles on every
connect (0.43 s of CPU) are loaded once per process by :func:`preload` (the handler
module calls it, so the fork server does it before forking and workers share them;
unpickled from ``__pycache__`` after the first compile); :data:`CERT_CHECK` sees the
server certificate right after the TLS handshake (guacd's ``ignore-cert`` /
``cert-fingerprints``, ``cert-tofu``); :data:`UPSTREAM_SOCKET` lets aardwolf run over a
socket opened by guacr's shared upstream service; :data:`STARTUP` puts the connection's
own connection-sequence fields (:mod:`guacr.handlers.rdp.startup`: client name,
alternate shell, console, audio flags, time zone, routing token or cookie,
preconnection PDU) where aardwolf hard-codes or lacks them.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import io
import logging
import os
import pickle
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from guacr.handlers.rdp import startup
from guacr.handlers.rdp.pdu import (
    Bitmap,
    FastMCSCodec,
    decompress_share_data,
    is_screen_update,
    parse_bitmap_update,
)
from guacr.handlers.rdp.startup import StartupOptions

log = logging.getLogger("guacr.rdp")

U8 = npt.NDArray[np.uint8]

FIXES: tuple[str, ...] = (
    "mcs_user_channel_join",
    "unknown_capability_sets",
    "client_first_finalization",
    "share_data_header_length",
    "slow_path_bitmaps",
    "padded_bitmap_width",
    "auto_logon",
    "bulk_decompression_length",
    "request_32bpp",
    "pixel_order_32bpp",
    "clipboard_startup",
    "fast_path_updates",
    "dvc_version_2",
    "deactivation_reactivation",
)
ENABLED: dict[str, bool] = dict.fromkeys(FIXES, True)

# Not fixes: guacr's own parsing of the hot PDUs (:mod:`guacr.handlers.rdp.pdu`) in
# place of aardwolf's; switchable so ``benchmarks/bench_rdp.py`` can measure both.
OWN_PARSERS: dict[str, bool] = {"mcs": True, "bitmap_update": True, "share_data": True}

SHARE_ID = 0x103EA
# Set in the task that connects: core data serialised there asks for a 32 bpp session.
# A context variable, so concurrent connections in one worker do not see each other's.
WANT_32BPP: contextvars.ContextVar[bool] = contextvars.ContextVar("guacr_want_32bpp", default=False)
# The connection's own connection-sequence fields (client name, alternate shell,
# console, routing token, preconnection PDU, time zone; guacr.handlers.rdp.startup).
STARTUP: contextvars.ContextVar[StartupOptions | None] = contextvars.ContextVar(
    "guacr_startup", default=None
)
# A connected socket for aardwolf to use instead of opening its own TCP connection.
UPSTREAM_SOCKET: contextvars.ContextVar[socket.socket | None] = contextvars.ContextVar(
    "guacr_upstream_socket", default=None
)
# Called with the server's DER certificate after the TLS handshake; raises to refuse it.
CERT_CHECK: contextvars.ContextVar[Callable[[bytes], Awaitable[None] | None] | None] = (
    contextvars.ContextVar("guacr_cert_check", default=None)
)
_installed = False


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Turn fixes off for the duration (tests prove each is needed)."""
    for name in names:
        if name not in ENABLED:
            raise KeyError(name)
    saved = {n: ENABLED[n] for n in names}
    try:
        for n in names:
            ENABLED[n] = False
        yield
    finally:
        ENABLED.update(saved)


# ------------------------------------------------------------------ ASN.1 codecs


_codecs: dict[tuple[str, str], Any] = {}


def _compile(spec: str, codec: str) -> Any:
    found = _codecs.get((spec, codec))
    if found is None:
        import asn1tools

        found = _codecs[(spec, codec)] = asn1tools.compile_string(spec, codec)
    return found


def _load_codecs(specs: list[tuple[str, str]]) -> None:
    """Compile aardwolf's codecs, or load them from a pickle next to this module.

    Compiling costs ~0.45-1 s of CPU (asn1tools parses the ASN.1 text each time);
    unpickling the result ~15 ms. The file lives in this package's ``__pycache__``
    (trusted like the bytecode there), keyed by the specs and asn1tools' version;
    if it cannot be read or written, the codecs are simply compiled.
    """
    import asn1tools

    key = hashlib.sha256(repr((asn1tools.__version__, specs)).encode()).hexdigest()[:16]
    path = Path(__file__).parent / "__pycache__" / f"asn1-{key}.pickle"
    try:
        loaded = pickle.loads(path.read_bytes())
        if isinstance(loaded, dict) and set(loaded) == set(specs):
            _codecs.update(loaded)
            return
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
        pass
    compiled = {sc: _compile(*sc) for sc in specs}
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(compiled, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError:
        pass


class _CachedAsn1:
    """Stands in for the ``asn1tools`` module inside aardwolf.connection."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def compile_string(self, spec: str, codec: str = "ber", **kw: Any) -> Any:
        if kw:
            return self._real.compile_string(spec, codec, **kw)
        compiled = _compile(spec, codec)
        if codec == "per" and "SendDataIndication" in spec:
            return _MCSCodec(compiled)  # T.125: the codec every incoming PDU goes through
        return compiled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _MCSCodec(FastMCSCodec):
    def decode(self, name: str, data: bytes, *args: Any, **kw: Any) -> Any:
        if OWN_PARSERS["mcs"]:
            return super().decode(name, data, *args, **kw)
        return self._codec.decode(name, data, *args, **kw)


def preload() -> None:
    """Import aardwolf, apply the fixes and compile its ASN.1 codecs (once per process)."""
    install()
    from aardwolf.protocol.T124.GCCPDU import GCCPDU
    from aardwolf.protocol.T125.MCSPDU_ver_2 import MCSPDU_ver_2

    _load_codecs([(MCSPDU_ver_2, "ber"), (MCSPDU_ver_2, "per"), (GCCPDU, "per")])


# ------------------------------------------------------------------ bitmap decode


def from_aardwolf(bd: Any) -> Bitmap:
    """aardwolf's TS_BITMAP_DATA (its fast-path parser) as guacr's :class:`Bitmap`."""
    return Bitmap(
        bd.destLeft, bd.destTop, bd.destRight, bd.destBottom, bd.width, bd.height,
        bd.bitsPerPixel, bd.flagsInt, bd.bitmapDataStream,
    )  # fmt: skip


def decode_bitmap(bd: Bitmap) -> tuple[int, int, U8] | None:
    """One bitmap -> (x, y, pixels) cropped to its destination rectangle.

    ``pixels`` is (h, w, 3) RGB or (h, w, 4) RGBX, as the display engine's ``blit``
    takes it. At 32 bpp it is a channel-reversed view of the decoder's B,G,R,X output,
    not a copy: the blit into the framebuffer is the only copy of the pixels.
    """
    from aardwolf import _rle

    dw = bd.right - bd.left + 1
    dh = bd.bottom - bd.top + 1
    bpp = bd.bpp
    if dw <= 0 or dh <= 0:
        return None
    if ENABLED["padded_bitmap_width"]:
        w, h = bd.width, bd.height
    else:
        w, h = dw, dh
    raw = _rle.bitmap_decompress(bd.data, w, h, bpp, bd.flags & 0x0001)
    pixels: U8 = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 4)
    if bpp == 32 and ENABLED["pixel_order_32bpp"]:
        pixels = pixels[..., 2::-1]
    return bd.left, bd.top, pixels[:dh, :dw]


# ------------------------------------------------------------------------ install


def install() -> None:
    """Apply every fix to aardwolf (idempotent; flags in ENABLED switch them)."""
    global _installed
    if _installed:
        return
    import aardwolf.connection as conn_mod

    if not isinstance(conn_mod.asn1tools, _CachedAsn1):
        conn_mod.asn1tools = _CachedAsn1(conn_mod.asn1tools)
    _patch_join(conn_mod.RDPConnection)
    _patch_caps()
    _patch_out(conn_mod.RDPConnection)
    _patch_mcs()
    _patch_bulk()
    _patch_core_data()
    _patch_tls()
    _patch_clipboard()
    _patch_fastpath(conn_mod.RDPConnection)
    _patch_upstream()
    _patch_dvc()
    _patch_share_data(conn_mod)
    _patch_startup()
    _installed = True


def _patch_share_data(conn_mod: Any) -> None:
    """Not a fix: guacr's cheaper share data handling in aardwolf's reader (pdu.py)."""
    normalize = conn_mod.normalize_share_data_pdu
    cls = conn_mod.RDPConnection
    save_session_info = cls._RDPConnection__process_save_session_info
    check_logon_status = cls.check_logon_status

    def normalize_share_data_pdu(data: bytes, decompressor: Any) -> bytes:
        if OWN_PARSERS["share_data"]:
            done = decompress_share_data(data, decompressor)
            if done is not None:
                return done
        result: bytes = normalize(data, decompressor)
        return result

    async def process_save_session_info(
        self: Any, channel_id: int, data: bytes | None, share_pdu_offset: int = 0
    ) -> bool:
        if (
            OWN_PARSERS["share_data"]
            and data is not None
            and is_screen_update(data, share_pdu_offset)
        ):
            return False  # what aardwolf finds after parsing it as one
        result: bool = await save_session_info(self, channel_id, data, share_pdu_offset)
        return result

    def check_logon(self: Any, data: bytes) -> None:
        if OWN_PARSERS["share_data"] and is_screen_update(data):
            return  # neither logon nor error info: aardwolf would parse it to find that
        check_logon_status(self, data)

    conn_mod.normalize_share_data_pdu = normalize_share_data_pdu
    cls._RDPConnection__process_save_session_info = process_save_session_info
    cls.check_logon_status = check_logon


def _patch_join(cls: Any) -> None:
    original = cls._RDPConnection__join_channels

    async def join_channels(self: Any) -> Any:
        if ENABLED["mcs_user_channel_join"]:
            try:
                codec = self._t125_per_codec
                req = codec.encode(
                    "DomainMCSPDU",
                    (
                        "channelJoinRequest",
                        {"initiator": self._initiator, "channelId": self._initiator},
                    ),
                )
                await self._x224net.write(bytes(req))
                reply = await self._x224net.read()
                if reply is None:
                    raise ConnectionError("Connection closed while joining the user channel")
                decoded = codec.decode("DomainMCSPDU", reply.data)
                if decoded[0] != "channelJoinConfirm":
                    raise ConnectionError(f"user channel join refused: {decoded[0]}")
            except Exception as exc:
                return None, exc
        return await original(self)

    cls._RDPConnection__join_channels = join_channels


def _patch_caps() -> None:
    from aardwolf.protocol.pdu import capabilities as caps

    original = caps.TS_CAPS_SET.from_buffer

    def from_buffer(buff: io.BytesIO) -> Any:
        if not ENABLED["unknown_capability_sets"]:
            return original(buff)
        start = buff.tell()
        kind = int.from_bytes(buff.read(2), "little")
        length = int.from_bytes(buff.read(2), "little")
        if kind in caps.CAPSTYPE._value2member_map_:
            buff.seek(start)
            return original(buff)
        msg = caps.TS_CAPS_SET()
        msg.capabilitySetType = kind
        msg.lengthCapability = length
        msg.capabilityData = buff.read(max(0, length - 4))
        return msg

    caps.TS_CAPS_SET.from_buffer = staticmethod(from_buffer)


class _ShortHeader:
    """Proxy for a TS_SHAREDATAHEADER whose share-control length aardwolf overcounts."""

    def __init__(self, header: Any) -> None:
        self._h = header

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_h":
            object.__setattr__(self, name, value)
        else:
            setattr(self._h, name, value)

    def to_bytes(self) -> bytes:
        self._h.shareControlHeader.totalLength -= 6
        data: bytes = self._h.to_bytes()
        return data


def _patch_out(cls: Any) -> None:
    from aardwolf.protocol.T125.infopacket import INFO_FLAG, TS_INFO_PACKET
    from aardwolf.protocol.T128.controlpdu import CTRLACTION, TS_CONTROL_PDU
    from aardwolf.protocol.T128.fontlistpdu import TS_FONT_LIST_PDU
    from aardwolf.protocol.T128.inputeventpdu import TS_SHAREDATAHEADER
    from aardwolf.protocol.T128.share import PDUTYPE, PDUTYPE2, STREAM_TYPE
    from aardwolf.protocol.T128.synchronizepdu import TS_SYNCHRONIZE_PDU

    original = cls.handle_out_data

    def data_header(kind: Any) -> Any:
        hdr = TS_SHAREDATAHEADER()
        hdr.shareID = SHARE_ID
        hdr.streamID = STREAM_TYPE.MED
        hdr.pduType2 = kind
        return hdr

    async def handle_out_data(
        self: Any,
        dataobj: Any,
        sec_hdr: Any,
        datacontrol_hdr: Any,
        sharecontrol_hdr: Any,
        channel_id: int,
        is_fastpath: bool,
    ) -> Any:
        if ENABLED["auto_logon"] and isinstance(dataobj, TS_INFO_PACKET) and dataobj.Password:
            dataobj.flags |= INFO_FLAG.AUTOLOGON
        options = STARTUP.get()
        if options is not None and isinstance(dataobj, TS_INFO_PACKET):
            _info_packet(dataobj, options)
        suppress: dict[Any, int] = self.__dict__.setdefault("_guacr_suppress", {})
        if datacontrol_hdr is not None:
            kind = datacontrol_hdr.pduType2
            if suppress.get(kind, 0) > 0:
                suppress[kind] -= 1
                return True, None
            if ENABLED["share_data_header_length"]:
                datacontrol_hdr = _ShortHeader(datacontrol_hdr)
        result = await original(
            self, dataobj, sec_hdr, datacontrol_hdr, sharecontrol_hdr, channel_id, is_fastpath
        )
        if (
            ENABLED["client_first_finalization"]
            and sharecontrol_hdr is not None
            and sharecontrol_hdr.pduType == PDUTYPE.CONFIRMACTIVEPDU
        ):
            sync = TS_SYNCHRONIZE_PDU()
            sync.targetUser = channel_id
            cooperate = TS_CONTROL_PDU()
            cooperate.action = CTRLACTION.COOPERATE
            request = TS_CONTROL_PDU()
            request.action = CTRLACTION.REQUEST_CONTROL
            pdus = (
                (sync, PDUTYPE2.SYNCHRONIZE),
                (cooperate, PDUTYPE2.CONTROL),
                (request, PDUTYPE2.CONTROL),
                (TS_FONT_LIST_PDU(), PDUTYPE2.FONTLIST),
            )
            for pdu, kind in pdus:
                hdr: Any = data_header(kind)
                if ENABLED["share_data_header_length"]:
                    hdr = _ShortHeader(hdr)
                await original(self, pdu, sec_hdr, hdr, None, channel_id, False)
            suppress.update({PDUTYPE2.SYNCHRONIZE: 1, PDUTYPE2.CONTROL: 2, PDUTYPE2.FONTLIST: 1})
        return result

    cls.handle_out_data = handle_out_data


def _patch_mcs() -> None:
    from aardwolf.channels import MCSChannel
    from aardwolf.protocol.fastpath.bitmap import TS_UPDATE_BITMAP_DATA

    original = MCSChannel.process_channel_data

    async def process_channel_data(self: Any, data: bytes) -> None:
        conn = self.connection
        sink = getattr(conn, "guacr_sink", None)
        if (
            ENABLED["slow_path_bitmaps"]
            and sink is not None
            and data is not None
            and len(data) >= 18
        ):
            # TS_SHARECONTROLHEADER (6) + rest of TS_SHAREDATAHEADER (12): pduType at
            # 2, pduType2 at 14.
            pdu_type = data[2] & 0x0F
            if pdu_type == 0x7:
                kind = data[14]
                if kind == 0x02 and int.from_bytes(data[18:20], "little") == 1:
                    if OWN_PARSERS["bitmap_update"]:
                        sink.bitmaps(parse_bitmap_update(data, 18))
                    else:
                        rects = TS_UPDATE_BITMAP_DATA.from_bytes(data[18:]).rectangles
                        sink.bitmaps([from_aardwolf(bd) for bd in rects])
                    # aardwolf's reader does not yield while the socket has data
                    # buffered: give the display (and input) a turn after each update,
                    # and read no more while the display is busy (client.RECEIVE_BUFFER).
                    await sink.more_updates()
                    return
                if kind == 0x1B:  # slow-path pointer: the handler's pointer parser
                    sink.pointer_slow_path(data[18:])
                    return
                if kind == 0x2F:  # Set Error Info
                    sink.error_info(int.from_bytes(data[18:22], "little"))
                    return
                if kind == 0x29:  # Set Keyboard Indicators: unitId (2), ledFlags (2)
                    sink.keyboard_indicators(int.from_bytes(data[20:22], "little"))
                    return
            elif pdu_type == 0x6 and ENABLED["deactivation_reactivation"]:
                sink.deactivated()  # Deactivate All: a new Demand Active follows
                return
            elif (
                pdu_type == 0x1
                and ENABLED["deactivation_reactivation"]
                and getattr(conn, "_RDPConnection__external_reader_task", None) is not None
            ):
                _reactivate(conn, self, data, sink)
                return
        await original(self, data)

    MCSChannel.process_channel_data = process_channel_data


REACTIVATION_TIMEOUT = 10.0


def _reactivate(conn: Any, channel: Any, data: bytes, sink: Any) -> None:
    """A Demand Active after connect: take its size, run the capability exchange again."""
    from aardwolf.protocol.pdu.capabilities import CAPSTYPE
    from aardwolf.protocol.T128.serverdemandactivepdu import TS_DEMAND_ACTIVE_PDU

    pdu = TS_DEMAND_ACTIVE_PDU.from_bytes(data)
    for cap in pdu.capabilitySets:
        if cap.capabilitySetType == CAPSTYPE.BITMAP and cap.capability is not None:
            width, height = cap.capability.desktopWidth, cap.capability.desktopHeight
            conn.iosettings.video_width, conn.iosettings.video_height = width, height
            sink.desktop_resized(width, height)
    queue = channel.out_queue
    while not queue.empty():  # finalization PDUs of the previous activation
        queue.get_nowait()
    conn._RDPConnection__pending_mcs_data = (data, None)

    async def exchange() -> None:
        try:
            _, err = await asyncio.wait_for(
                conn._RDPConnection__handle_mandatory_capability_exchange(),
                REACTIVATION_TIMEOUT,
            )
        except TimeoutError:
            err = TimeoutError("no Synchronize after re-activation")
        if err is not None:
            log.info("RDP re-activation failed: %s", err)
            await conn.terminate()

    task = asyncio.get_running_loop().create_task(exchange())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def _patch_dvc() -> None:
    from aardwolf.extensions.RDPEDYC.channel import RDPEDYCChannel

    original = RDPEDYCChannel.process_channel_data

    async def process_channel_data(self: Any, data: bytes) -> None:
        # CHANNEL_PDU_HEADER is 8 bytes; the DVC header's high nibble is the command.
        if (
            ENABLED["dvc_version_2"]
            and not self.version_data_sent
            and len(data) > 8
            and data[8] >> 4 == 0x5
        ):
            self.version_data_sent = True
            await self.fragment_and_send(b"\x50\x00\x02\x00")  # DYNVC_CAPS_RSP, version 2
            return
        await original(self, data)

    RDPEDYCChannel.process_channel_data = process_channel_data


def _info_packet(info: Any, options: StartupOptions) -> None:
    """Not a fix: the Info Packet's alternate shell, audio flags and time zone."""
    from aardwolf.protocol.T125.infopacket import INFO_FLAG

    info.AlternateShell = options.alternate_shell
    info.flags = INFO_FLAG(startup.info_flags(int(info.flags), options))
    if options.time_zone is not None and info.extrainfo is not None:
        info.extrainfo.clientTimeZone = _RawTimeZone(options.time_zone)


class _RawTimeZone:
    """A TS_TIME_ZONE_INFORMATION guacr built (aardwolf's extended info packet only
    calls ``to_bytes`` on it)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def to_bytes(self) -> bytes:
        return self._data


def _patch_startup() -> None:
    """Not a fix: the connection's own client name, cluster flags, X.224 routing token
    or cookie and preconnection PDU (aardwolf hard-codes or lacks them)."""
    from aardwolf.network import x224
    from aardwolf.protocol.T124.userdata.clientclusterdata import TS_UD_CS_CLUSTER
    from aardwolf.protocol.T124.userdata.clientcoredata import TS_UD_CS_CORE

    core_to_bytes = TS_UD_CS_CORE.to_bytes
    cluster_to_bytes = TS_UD_CS_CLUSTER.to_bytes
    negotiate = x224.X224Network.client_negotiate
    format_cookie = x224._format_mstshash_cookie

    def core(self: Any) -> bytes:
        options = STARTUP.get()
        if options is not None:
            self.clientName = startup.client_name(options.client_name)
        data: bytes = core_to_bytes(self)
        return data

    def cluster(self: Any) -> bytes:
        options = STARTUP.get()
        if options is not None:
            self.Flags, self.RedirectedSessionID = startup.cluster_flags(options.console)
        data: bytes = cluster_to_bytes(self)
        return data

    def cookie_field(identifier: str | None) -> bytes | None:
        options = STARTUP.get()
        if options is None:
            return format_cookie(identifier)  # type: ignore[no-any-return]
        if options.load_balance_info:
            return startup.routing_token(options.load_balance_info)
        return startup.cookie(identifier or "")

    async def client_negotiate(
        self: Any, flags: Any = 0, supported_protocols: Any = None, *args: Any, **kw: Any
    ) -> Any:
        options = STARTUP.get()
        if options is None or not options.sends_preconnection_pdu:
            return await negotiate(self, flags, supported_protocols, *args, **kw)
        # MS-RDPEPS: the PDU goes first, raw (no TPKT). Then, as FreeRDP (guacd turns
        # security negotiation off with it, the Hyper-V way), no X.224 negotiation: the
        # highest protocol asked for is used directly (MS-RDPBCGR 5.4.2.3).
        pdu = startup.preconnection_pdu(options.preconnection_id, options.preconnection_blob)
        self.connection.writer.write(pdu)
        await self.connection.writer.drain()
        return _direct_confirm(supported_protocols), None

    TS_UD_CS_CORE.to_bytes = core
    TS_UD_CS_CLUSTER.to_bytes = cluster
    x224._format_mstshash_cookie = cookie_field
    x224.X224Network.client_negotiate = client_negotiate


def _direct_confirm(supported: Any) -> Any:
    """The Connection Confirm aardwolf would have read, for the direct approach: the
    highest of ``supported`` selected (none of TLS/NLA: standard RDP security)."""
    from aardwolf.protocol.x224.constants import SUPP_PROTOCOLS
    from aardwolf.protocol.x224.server.connectionconfirm import RDP_NEG_RSP, ConnectionConfirm

    reply = ConnectionConfirm()
    offered = SUPP_PROTOCOLS(int(supported or 0))
    for protocol in (SUPP_PROTOCOLS.HYBRID_EX, SUPP_PROTOCOLS.HYBRID, SUPP_PROTOCOLS.SSL):
        if protocol in offered:
            reply.rdpNegData = RDP_NEG_RSP()
            reply.rdpNegData.selectedProtocol = protocol
            break
    return reply


def _patch_bulk() -> None:
    from aardwolf.protocol.compression import BulkDecompressor

    original = BulkDecompressor.decompress

    def decompress(self: Any, data: bytes, flags: int, expected_size: int | None = None) -> Any:
        if ENABLED["bulk_decompression_length"]:
            expected_size = None
        return original(self, data, flags, expected_size)

    BulkDecompressor.decompress = decompress


def _patch_core_data() -> None:
    from aardwolf.protocol.T124.userdata.clientcoredata import TS_UD_CS_CORE
    from aardwolf.protocol.T124.userdata.constants import HIGH_COLOR_DEPTH, RNS_UD_CS

    original = TS_UD_CS_CORE.to_bytes

    def to_bytes(self: Any) -> bytes:
        if ENABLED["request_32bpp"] and WANT_32BPP.get():
            self.earlyCapabilityFlags |= RNS_UD_CS.WANT_32BPP_SESSION
            self.highColorDepth = HIGH_COLOR_DEPTH.HIGH_COLOR_24BPP
        data: bytes = original(self)
        return data

    TS_UD_CS_CORE.to_bytes = to_bytes


def _patch_clipboard() -> None:
    from aardwolf.extensions.RDPECLIP.channel import CLIPBRDSTATUS, RDPECLIPChannel
    from aardwolf.extensions.RDPECLIP.protocol import CB_TYPE

    send_caps = RDPECLIPChannel._RDPECLIPChannel__send_capabilities
    process_in = RDPECLIPChannel._RDPECLIPChannel__process_in

    async def send_capabilities(self: Any) -> Any:
        if not ENABLED["clipboard_startup"]:
            return await send_caps(self)
        formats = self.clipboard._formats
        self.clipboard._formats = {}  # announce "nothing to paste" until the user copies
        try:
            return await send_caps(self)
        finally:
            self.clipboard._formats = formats

    async def process(self: Any, hdr: Any, payload: bytes) -> Any:
        if (
            ENABLED["clipboard_startup"]
            and self.status == CLIPBRDSTATUS.CLIENT_INIT
            and hdr.msgType == CB_TYPE.CB_FORMAT_LIST
        ):
            self.status = CLIPBRDSTATUS.RUNNING
            try:
                return await process_in(self, hdr, payload)
            finally:
                self.status = CLIPBRDSTATUS.CLIENT_INIT
        return await process_in(self, hdr, payload)

    RDPECLIPChannel._RDPECLIPChannel__send_capabilities = send_capabilities
    RDPECLIPChannel._RDPECLIPChannel__process_in = process


def _patch_fastpath(cls: Any) -> None:
    from aardwolf.protocol.fastpath import FASTPATH_OUTPUT_COMPRESSION, FASTPATH_UPDATETYPE

    original = cls._RDPConnection__process_fastpath

    async def process_fastpath(self: Any, fpdu: Any) -> None:
        sink = getattr(self, "guacr_sink", None)
        if not ENABLED["fast_path_updates"] or sink is None:
            await original(self, fpdu)
            return
        reassembler = self._RDPConnection__fastpath_reassembler
        for raw in fpdu.fpOutputUpdates:
            try:
                if raw.compression == FASTPATH_OUTPUT_COMPRESSION.USED:
                    if self.bulk_decompressor is None:
                        raise ValueError("compressed fast-path data without negotiation")
                    raw.updateData = self.bulk_decompressor.decompress(
                        raw.updateData, raw.compressionFlags
                    )
                    raw.size = len(raw.updateData)
                    raw.compression = FASTPATH_OUTPUT_COMPRESSION.NONE
                    raw.compressionFlags = 0
                update = reassembler.feed(raw)
                if update is None:
                    continue
                code = int(update.updateCode)
                if code == FASTPATH_UPDATETYPE.BITMAP:
                    sink.bitmaps(fast_path_bitmaps(update))
                    await sink.more_updates()  # as for slow-path bitmaps
                elif code >= 0x5:
                    sink.pointer(code, bytes(update.updateData))
            except Exception as exc:  # one bad update must not end the session
                log.debug("Bad fast-path update: %s", exc)

    cls._RDPConnection__process_fastpath = process_fastpath


def fast_path_bitmaps(update: Any) -> list[Bitmap]:
    """The bitmaps of a reassembled fast-path bitmap update (its data is a
    TS_UPDATE_BITMAP_DATA, as in the slow path)."""
    if OWN_PARSERS["bitmap_update"]:
        return parse_bitmap_update(bytes(update.updateData))
    return [from_aardwolf(bd) for bd in update.parse_update_data().rectangles]


def _patch_upstream() -> None:
    """Not a fix: aardwolf connects over a socket guacr opened (the shared upstream
    service: guacd's Wake-on-LAN order, timeouts and failure texts) instead of its own."""
    import copy

    from asysocks.unicomm.client import UniClient
    from asysocks.unicomm.common.connection import UniConnection

    original = UniClient.connect

    async def connect(self: Any) -> Any:
        sock = UPSTREAM_SOCKET.get()
        if sock is None:
            return await original(self)
        UPSTREAM_SOCKET.set(None)  # one connection per socket
        reader, writer = await asyncio.open_connection(sock=sock)
        return UniConnection(reader, writer, copy.deepcopy(self.packetizer))

    UniClient.connect = connect


def _patch_tls() -> None:
    """Not a fix: lets guacr check the server certificate right after the TLS handshake.

    aardwolf either verifies against the system CAs or not at all; guacd's
    ``ignore-cert`` / ``cert-tofu`` / ``cert-fingerprints`` need the DER certificate
    before any credential is sent, which is what :data:`CERT_CHECK` receives.
    """
    from asysocks.unicomm.common.connection import UniConnection

    original = UniConnection.wrap_ssl

    async def wrap_ssl(self: Any, ssl_ctx: Any = None, packetizer: Any = None) -> None:
        await original(self, ssl_ctx, packetizer)
        check = CERT_CHECK.get()
        if check is not None:
            pending = check(self.get_peer_certificate())
            if pending is not None:
                await pending

    UniConnection.wrap_ssl = wrap_ssl


__all__ = [
    "CERT_CHECK",
    "ENABLED",
    "FIXES",
    "STARTUP",
    "UPSTREAM_SOCKET",
    "WANT_32BPP",
    "decode_bitmap",
    "fast_path_bitmaps",
    "from_aardwolf",
    "install",
    "preload",
    "without",
]
