"""The ``vnc`` protocol handler: guacr's RFB client glued to the shared display engine.

The sans-I/O :class:`~guacr.handlers.vnc.client.RFBClient` parses and decodes; this
module only moves bytes (asyncio streams, TCP_NODELAY), turns RFB events into drawing
on a :class:`~guacr.render.display.Display`, and user input into RFB messages.

Flow control follows guacd: one FramebufferUpdateRequest is outstanding at a time and
the next is sent only when the display can take another frame (it is not still
encoding one with another waiting behind it, and the client is neither lagging nor
congested), so a slow client slows the server down instead of piling up frames.

Decoding runs in the worker pool for big reads (a full-screen ZRLE or Hextile update
is heavy work in Python); while it runs, input for the RFB client is queued and applied
right after, because the client object is not thread-safe.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from guacr.contract.handler import Handler, StreamSink
from guacr.contract.params import Params, params
from guacr.errors import GuacrError, Unauthorized, UpstreamError, UpstreamNotFound
from guacr.handlers.vnc.client import RFBClient
from guacr.handlers.vnc.constants import (
    GUACD_DEFAULT_ENCODINGS,
    build_encodings,
    libvnc_levels,
    skipped_encodings,
)
from guacr.handlers.vnc.events import (
    AuthFailed,
    AuthRequired,
    Connected,
    CopyRect,
    CursorShape,
    DesktopNameChanged,
    DesktopResized,
    Event,
    FramebufferUpdateEnd,
    JpegRect,
    RectDecoded,
    RFBError,
    RFBProtocolError,
    ServerCutText,
    SolidRect,
)
from guacr.handlers.vnc.pixels import PixelFormat
from guacr.protocol import builders as b
from guacr.render import encode as enc
from guacr.render.display import Display
from guacr.services import upstream
from guacr.services.clipboard import Clipboard, clipboard_limit
from guacr.services.sftp import SFTPSettings, SFTPSideChannel

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

VNC_ARGS = (
    "hostname", "port", "read-only", "disable-display-resize", "encodings", "username",
    "password", "swap-red-blue", "color-depth", "cursor", "autoretry", "clipboard-encoding",
    "dest-host", "dest-port", "enable-audio", "audio-servername", "reverse-connect",
    "listen-timeout", "enable-sftp", "sftp-hostname", "sftp-host-key", "sftp-port",
    "sftp-timeout", "sftp-username", "sftp-password", "sftp-private-key", "sftp-passphrase",
    "sftp-public-key", "sftp-directory", "sftp-root-directory", "sftp-server-alive-interval",
    "sftp-disable-download", "sftp-disable-upload", "recording-path", "recording-name",
    "recording-exclude-output", "recording-exclude-mouse", "recording-include-keys",
    "recording-include-clipboard", "create-recording-path", "recording-write-existing",
    "clipboard-buffer-size", "disable-copy", "disable-paste", "disable-server-input",
    "wol-send-packet", "wol-mac-addr", "wol-broadcast-addr", "wol-udp-port", "wol-wait-time",
    "force-lossless", "compress-level", "quality-level",
)  # fmt: skip

VNC_DEFAULTS = {
    "port": "0",
    "encodings": GUACD_DEFAULT_ENCODINGS,
    "color-depth": "0",
    "autoretry": "0",
    "clipboard-encoding": "ISO8859-1",
    "dest-port": "0",
    "listen-timeout": "5000",
    "sftp-port": "22",
    "sftp-timeout": "10",
    "sftp-root-directory": "/",
    "sftp-server-alive-interval": "0",
    "recording-name": "recording",
    "clipboard-buffer-size": "0",
    "wol-broadcast-addr": "255.255.255.255",
    "wol-udp-port": "9",
    "wol-wait-time": "0",
    "compress-level": "-1",
    "quality-level": "-1",
}

# guacd's clipboard-encoding names -> Python codecs (guacd falls back to ISO8859-1).
CLIPBOARD_ENCODINGS = {
    "ISO8859-1": "latin-1",
    "UTF-8": "utf-8",
    "UTF-16": "utf-16-le",
    "CP1252": "cp1252",
}
CONNECT_TIMEOUT = 15.0
RETRY_INTERVAL = 1.0  # guacd waits 1 s between autoretry attempts
READ_SIZE = 1 << 18
INLINE_DECODE = 16 * 1024  # smaller reads decode on the loop, sparing a thread hop each
RESIZE_INTERVAL = 0.25  # at most this often a SetDesktopSize for the owner's size
REPEATER_ID_LENGTH = 250


@dataclass(frozen=True, slots=True)
class VNCSettings:
    """The parameters this handler acts on, parsed once."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    encodings: str
    color_depth: int
    swap_red_blue: bool
    remote_cursor: bool
    resize: bool
    autoretry: int
    clipboard_encoding: str
    clipboard_limit: int
    disable_copy: bool
    disable_paste: bool
    dest_host: str | None
    dest_port: int
    reverse_connect: bool
    listen_timeout_ms: int
    lossless: bool
    compress_level: int | None
    quality_level: int | None

    @classmethod
    def parse(cls, p: Params, log: Callable[[str], None]) -> VNCSettings:
        encoding = p.get("clipboard-encoding")
        codec = CLIPBOARD_ENCODINGS.get(encoding)
        if codec is None:
            log(f'Invalid clipboard encoding "{encoding[:32]}": using ISO8859-1.')
            codec = "latin-1"
        compress = p.get_int("compress-level")
        quality = p.get_int("quality-level")
        return cls(
            hostname=p.get("hostname"),
            port=p.get_int("port"),
            username=p.get_opt("username"),
            password=p.get_opt("password"),
            encodings=p.get("encodings"),
            color_depth=p.get_int("color-depth"),
            swap_red_blue=p.get_bool("swap-red-blue"),
            remote_cursor=p.get("cursor") == "remote",
            resize=not p.get_bool("disable-display-resize"),
            autoretry=max(0, p.get_int("autoretry")),
            clipboard_encoding=codec,
            clipboard_limit=clipboard_limit(p),
            disable_copy=p.get_bool("disable-copy"),
            disable_paste=p.get_bool("disable-paste"),
            dest_host=p.get_opt("dest-host"),
            dest_port=p.get_int("dest-port"),
            reverse_connect=p.get_bool("reverse-connect"),
            listen_timeout_ms=p.get_int("listen-timeout"),
            lossless=p.get_bool("force-lossless"),
            compress_level=compress if 0 <= compress <= 9 else None,
            quality_level=quality if 0 <= quality <= 9 else None,
        )


