"""guacr's small RDP client interface, implemented on (patched) aardwolf.

The handler only sees :class:`RDPClient` (connect, input, close) and an
:class:`RDPSink` it implements (bitmaps, frame ends, error info, pointer, close), so
another backend could replace aardwolf later without touching the handler.

aardwolf is driven with its fixes from :mod:`guacr.handlers.rdp.compat`; every wait has
a timeout here, input is sent in order from one task (the handler's hooks are
synchronous), and a server close ends :meth:`RDPClient.wait_closed` instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from guacr.handlers.rdp import compat
from guacr.handlers.rdp.display_control import CHANNEL_NAME, DisplayControl
from guacr.handlers.rdp.pdu import Bitmap
from guacr.handlers.rdp.pointer import Cursor, PointerCache
from guacr.handlers.rdp.startup import StartupOptions

log = logging.getLogger("guacr.rdp")

U8 = npt.NDArray[np.uint8]

# Security modes as guacd names them.
SECURITY_MODES = ("any", "nla", "nla-ext", "tls", "rdp", "vmconnect")
CLOSE_TIMEOUT = 2.0
INPUT_QUEUE = 4096
# The RDP socket's receive buffer. While the display is busy with a frame the reader
# stops reading (:meth:`RDPSink.more_updates`); xrdp then blocks on its socket and
# merges what changes meanwhile into its next update (measured on the scrolling xterm
# of benchmarks/bench_rdp.py, RDP client alone, 32 bpp: 1100-1300 instead of 3400-4100
# rectangles/s). With the kernel's autotuned buffers 3-8 MB queued up between xrdp and
# us before xrdp blocked, seconds of stale screen; with this one, 70-180 KB. Still
# 2.5 MB/s of RDP at 100 ms round trip, more than xrdp sends that scene.
RECEIVE_BUFFER = 128 * 1024


class RDPConnectError(Exception):
    """Connecting failed; ``kind`` says why (the handler maps it to guacd's status).

    Kinds: ``unreachable`` (TCP), ``security`` (negotiation), ``certificate``
    (refused by the certificate check), ``auth``, ``timeout``, ``protocol``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RDPSink(Protocol):
    """What the RDP client reports to its user (the handler)."""

    def bitmap(self, x: int, y: int, pixels: U8) -> None:
        """An (h, w, 3) RGB or (h, w, 4) RGBX rectangle at (x, y), as the display's
        ``blit`` takes it (at 32 bpp a channel-reversed view of a fresh buffer)."""

    def update_end(self) -> None:
        """A batch of bitmaps (one server PDU) is complete."""

    def error_info(self, code: int) -> None:
        """The server's Set Error Info PDU (MS-RDPBCGR 2.2.5.1.1)."""

    def keyboard_indicators(self, flags: int) -> None:
        """The server's Set Keyboard Indicators PDU (MS-RDPBCGR 2.2.8.2.1.1): its
        Caps/Num/Scroll/Kana Lock state, as TS_SYNC_EVENT toggle flags."""

    def desktop_resized(self, width: int, height: int) -> None:
        """The session's desktop size changed."""

    def server_clipboard(self, text: str) -> None:
        """The server's clipboard now holds ``text``."""

    def cursor(self, cursor: Cursor) -> None:
        """The server changed the pointer image."""

    async def more_updates(self) -> None:
        """Return once the sink wants more screen updates (awaited after each one).

        While it waits nothing more is read from the server, which then merges what
        changes meanwhile into fewer updates (see :data:`RECEIVE_BUFFER`).
        """

    def svc_opened(self, name: str) -> None:
        """Static channel ``name`` (from ``static_channels``) was joined."""

    def svc_data(self, name: str, data: bytes) -> None:
        """One complete message the server sent on static channel ``name``."""


@dataclass(frozen=True)
class RDPConfig:
    """Everything needed to open one RDP session."""

    host: str
    port: int
    username: str | None
    password: str | None
    domain: str | None
    width: int
    height: int
    color_depth: int  # 16 or 32 on the wire (24 travels as 32, 8/15 as 16)
    security: str = "any"
    timeout: float = 10.0
    keyboard_layout: int = 0x409
    performance_flags: int | None = None
    # Called with the server's DER certificate before any credential is sent; raises
    # CertificateRefused (or returns an awaitable that does) to refuse it.
    cert_check: Callable[[bytes], Awaitable[None] | None] | None = None
    clipboard: bool = True
    display_control: bool = False  # resize-method=display-update
    drive_path: str | None = None  # enable-drive: this directory, shared over RDPDR
    drive_name: str = "Guacamole Filesystem"
    startup: StartupOptions | None = None  # client name, alternate shell, console, ...
    static_channels: tuple[str, ...] = ()  # static-channels: exposed as pipe streams
    # A file to send to the owner (its Guacamole path; True: remove it once sent), as
    # guacd's Download folder; None when downloads are disabled.
    drive_download: Callable[[str, bool], None] | None = None
    # Bulk (MPPC) compression of the server's PDUs: off, as it costs more CPU than the
    # bytes it saves on a LAN (RDP client alone, 32 bpp scrolling xterm: 39-41 us per
    # rectangle without, 51-57 us with; guacd sits next to its RDP servers).
    bulk_compression: bool = False


def limit_receive_buffer(sock: socket.socket) -> None:
    """Keep the server's unread updates few (see :data:`RECEIVE_BUFFER`)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def wire_depth(color_depth: int) -> int:
    """The depth actually requested: aardwolf's decoder handles only 16 and 32 bpp."""
    return 32 if color_depth >= 24 else 16


class RDPClient:
    """One RDP session on aardwolf."""

    def __init__(self, config: RDPConfig, sink: RDPSink) -> None:
        compat.install()
        self.config = config
        self.sink = sink
        self.width = config.width
        self.height = config.height
        self._conn: Any = None
        self._input: asyncio.Queue[Callable[[], Coroutine[Any, Any, Any]] | None] = asyncio.Queue(
            INPUT_QUEUE
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self.closed = asyncio.Event()
        self.display_control = DisplayControl()
        self._svc: dict[str, Any] = {}  # static channel name -> its aardwolf channel
        # Decoding statistics (tests and the benchmark read them).
        self.rects = 0
        self.bad_rects = 0
        self.depths: set[int] = set()

    # ---------------------------------------------------------------- connecting
    def _settings(self) -> Any:
        from aardwolf.commons.iosettings import RDPIOSettings
        from aardwolf.protocol.x224.constants import SUPP_PROTOCOLS

        c = self.config
        from aardwolf.extensions.RDPECLIP.channel import RDPECLIPChannel

        s = RDPIOSettings()
        s.channels = [RDPECLIPChannel] if c.clipboard else []
        s.vchannels = {}
        if c.display_control:
            from aardwolf.extensions.RDPEDYC.channel import RDPEDYCChannel

            s.channels.append(RDPEDYCChannel)
            s.vchannels = {CHANNEL_NAME: self.display_control}
        if c.drive_path is not None:
            from guacr.handlers.rdp.drive import DOS_NAME, DriveChannel, DriveProvider

            s.channels.append(DriveChannel)
            s.drives = [DriveProvider(DOS_NAME, c.drive_path, label=c.drive_name)]
            s.guacr_drive_download = c.drive_download
        if c.static_channels:
            from guacr.handlers.rdp.svc import channel_class

            s.channels.extend(channel_class(name) for name in c.static_channels)
            s.guacr_svc_sink = self
        s.clipboard_use_pyperclip = False
        if not c.bulk_compression:
            s.bulk_compression_max_type = None
        s.video_width = c.width
        s.video_height = c.height
        depth = wire_depth(c.color_depth)
        s.video_bpp_max = depth
        s.video_bpp_min = 16
        s.video_bpp_supported = [16, 32] if depth == 32 else [16]
        s.keyboard_layout = c.keyboard_layout
        if c.performance_flags is not None:
            s.performance_flags = c.performance_flags
        protocols = {
            "tls": SUPP_PROTOCOLS.SSL,
            "rdp": SUPP_PROTOCOLS.RDP,
            "nla": SUPP_PROTOCOLS.HYBRID,
            "nla-ext": SUPP_PROTOCOLS.HYBRID_EX,
            "vmconnect": SUPP_PROTOCOLS.HYBRID,
        }
        s.supported_protocols = protocols.get(
            c.security, SUPP_PROTOCOLS.RDP | SUPP_PROTOCOLS.SSL | SUPP_PROTOCOLS.HYBRID
        )
        return s

    async def connect(self, sock: socket.socket | None = None) -> None:
        """Open the session (over ``sock`` if given, else aardwolf opens its own TCP
        connection); raises :class:`RDPConnectError` (never hangs past the timeout)."""
        from aardwolf.commons.target import RDPTarget
        from aardwolf.connection import RDPConnection
        from asyauth.common.constants import asyauthProtocol, asyauthSecret
        from asyauth.common.credentials import UniCredential

        c = self.config
        target = RDPTarget(ip=c.host, port=c.port, timeout=max(1, int(c.timeout)), unsafe_ssl=True)
        cred = UniCredential(
            secret=c.password or "",
            username=c.username or "",
            domain=c.domain or "",
            stype=asyauthSecret.PASSWORD,
            protocol=asyauthProtocol.NTLM,
        )
        if sock is not None:
            limit_receive_buffer(sock)
        conn = RDPConnection(target, cred, self._settings())
        conn.guacr_sink = _Adapter(self)
        self._conn = conn
        want = compat.WANT_32BPP.set(wire_depth(c.color_depth) == 32)
        check = compat.CERT_CHECK.set(self._on_tls)
        upstream = compat.UPSTREAM_SOCKET.set(sock)
        options = compat.STARTUP.set(c.startup)
        try:
            ok, err = await asyncio.wait_for(conn.connect(), c.timeout)
        except TimeoutError:
            await self._abort()
            raise RDPConnectError("timeout", "The RDP server did not answer in time.") from None
        finally:
            compat.WANT_32BPP.reset(want)
            compat.CERT_CHECK.reset(check)
            compat.UPSTREAM_SOCKET.reset(upstream)
            compat.STARTUP.reset(options)
        if err is None and ok:
            try:
                self._check_security()
            except RDPConnectError as exc:
                err = exc
        if err is not None or not ok:
            await self._abort()
            raise _classify(err)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_input()),
            loop.create_task(self._read_fast_path()),
            loop.create_task(self._watch()),
        ]

    def _on_tls(self, der: bytes) -> Awaitable[None] | None:
        """Right after the TLS handshake, before any credential is sent."""
        self._check_security()
        if self.config.cert_check is not None:
            return self.config.cert_check(der)
        return None

    def _check_security(self) -> None:
        """The server must have selected what ``security`` asked for (guacd: 769)."""
        from aardwolf.protocol.x224.constants import SUPP_PROTOCOLS

        selected = self._conn.x224_protocol
        wanted = {
            "tls": SUPP_PROTOCOLS.SSL,
            "nla": SUPP_PROTOCOLS.HYBRID | SUPP_PROTOCOLS.HYBRID_EX,
            "nla-ext": SUPP_PROTOCOLS.HYBRID_EX,
            "vmconnect": SUPP_PROTOCOLS.HYBRID | SUPP_PROTOCOLS.HYBRID_EX,
        }.get(self.config.security)
        if selected is None or wanted is None:
            return
        if self.config.security == "tls":
            ok = selected == SUPP_PROTOCOLS.SSL
        else:
            ok = bool(selected & wanted)
        if not ok:
            raise RDPConnectError(
                "security",
                f"Security negotiation failed: asked for {self.config.security}, "
                f"server selected {selected!r}",
            )

    async def _abort(self) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.terminate(), CLOSE_TIMEOUT)
        self.closed.set()

    async def _watch(self) -> None:
        await self._conn.disconnected_evt.wait()
        self.closed.set()

    async def _read_fast_path(self) -> None:
        """Fast-path bitmaps (Windows servers) arrive on aardwolf's queue as PIL images."""
        from aardwolf.commons.queuedata import RDPDATATYPE

        queue = self._conn.ext_out_queue
        while True:
            item = await queue.get()
            if item is None:
                return
            kind = getattr(item, "type", None)
            if kind == RDPDATATYPE.CLIPBOARD_DATA_TXT and isinstance(item.data, str):
                self.sink.server_clipboard(item.data.rstrip("\0"))
                continue
            if kind == RDPDATATYPE.VIDEO and item.data is not None:
                img = item.data.convert("RGBA")
                pixels = np.asarray(img, dtype=np.uint8)
                self.sink.bitmap(item.x, item.y, pixels)
                if queue.empty():
                    self.sink.update_end()

    # ---------------------------------------------------------------------- input
    def _queue(self, op: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if self._closing or self._conn is None:
            return
        try:
            self._input.put_nowait(op)
        except asyncio.QueueFull:
            log.warning("RDP input queue full; dropping an input event.")

    async def _send_input(self) -> None:
        while True:
            op = await self._input.get()
            if op is None:
                return
            try:
                await op()
            except Exception as exc:  # the session ends through disconnected_evt
                log.debug("RDP input failed: %s", exc)

    @property
    def accepts_input(self) -> bool:
        """Input is queued (sent in order once connected), not dropped."""
        return self._conn is not None and not self._closing

    def key(self, scancode: int, extended: bool, pressed: bool) -> None:
        """A key by scancode (``extended`` for the E0-prefixed keys)."""
        conn = self._conn
        self._queue(lambda: conn.send_key_scancode(scancode, pressed, extended))

    def unicode(self, codepoint: int, pressed: bool) -> None:
        """A character the keyboard layout cannot type (Unicode keyboard event)."""
        conn = self._conn
        self._queue(lambda: conn.send_key_char(chr(codepoint), pressed))

    def pointer(self, x: int, y: int, flags: int) -> None:
        """A pointer event with raw TS_POINTER_EVENT flags (MS-RDPBCGR 2.2.8.1.1.3.1.1.3)."""
        conn = self._conn
        x = max(0, min(x, self.width - 1))
        y = max(0, min(y, self.height - 1))
        self._queue(lambda: _send_pointer(conn, x, y, flags))

    def synchronize(self, flags: int) -> None:
        """Set the server's lock keys absolutely (TS_SYNC_EVENT toggleFlags:
        1 Scroll, 2 Num, 4 Caps, 8 Kana Lock)."""
        conn = self._conn
        self._queue(lambda: _send_sync(conn, flags))

    def set_clipboard(self, text: str) -> None:
        """Offer ``text`` to the server as the client's clipboard (CF_UNICODETEXT)."""
        conn = self._conn
        if self.config.clipboard and conn is not None:
            self._queue(lambda: conn.set_current_clipboard_text(text))

    # ------------------------------------------------------------- static channels
    def svc_opened(self, name: str, channel: Any) -> None:
        self._svc[name] = channel
        self.sink.svc_opened(name)

    def svc_data(self, name: str, data: bytes) -> None:
        self.sink.svc_data(name, data)

    def svc_write(self, name: str, data: bytes) -> bool:
        """Send one message on static channel ``name`` (False: no such open channel)."""
        channel = self._svc.get(name)
        if channel is None:
            return False
        self._queue(lambda: channel.write(data))
        return True

    @property
    def open_files(self) -> int:
        """Files the server holds open on the redirected drive."""
        conn = self._conn
        channel = getattr(getattr(conn, "iosettings", None), "guacr_drive_channel", None)
        return int(channel.open_files) if channel is not None else 0

    @property
    def can_resize(self) -> bool:
        """The server opened Display Control (and sent its capabilities)."""
        return self.config.display_control and self.display_control.ready.is_set()

    def resize(self, width: int, height: int) -> None:
        """Ask the server for a new desktop size (Display Control monitor layout)."""
        if self.can_resize:
            dc = self.display_control
            self._queue(lambda: dc.set_size(width, height))

    # ---------------------------------------------------------------------- closing
    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def close(self) -> None:
        """Disconnect cleanly: MCS Disconnect Provider Ultimatum, then TCP close."""
        if self._closing:
            return
        self._closing = True
        conn = self._conn
        for task in self._tasks:
            task.cancel()
        if conn is None:
            return
        with contextlib.suppress(Exception):
            ultimatum = conn._t125_per_codec.encode(
                "DomainMCSPDU", ("disconnectProviderUltimatum", {"reason": "rn-user-requested"})
            )
            await asyncio.wait_for(conn._x224net.write(bytes(ultimatum)), CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.terminate(), CLOSE_TIMEOUT)
        self.closed.set()


class _Adapter:
    """What compat's MCS-channel patch calls (``conn.guacr_sink``)."""

    def __init__(self, client: RDPClient) -> None:
        self.client = client
        self.pointers = PointerCache()

    def bitmaps(self, rectangles: list[Bitmap]) -> None:
        client = self.client
        sink = client.sink
        depths = client.depths
        decode = compat.decode_bitmap
        client.rects += len(rectangles)
        for bd in rectangles:
            depths.add(bd.bpp)
            try:
                decoded = decode(bd)
            except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
                raise
            except BaseException as exc:
                # One bad rectangle must not end the session. The Rust decoder reports
                # bad input as a pyo3 PanicException, which is not an Exception.
                client.bad_rects += 1
                log.debug("Undecodable RDP bitmap %dx%d: %s", bd.width, bd.height, exc)
                continue
            if decoded is not None:
                sink.bitmap(*decoded)
        sink.update_end()

    async def more_updates(self) -> None:
        await self.client.sink.more_updates()

    def pointer(self, code: int, data: bytes) -> None:
        try:
            cursor = self.pointers.update(code, data)
        except (ValueError, struct.error) as exc:
            log.debug("Bad RDP pointer update %d: %s", code, exc)
            return
        if cursor is not None:
            self.client.sink.cursor(cursor)

    def pointer_slow_path(self, data: bytes) -> None:
        try:
            cursor = self.pointers.slow_path(data)
        except (ValueError, struct.error) as exc:
            log.debug("Bad slow-path pointer update: %s", exc)
            return
        if cursor is not None:
            self.client.sink.cursor(cursor)

    def error_info(self, code: int) -> None:
        if code:
            self.client.sink.error_info(code)

    def keyboard_indicators(self, flags: int) -> None:
        self.client.sink.keyboard_indicators(flags)

    def deactivated(self) -> None:
        log.debug("RDP server sent Deactivate All.")

    def desktop_resized(self, width: int, height: int) -> None:
        client = self.client
        if (width, height) != (client.width, client.height):
            client.width, client.height = width, height
            client.sink.desktop_resized(width, height)


async def _send_pointer(conn: Any, x: int, y: int, flags: int) -> Any:
    from aardwolf.protocol.pdu.input.mouse import PTRFLAGS, TS_POINTER_EVENT

    event = TS_POINTER_EVENT()
    event.pointerFlags = PTRFLAGS(flags)
    event.xPos = x
    event.yPos = y
    return await _send_input(conn, event)


async def _send_sync(conn: Any, flags: int) -> Any:
    from aardwolf.protocol.pdu.input.sync import TS_SYNC, TS_SYNC_EVENT

    event = TS_SYNC_EVENT()
    event.pad2Octets = b"\0\0"
    event.toggleFlags = TS_SYNC(flags & 0x0F)
    return await _send_input(conn, event)


async def _send_input(conn: Any, event: Any) -> Any:
    """One slow-path input event in its own Input PDU (aardwolf has no sender for
    pointer flags it does not know, nor for synchronize events); encrypted as
    aardwolf's own key events are under standard RDP security."""
    from aardwolf.protocol.T128.inputeventpdu import (
        TS_INPUT_EVENT,
        TS_INPUT_PDU_DATA,
        TS_SHAREDATAHEADER,
    )
    from aardwolf.protocol.T128.security import SEC_HDR_FLAG, TS_SECURITY_HEADER
    from aardwolf.protocol.T128.share import PDUTYPE2, STREAM_TYPE

    hdr = TS_SHAREDATAHEADER()
    hdr.shareID = compat.SHARE_ID
    hdr.streamID = STREAM_TYPE.MED
    hdr.pduType2 = PDUTYPE2.INPUT
    pdu = TS_INPUT_PDU_DATA()
    pdu.slowPathInputEvents.append(TS_INPUT_EVENT.from_input(event))
    sec_hdr = None
    if getattr(conn, "cryptolayer", None) is not None:
        sec_hdr = TS_SECURITY_HEADER()
        sec_hdr.flags = SEC_HDR_FLAG.ENCRYPT
        sec_hdr.flagsHi = 0
    mcs = conn._RDPConnection__joined_channels["MCS"].channel_id
    return await conn.handle_out_data(pdu, sec_hdr, hdr, None, mcs, False)


def _classify(err: BaseException | None) -> RDPConnectError:
    """aardwolf's connect errors -> our kinds (its errors are mostly bare Exceptions)."""
    if isinstance(err, RDPConnectError):
        return err
    cause = err.__cause__ or err.__context__ if err is not None else None
    if isinstance(cause, RDPConnectError | CertificateRefused):
        err = cause
    if isinstance(err, RDPConnectError):
        return err
    text = str(err) if err is not None else "unknown error"
    if isinstance(err, CertificateRefused):
        return RDPConnectError("certificate", text)
    if isinstance(err, ConnectionRefusedError | OSError) and not isinstance(err, ssl.SSLError):
        return RDPConnectError("unreachable", text or type(err).__name__)
    lowered = text.lower()
    if "negotiat" in lowered or "selected" in lowered or "hybrid" in lowered:
        return RDPConnectError("security", text)
    if isinstance(err, ssl.SSLError):
        return RDPConnectError("security", text)
    if "auth" in lowered or "logon" in lowered or "credential" in lowered:
        return RDPConnectError("auth", text)
    return RDPConnectError("protocol", text)


class CertificateRefused(Exception):
    """Raised by a certificate check to refuse the server's certificate."""