# guacd ends every failed VNC connect with 519 ("Unable to connect to VNC server").
VNC_CONNECT_POLICY = upstream.Policy(
    message=lambda f: f"Unable to connect to VNC server ({f.reason})."
)


def repeater_id(host: str, port: int) -> bytes:
    """What an UltraVNC repeater expects after its banner: "host:port", NUL-padded."""
    return f"{host}:{port}".encode()[:REPEATER_ID_LENGTH].ljust(REPEATER_ID_LENGTH, b"\0")


class VNCHandler(Handler):
    """A VNC session for one Guacamole connection."""

    protocol = "vnc"
    PARAMS = params(VNC_ARGS, VNC_DEFAULTS)
    # Accepted only while a ``required`` prompt asks for them (accepts_argv); at any
    # other time the core answers 771, as guacd does.
    ARGV = frozenset({"username", "password"})
    READ_ONLY_OWNER_ARGV = True  # a read-only owner answers prompts too, as in guacd

    def __init__(self, conn: Connection, params: Params) -> None:
        super().__init__(conn, params)
        self.settings = VNCSettings.parse(params, self.log.warning)
        self.clipboard = Clipboard(conn, self.settings.clipboard_limit, self.settings.disable_copy)
        self.clipboard_limit = self.clipboard.limit
        self.display = Display(self.conn, lossless=self.settings.lossless)
        self.rfb: RFBClient | None = None
        self.name = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoding = False
        self._queued: list[Callable[[], list[Event] | None]] = []
        self._outstanding = False  # a FramebufferUpdateRequest awaits its update
        self._incremental = False
        self._connected = False
        self._prompt: set[str] = set()
        self._answers: dict[str, str] = {}
        self._resize_wanted: tuple[int, int] | None = None
        self._resize_task: asyncio.Task[None] | None = None
        self._last_resize = 0.0
        self._initial_resize_done = False
        self._failure: GuacrError | None = None
        sftp = SFTPSettings.from_params(params)
        self.sftp: SFTPSideChannel | None = SFTPSideChannel(sftp, self.log) if sftp else None
        self._sftp_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        s = self.settings
        self._log_unsupported()
        reader, writer = await self._open()
        self._reader, self._writer = reader, writer
        try:
            self.rfb = RFBClient(
                username=s.username,
                password=s.password,
                pixel_format=PixelFormat.for_color_depth(s.color_depth),
                swap_red_blue=s.swap_red_blue,
                clipboard_encoding=s.clipboard_encoding,
                max_clipboard=s.clipboard_limit,
            )
        except ValueError as exc:
            raise GuacrError(f"Invalid VNC settings: {exc}") from exc
        await self._pump()

    async def close(self) -> None:
        # Synchronous steps first, so a cancellation arriving at an await below still
        # leaves no socket or task behind.
        if self._resize_task is not None:
            self._resize_task.cancel()
        if self._sftp_task is not None:
            self._sftp_task.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self.sftp is not None:
            await self.sftp.close()
        await self.display.close()

    def _log_unsupported(self) -> None:
        p = self.params
        if p.get_bool("enable-audio"):
            self.log.warning("VNC audio (PulseAudio) is not supported by guacr; no audio.")
        known, unknown = skipped_encodings(self.settings.encodings)
        if known:
            self.log.info("VNC encodings not supported by guacr, skipped: %s.", ", ".join(known))
        if unknown:
            self.log.warning("Unknown VNC encodings ignored: %s.", ", ".join(unknown)[:256])
        if p.get_bool("disable-server-input"):
            self.log.warning("disable-server-input is not supported; server input stays on.")

    # ------------------------------------------------------------------ connecting
    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP to the server (or repeater, or reverse listen), with guacd's retries and
        Wake-on-LAN (guacr.services.upstream)."""
        s = self.settings
        if s.reverse_connect:
            return await self._listen()
        sock = await upstream.connect(
            s.hostname,
            s.port,
            CONNECT_TIMEOUT,
            params=self.params,
            log=self.log,
            policy=VNC_CONNECT_POLICY,
            attempts=s.autoretry + 1,
            interval=RETRY_INTERVAL,
        )
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
        except BaseException:
            sock.close()
            raise
        if s.dest_host:
            try:
                await self._repeater(reader, writer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                writer.close()
                reason = _describe(exc)
                self.log.info("Unable to connect through the repeater: %s", reason)
                raise UpstreamNotFound(f"Unable to connect to VNC server ({reason}).") from None
        self.log.info("Connected to VNC server %s:%d.", s.hostname, s.port)
        return reader, writer

    async def _repeater(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """UltraVNC repeater mode: read its 12-byte banner, name the real destination."""
        s = self.settings
        assert s.dest_host is not None
        await asyncio.wait_for(reader.readexactly(12), CONNECT_TIMEOUT)
        writer.write(repeater_id(s.dest_host, s.dest_port))
        await writer.drain()
        self.log.info("Repeater asked for %s:%d.", s.dest_host, s.dest_port)

    async def _listen(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Reverse connection: wait for the VNC server to connect to us."""
        s = self.settings
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.get_running_loop().create_future()

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if accepted.done():
                writer.close()
            else:
                accepted.set_result((reader, writer))

        try:
            server = await asyncio.start_server(
                on_client, s.hostname or None, s.port, limit=READ_SIZE, reuse_address=True
            )
        except OSError as exc:
            raise UpstreamNotFound(f"Unable to listen for the VNC server ({exc}).") from exc
        self.log.info("Listening for a reverse VNC connection on port %d.", s.port)
        try:
            reader, writer = await asyncio.wait_for(accepted, s.listen_timeout_ms / 1000)
        except TimeoutError:
            raise UpstreamNotFound("The VNC server did not connect in time.") from None
        finally:
            server.close()
        _nodelay(writer)
        return reader, writer

    # ------------------------------------------------------------------ the RFB pump
    async def _pump(self) -> None:
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        pool = enc.executor()
        while True:
            data = await self._reader.read(READ_SIZE)
            if self._failure is not None:
                raise self._failure
            self._decoding = True
            try:
                if len(data) < INLINE_DECODE:
                    events = self._decode(data)
                else:
                    events = await loop.run_in_executor(pool, self._decode, data)
            except RFBError as exc:
                raise self._rfb_failure(exc) from exc
            finally:
                self._decoding = False
            self._handle(events)
            self._run_queued()
            self._flush()
            if not data:
                raise UpstreamError("Connection closed.")

    def _decode(self, data: bytes) -> list[tuple[Event, npt.NDArray[np.uint8] | None]]:
        """Parse/decode a read (maybe in a worker thread), JPEG rects included."""
        assert self.rfb is not None
        out: list[tuple[Event, npt.NDArray[np.uint8] | None]] = []
        try:
            events = self.rfb.receive_data(data)
        except RFBError:
            if not self._connected:
                for event in self.rfb.events():
                    if isinstance(event, AuthFailed):
                        raise Unauthorized(f"Authentication failed: {event.reason}") from None
            raise
        for event in events:
            pixels = None
            if isinstance(event, JpegRect):
                try:
                    pixels = enc.decode_rgb(event.data)
                except Exception as exc:
                    raise RFBProtocolError(f"undecodable Tight JPEG: {exc}") from exc
            out.append((event, pixels))
        return out

    def _rfb_failure(self, exc: RFBError) -> GuacrError:
        if not self._connected:
            self.log.info("VNC handshake failed: %s", exc)
            return UpstreamNotFound(f"Unable to connect to VNC server: {exc}")
        self.log.info("VNC connection failed: %s", exc)
        return UpstreamError(f"Error talking to the VNC server: {exc}")

    def _flush(self) -> None:
        if self.rfb is None or self._writer is None:
            return
        data = self.rfb.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def _call(self, op: Callable[[], list[Event] | None]) -> None:
        """Run an RFB client call now, or right after the decode in progress."""
        if self._decoding:
            self._queued.append(op)
            return
        try:
            events = op()
            if events:
                self._handle([(e, None) for e in events])
        except RFBError as exc:
            self._fail(self._rfb_failure(exc))
        except GuacrError as exc:
            self._fail(exc)
        self._flush()

    def _fail(self, error: GuacrError) -> None:
        """End the session from an input hook: the pump wakes up and raises ``error``."""
        if self._failure is None:
            self._failure = error
            if self._reader is not None:
                self._reader.feed_eof()

    def _run_queued(self) -> None:
        queued, self._queued = self._queued, []
        for op in queued:
            events = op()
            if events:
                self._handle([(e, None) for e in events])

    # ----------------------------------------------------------------------- events
    def _handle(self, events: list[tuple[Event, npt.NDArray[np.uint8] | None]]) -> None:
        display = self.display
        for event, pixels in events:
            if isinstance(event, RectDecoded):
                display.blit(event.x, event.y, event.pixels)
            elif isinstance(event, CopyRect):
                display.copy_rect(
                    event.src_x, event.src_y, event.width, event.height, event.x, event.y
                )
            elif isinstance(event, SolidRect):
                display.fill(event.x, event.y, event.width, event.height, event.rgb)
            elif isinstance(event, JpegRect):
                display.put_jpeg(event.x, event.y, event.width, event.height, event.data, pixels)
            elif isinstance(event, FramebufferUpdateEnd):
                self._outstanding = False
                display.end_frame()
                display.when_ready(self._request_update)
            elif isinstance(event, CursorShape):
                if not self.settings.remote_cursor:
                    display.set_cursor(
                        event.hotspot_x, event.hotspot_y, event.width, event.height, event.rgba
                    )
            elif isinstance(event, DesktopResized):
                self._resized(event)
            elif isinstance(event, ServerCutText):
                self._server_clipboard(event.text)
            elif isinstance(event, Connected):
                self._on_connected(event)
            elif isinstance(event, DesktopNameChanged):
                self._set_name(event.name)
            elif isinstance(event, AuthRequired):
                self._ask_credentials(event.kinds)
            elif isinstance(event, AuthFailed):
                self.log.info("VNC authentication failed: %s", event.reason)
                raise Unauthorized(f"Authentication failed: {event.reason}")

    def _on_connected(self, event: Connected) -> None:
        assert self.rfb is not None
        s = self.settings
        self._connected = True
        self.log.info(
            "VNC session %dx%d (%s), security type %d.",
            event.width,
            event.height,
            event.name,
            event.security_type,
        )
        self.display.resize(event.width, event.height)
        if s.remote_cursor:
            self.display.set_cursor_dot()
        else:
            self.display.set_cursor_pointer()
        self._set_name(event.name)
        if self.sftp is not None and self._sftp_task is None:
            self._sftp_task = asyncio.get_running_loop().create_task(self._start_sftp())
        compress, quality = libvnc_levels(s.encodings, s.compress_level, s.quality_level)
        self.rfb.set_encodings(
            build_encodings(
                s.encodings,
                cursor=not s.remote_cursor,
                desktop_resize=True,
                clipboard=True,
                quality_level=quality,
                compress_level=compress,
            )
        )
        self._incremental = False
        self._request_update()

    def _request_update(self) -> None:
        rfb = self.rfb
        if rfb is None or not rfb.connected or self._outstanding:
            return
        self._outstanding = True
        incremental, self._incremental = self._incremental, True
        self._call(lambda: rfb.framebuffer_update_request(incremental))

    def _resized(self, event: DesktopResized) -> None:
        if event.status != 0:
            self.log.info("The VNC server refused to resize (status %d).", event.status)
        elif (event.width, event.height) != (self.display.width, self.display.height):
            self.log.info("VNC desktop resized to %dx%d.", event.width, event.height)
            self.display.resize(event.width, event.height)
            self._incremental = False
        rfb = self.rfb
        if (
            rfb is not None
            and rfb.supports_set_desktop_size
            and not self._initial_resize_done
            and self.settings.resize
        ):
            self._initial_resize_done = True
            owner = self.conn.owner
            if owner is not None and owner.info.width > 0 and owner.info.height > 0:
                self._want_size(owner.info.width, owner.info.height)

    def _set_name(self, name: str) -> None:
        if name and name != self.name:
            self.name = name
            self.conn.broadcast(b.name(name))

    # ------------------------------------------------------------------- credentials
    def _ask_credentials(self, kinds: tuple[str, ...]) -> None:
        owner = self.conn.owner
        if owner is None or not owner.info.version.supports_required:
            raise Unauthorized("Authentication required, and the client cannot be asked.")
        self._prompt = set(kinds)
        self._answers.clear()
        self.log.info("Asking the owner for: %s", ", ".join(kinds))
        self.conn.send_to_owner(b.required(*kinds))

    def accepts_argv(self, name: str) -> bool:
        """Credentials may be sent only while a prompt for them is pending."""
        return name in self._prompt

    def on_argv(self, user: User, name: str, value: str) -> None:
        if user is not self.conn.owner or name not in self._prompt:
            self.log.debug('Ignoring "%s": no credential prompt pending.', name)
            return
        self._answers[name] = value
        if not self._prompt <= self._answers.keys():
            return
        self._prompt = set()
        answers, self._answers = dict(self._answers), {}
        rfb = self.rfb
        if rfb is not None:
            self._call(
                lambda: rfb.provide_credentials(answers.get("username"), answers.get("password"))
            )

    # ------------------------------------------------------------------------- SFTP
    async def _start_sftp(self) -> None:
        """guacd's ``enable-sftp``: once the VNC session is up, a separate SSH
        connection whose SFTP filesystem is exposed to the owner; failing ends the
        connection."""
        assert self.sftp is not None
        try:
            fs = await self.sftp.open()
        except GuacrError as exc:
            self.log.info("SFTP side channel failed: %s", exc.message)
            self._fail(exc)
            return
        owner = self.conn.owner
        if owner is not None and owner in self.conn.users:
            fs.expose(owner)

    def on_file(self, user: User, stream: int, mimetype: str, filename: str) -> StreamSink | None:
        return self.sftp.on_file(user, stream, filename) if self.sftp is not None else None

    def on_get(self, user: User, obj: int, name: str) -> None:
        if self.sftp is not None:
            self.sftp.on_get(user, obj, name)

    def on_put(
        self, user: User, obj: int, stream: int, mimetype: str, name: str
    ) -> StreamSink | None:
        return self.sftp.on_put(user, obj, stream, name) if self.sftp is not None else None

    def user_left(self, user: User) -> None:
        if self.sftp is not None:
            self.sftp.user_left(user)

    # -------------------------------------------------------------------- clipboard
    def _server_clipboard(self, text: str) -> None:
        self.clipboard.copy(text.encode("utf-8"))

    def on_clipboard(self, user: User, mimetype: str, data: bytes) -> None:
        received = self.clipboard.receive(user, mimetype, data)
        rfb = self.rfb
        if received is None or rfb is None or not rfb.connected:
            return
        text = received.decode("utf-8", "replace")
        self._call(lambda: rfb.client_cut_text(text))

    # ------------------------------------------------------------------------ input
    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        rfb = self.rfb
        if rfb is not None and rfb.connected:
            self._call(lambda: rfb.key_event(keysym, pressed))

    def on_mouse(self, user: User, x: int, y: int, mask: int) -> None:
        self.display.move_pointer(user, x, y, mask)
        rfb = self.rfb
        if rfb is not None and rfb.connected:
            self._call(lambda: rfb.pointer_event(x, y, mask))

    def on_size(self, user: User, width: int, height: int) -> None:
        if user is self.conn.owner and self.settings.resize:
            self._want_size(width, height)

    def _want_size(self, width: int, height: int) -> None:
        """Ask the server for the owner's size, at most every RESIZE_INTERVAL."""
        if width <= 0 or height <= 0:
            return
        self._resize_wanted = (width, height)
        if self._resize_task is None or self._resize_task.done():
            self._resize_task = asyncio.get_running_loop().create_task(self._resize_later())

    async def _resize_later(self) -> None:
        wait = self._last_resize + RESIZE_INTERVAL - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        wanted, self._resize_wanted = self._resize_wanted, None
        rfb = self.rfb
        if wanted is None or rfb is None or not rfb.connected:
            return
        if wanted == (self.display.width, self.display.height):
            return
        self._last_resize = time.monotonic()
        width, height = wanted

        def ask() -> None:
            if rfb.set_desktop_size(width, height):
                self.log.info("Asked the VNC server to resize to %dx%d.", width, height)

        self._call(ask)

    # ------------------------------------------------------------------------ users
    def user_joined(self, user: User) -> None:
        if self.name:
            user.send(b.name(self.name))
        if user is not self.conn.owner:
            self.clipboard.send(user)
        self.display.send_full_state(user)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _describe(error: Exception | None) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, asyncio.IncompleteReadError):
        return "repeater closed the connection"
    if isinstance(error, socket.gaierror):
        return f"name lookup failed: {error.strerror}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
