"""The ``rdp`` protocol handler: guacr's RDP client glued to the shared display engine.

:class:`~guacr.handlers.rdp.client.RDPClient` (aardwolf with guacr's fixes) delivers
decoded bitmaps; they are drawn into a :class:`~guacr.render.display.Display`, and a
frame ends a few milliseconds after the last bitmap of a burst (RDP has no frame
boundaries of its own; the display merges frames while it is still encoding one).
User input becomes scancodes through the ``server-layout`` keymap (Unicode events for
characters the layout lacks) and pointer events with buttons and wheel.

All 90 of guacd 1.6.1's RDP parameters are accepted in its order; those guacr cannot
act on yet are logged once per connection as unsupported (:data:`UNSUPPORTED`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from guacr.contract.handler import Handler, StreamSink
from guacr.contract.params import Params, params
from guacr.errors import GuacrError, Unauthorized, UpstreamError, UpstreamNotFound
from guacr.handlers.rdp import compat, drive, keymap, known_hosts, svc, timezone
from guacr.handlers.rdp.client import (
    SECURITY_MODES,
    U8,
    CertificateRefused,
    RDPClient,
    RDPConfig,
    RDPConnectError,
)
from guacr.handlers.rdp.display_control import clamp_size
from guacr.handlers.rdp.pointer import Cursor
from guacr.handlers.rdp.startup import StartupOptions
from guacr.protocol import builders as b
from guacr.protocol.status import Status
from guacr.render.display import Display
from guacr.services import upstream
from guacr.services.clipboard import Clipboard
from guacr.services.sftp import SFTPFilesystem, SFTPSettings, SFTPSideChannel

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

# The fork server imports every handler before forking: compile aardwolf's ASN.1
# codecs now, so no connection (and no restarted worker) pays 0.43 s of CPU for them.
compat.preload()

RDP_ARGS = (
    "hostname", "port", "timeout", "domain", "username", "password", "width", "height",
    "dpi", "initial-program", "color-depth", "disable-audio", "enable-printing",
    "printer-name", "enable-drive", "drive-name", "drive-path", "create-drive-path",
    "disable-download", "disable-upload", "console", "console-audio", "server-layout",
    "security", "ignore-cert", "cert-tofu", "cert-fingerprints", "disable-auth",
    "remote-app", "remote-app-dir", "remote-app-args", "static-channels", "client-name",
    "enable-wallpaper", "enable-theming", "enable-font-smoothing", "enable-full-window-drag",
    "enable-desktop-composition", "enable-menu-animations", "disable-bitmap-caching",
    "disable-offscreen-caching", "disable-glyph-caching", "disable-gfx", "preconnection-id",
    "preconnection-blob", "timezone", "enable-sftp", "sftp-hostname", "sftp-host-key",
    "sftp-port", "sftp-timeout", "sftp-username", "sftp-password", "sftp-private-key",
    "sftp-passphrase", "sftp-public-key", "sftp-directory", "sftp-root-directory",
    "sftp-server-alive-interval", "sftp-disable-download", "sftp-disable-upload",
    "recording-path", "recording-name", "recording-exclude-output", "recording-exclude-mouse",
    "recording-exclude-touch", "recording-include-keys", "recording-include-clipboard",
    "create-recording-path", "recording-write-existing", "resize-method",
    "enable-audio-input", "enable-touch", "read-only", "gateway-hostname", "gateway-port",
    "gateway-domain", "gateway-username", "gateway-password", "load-balance-info",
    "clipboard-buffer-size", "disable-copy", "disable-paste", "wol-send-packet",
    "wol-mac-addr", "wol-broadcast-addr", "wol-udp-port", "wol-wait-time", "force-lossless",
    "normalize-clipboard",
)  # fmt: skip

RDP_DEFAULTS = {
    "port": "3389",
    "timeout": "10",
    "color-depth": "32",  # guacd's effective default: GFX on means 32 bpp
    "printer-name": "Guacamole Printer",
    "drive-name": "Guacamole Filesystem",
    "server-layout": keymap.DEFAULT_LAYOUT,
    "security": "any",
    "client-name": "Guacamole RDP",
    "sftp-port": "22",
    "sftp-timeout": "10",
    "sftp-root-directory": "/",
    "sftp-server-alive-interval": "0",
    "recording-name": "recording",
    "gateway-port": "443",
    "clipboard-buffer-size": "0",
    "wol-broadcast-addr": "255.255.255.255",
    "wol-udp-port": "9",
    "wol-wait-time": "0",
    "normalize-clipboard": "preserve",
}

PARAMS_DECLARED = params(RDP_ARGS, RDP_DEFAULTS)

# Accepted but not acted on: parameter -> why (logged once per connection when set).
UNSUPPORTED: dict[str, str] = {
    "enable-printing": "no printer redirection (RDPEPC) in aardwolf",
    "printer-name": "no printer redirection",
    "disable-auth": "aardwolf always sends the credentials it has",
    "remote-app": "no RemoteApp (RAIL) in aardwolf",
    "remote-app-dir": "no RemoteApp",
    "remote-app-args": "no RemoteApp",
    "disable-bitmap-caching": "guacr never enables the bitmap cache",
    "disable-offscreen-caching": "guacr never enables the offscreen cache",
    "disable-gfx": "no graphics pipeline (RDPEGFX) in aardwolf: always plain bitmaps",
    "recording-exclude-touch": "no touch input",
    "enable-audio-input": "no audio input channel (RDPEAI) in aardwolf",
    "enable-touch": "no multi-touch (RDPEI) in aardwolf",
    "gateway-hostname": "no RD Gateway support in aardwolf",
}
AUDIO_UNSUPPORTED = (
    "Audio output is not supported: aardwolf has no sound channel (RDPSND); "
    "set disable-audio=true to silence this."
)

# Set Error Info codes -> guacd's status and message (guacd's rdp/error.c).
ERROR_INFO: dict[int, tuple[Status, str]] = {
    0x1: (Status.SESSION_CLOSED, "Forcibly disconnected."),
    0x2: (Status.SESSION_CLOSED, "Logged off."),
    0x3: (Status.SESSION_TIMEOUT, "Idle session time limit exceeded."),
    0x4: (Status.SESSION_CLOSED, "Active session time limit exceeded."),
    0x5: (Status.SESSION_CONFLICT, "Disconnected by other connection."),
    0x6: (Status.UPSTREAM_UNAVAILABLE, "Server refused connection."),
    0x7: (Status.UPSTREAM_UNAVAILABLE, "Server refused connection."),
    0x9: (Status.CLIENT_FORBIDDEN, "Insufficient privileges."),
    0xA: (Status.CLIENT_FORBIDDEN, "Credentials expired."),
    0xB: (Status.SUCCESS, "Manually disconnected."),
    0xC: (Status.SUCCESS, "Manually logged off."),
}
UPSTREAM_ERROR = (Status.UPSTREAM_ERROR, "Upstream error.")
# FreeRDP reports every failed TCP connect as a connect/transport failure: 519 with
# guacd's one text, whatever the reason (the reason is logged).
RDP_CONNECT_POLICY = upstream.Policy(message=lambda f: "Connection failed.")
# guacd's text for FreeRDP's TLS_CONNECT_FAILED, which a refused certificate gives.
CERTIFICATE_REFUSED = "SSL/TLS connection failed (untrusted/self-signed certificate?)"
RESIZE_INTERVAL = 0.5
RESIZE_METHODS = ("display-update", "reconnect")
FRAME_DELAY = 0.004  # end a frame this long after the last bitmap of a burst
# xrdp sends as fast as it is read: frames start at most this often (on average), and
# the RDP reader waits meanwhile, so xrdp merges the changes. benchmarks/bench_rdp.py,
# 32 bpp: uncapped 49-69 frames/s at 1.2-2x guacd's CPU; at 30, 29 frames/s at guacd's
# CPU; 28 leaves a margin over the 25 frames/s target (guacd's frames are 10-100 ms).
MAX_FPS = 28.0
WHEEL_UP = 0x0200 | 0x0078  # PTRFLAGS_WHEEL, +120
WHEEL_DOWN = 0x0200 | 0x0100 | 0x0088  # PTRFLAGS_WHEEL | NEGATIVE, -120 (9-bit)
PTR_MOVE = 0x0800
PTR_DOWN = 0x8000
BUTTONS = ((1, 0x1000), (2, 0x4000), (4, 0x2000))  # left, middle, right


def error_for_info(code: int) -> tuple[Status, str]:
    """guacd's status and message for a Set Error Info code."""
    return ERROR_INFO.get(code, UPSTREAM_ERROR)


def connect_error(exc: RDPConnectError) -> GuacrError:
    """Map a failed connect to guacd's outcome for the same failure."""
    if exc.kind == "certificate":  # FreeRDP's TLS_CONNECT_FAILED
        return UpstreamNotFound(CERTIFICATE_REFUSED)
    if exc.kind in ("unreachable", "timeout"):
        return UpstreamNotFound("Connection failed.")
    if exc.kind in ("security", "auth"):
        return Unauthorized("Authentication failure.")
    return UpstreamError("Upstream error.")


def fingerprints(value: str) -> set[str]:
    """guacd's ``cert-fingerprints``: comma-separated, ``algo:hex`` with or without colons."""
    out = set()
    for item in value.split(","):
        item = item.strip().lower()
        if not item:
            continue
        algo, _, digest = item.partition(":") if ":" in item[:8] else ("sha256", "", item)
        out.add(f"{algo}:{digest.replace(':', '')}")
    return out


def cert_matches(der: bytes, trusted: set[str]) -> bool:
    for entry in trusted:
        algo, _, digest = entry.partition(":")
        try:
            if hashlib.new(algo, der).hexdigest() == digest:
                return True
        except ValueError:
            continue
    return False


NATIVE_DPI = 96  # RDP's own resolution: what servers assume
HIGH_DPI = 120
REASONABLE_AREA = 800 * 600


def suggest_dpi(width: int, height: int, client_dpi: int) -> int:
    """guacd's heuristic: 96 DPI, else 120, if the client's display converted to it is
    still at least 800x600 in area (or the client is at that DPI), else the client's."""
    for dpi in (NATIVE_DPI, HIGH_DPI):
        area = (width * dpi // client_dpi) * (height * dpi // client_dpi)
        if client_dpi == dpi or area >= REASONABLE_AREA:
            return dpi
    return client_dpi


def display_size(p: Params, width: int, height: int, client_dpi: int) -> tuple[int, int, int]:
    """Width, height and DPI of the RDP session as guacd computes them from the
    parameters and the owner's display (``width``/``height`` override the converted
    client size; invalid ones fall back to 1024x768; the width is a multiple of 4).

    Like guacd, the DPI only converts sizes (here and for later ``size``s): guacd sets
    no desktop scale factor or physical size in the Client Core Data, and none in its
    Display Control layouts (zeros, "ignore"); guacr's layouts say 100 % (unscaled)."""
    client_dpi = client_dpi if client_dpi > 0 else NATIVE_DPI
    dpi = p.get_int("dpi")
    if dpi <= 0:
        dpi = suggest_dpi(width, height, client_dpi)
    w = p.get_int("width") if p.get("width") else width * dpi // client_dpi
    h = p.get_int("height") if p.get("height") else height * dpi // client_dpi
    if w <= 0:
        w = 1024
    if h <= 0:
        h = 768
    return max(4, w & ~3), h, dpi


@dataclass(frozen=True)
class RDPSettings:
    hostname: str
    port: int
    timeout: int
    username: str | None
    password: str | None
    domain: str | None
    color_depth: int
    security: str
    ignore_cert: bool
    cert_tofu: bool
    trusted: set[str]
    layout: keymap.Layout
    lossless: bool
    performance_flags: int
    resize_method: str
    startup: StartupOptions

    @classmethod
    def parse(cls, p: Params, log: Callable[[str], None]) -> RDPSettings:
        depth = p.get_int("color-depth")
        if depth not in (8, 16, 24, 32):
            depth = 32
        security = p.get("security")
        if security not in SECURITY_MODES:
            log(f'Unknown security mode "{security[:32]}": using "any".')
            security = "any"
        layout_name = p.get("server-layout")
        layout = keymap.LAYOUTS.get(layout_name)
        if layout is None:
            log(f'Unsupported server-layout "{layout_name[:32]}": using en-us-qwerty.')
            layout = keymap.LAYOUTS[keymap.DEFAULT_LAYOUT]
        resize = p.get("resize-method")
        if resize not in ("", *RESIZE_METHODS):
            log(f'Unknown resize-method "{resize[:32]}": the size stays fixed.')
            resize = ""
        preconnection_id: int | None = None
        if p.get("preconnection-id"):
            preconnection_id = p.get_int("preconnection-id", -1)
            if preconnection_id < 0:
                log(f"Ignoring invalid preconnection ID: {p.get('preconnection-id')[:32]}")
                preconnection_id = None
        startup_options = StartupOptions(
            client_name=p.get("client-name"),
            alternate_shell=p.get("initial-program"),
            console=p.get_bool("console"),
            console_audio=p.get_bool("console-audio"),
            audio_playback=not p.get_bool("disable-audio"),
            load_balance_info=p.get("load-balance-info"),
            preconnection_id=preconnection_id,
            preconnection_blob=p.get_opt("preconnection-blob"),
        )
        perf = 0
        # TS_EXTENDED_INFO_PACKET performanceFlags: wallpaper, full-window drag, menu
        # animations, theming are "disable" bits; font smoothing, composition "enable".
        if not p.get_bool("enable-wallpaper"):
            perf |= 0x01
        if not p.get_bool("enable-full-window-drag"):
            perf |= 0x02
        if not p.get_bool("enable-menu-animations"):
            perf |= 0x04
        if not p.get_bool("enable-theming"):
            perf |= 0x08
        if p.get_bool("enable-font-smoothing"):
            perf |= 0x80
        if p.get_bool("enable-desktop-composition"):
            perf |= 0x100
        return cls(
            hostname=p.get("hostname"),
            port=p.get_int("port") or 3389,
            timeout=max(1, p.get_int("timeout")),
            username=p.get_opt("username"),
            password=p.get_opt("password"),
            domain=p.get_opt("domain"),
            color_depth=depth,
            security=security,
            ignore_cert=p.get_bool("ignore-cert"),
            cert_tofu=p.get_bool("cert-tofu"),
            trusted=fingerprints(p.get("cert-fingerprints")),
            layout=layout,
            lossless=p.get_bool("force-lossless"),
            performance_flags=perf,
            resize_method=resize,
            startup=startup_options,
        )


class RDPHandler(Handler):
    """An RDP session for one Guacamole connection."""

    protocol = "rdp"
    PARAMS = PARAMS_DECLARED
    ARGV = frozenset({"username", "password", "domain"})

    def __init__(self, conn: Connection, params: Params) -> None:
        super().__init__(conn, params)
        self.settings = RDPSettings.parse(params, self.log.warning)
        self.display = Display(self.conn, lossless=self.settings.lossless, max_fps=MAX_FPS)
        self.clipboard = Clipboard.from_params(conn, params)
        self.rdp: RDPClient | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self._pending: list[tuple[int, int, U8]] = []
        self._waiting_display = False
        self._display_free = asyncio.Event()  # set unless bitmaps wait for the display
        self._display_free.set()
        self._failure: tuple[Status, str] | None = None
        self._prompt: set[str] = set()
        self._answers: dict[str, str] = {}
        self._answered: asyncio.Event | None = None
        self._mask = 0
        self._held: dict[int, int] = {}  # keysym -> scancode sent for its press
        self._mods = 0  # SHIFT/ALTGR bits the user holds
        self._shift_keys: set[int] = set()
        # Lock keys as the client has them (guacd's lock_flags): synchronized to the
        # server before the first key, toggled by the client's lock-key presses.
        self._locks = 0
        self._locks_synced = False
        self._size_wanted: tuple[int, int] | None = None
        self._reconnect_size: tuple[int, int] | None = None
        self._reconnecting = False
        self._dpi = self._client_dpi = NATIVE_DPI
        sftp = SFTPSettings.from_params(params, self.settings.username)
        self.sftp: SFTPSideChannel | None = SFTPSideChannel(sftp, self.log) if sftp else None
        self._sftp_task: asyncio.Task[None] | None = None
        self._sftp_error: GuacrError | None = None
        self._size_task: asyncio.Task[None] | None = None
        self.drive: SFTPFilesystem | None = None  # enable-drive, as a Guacamole filesystem
        self._drive_path: str | None = None
        self._downloads_off = params.get_bool("disable-download")
        self._time_zone: bytes | None = None
        # static-channels: name -> the connection-level pipe stream carrying its data
        self._svc_names = svc.channel_names(params.get("static-channels"), self.log.warning)
        self._svc_pipes: dict[str, int] = {}

    # ------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        self._log_unsupported()
        await self._credentials()
        owner = self.conn.owner
        cw, ch, cdpi = (1024, 768, NATIVE_DPI)
        if owner is not None and owner.info.width > 0 and owner.info.height > 0:
            cw, ch, cdpi = owner.info.width, owner.info.height, owner.info.dpi
        width, height, dpi = display_size(self.params, cw, ch, cdpi)
        self._open_drive()
        self._dpi, self._client_dpi = dpi, cdpi if cdpi > 0 else NATIVE_DPI
        self.display.resize(width, height)
        self.display.set_cursor_pointer()
        client = await self._open(width, height, dpi, wake=True)
        if self.sftp is not None:
            self._sftp_task = asyncio.get_running_loop().create_task(self._start_sftp())
        while True:
            await client.wait_closed()
            size, self._reconnect_size = self._reconnect_size, None
            if size is None or self._sftp_error is not None:
                break
            # resize-method=reconnect (guacd): a new RDP session at the new size; the
            # Guacamole connection, its users and the display engine stay.
            self.log.info("Reconnecting to the RDP server at %dx%d.", *size)
            self._new_session()
            self.display.resize(*size)
            self._reconnecting = True
            try:
                client = await self._open(*size, self._dpi, wake=False)
            finally:
                self._reconnecting = False
        if self._sftp_error is not None:
            raise self._sftp_error
        status, message = self._failure or (Status.SUCCESS, "Disconnected.")
        self.log.info("RDP server closed/refused connection: %s", message)
        if status != Status.SUCCESS:
            raise GuacrError(message, status)

    async def _open(self, width: int, height: int, dpi: int, *, wake: bool) -> RDPClient:
        """Connect one RDP session at ``width`` x ``height`` (Wake-on-LAN only for the
        first, as guacd); raises guacd's error for a failure."""
        s = self.settings
        if self._time_zone is None:
            self._time_zone = self._client_time_zone()
        config = RDPConfig(
            host=s.hostname,
            port=s.port,
            username=self._answers.get("username", s.username),
            password=self._answers.get("password", s.password),
            domain=self._answers.get("domain", s.domain) or None,
            width=width,
            height=height,
            color_depth=s.color_depth,
            security=s.security,
            timeout=float(s.timeout),
            keyboard_layout=s.layout.keyboard_layout,
            performance_flags=s.performance_flags,
            cert_check=None if s.ignore_cert else self._check_cert,
            display_control=s.resize_method == "display-update",
            drive_path=self._drive_path,
            drive_name=self.params.get("drive-name"),
            startup=dataclasses.replace(s.startup, time_zone=self._time_zone),
            static_channels=tuple(self._svc_names),
            drive_download=None
            if self.params.get_bool("disable-download")
            else self._drive_download,
        )
        client = RDPClient(config, self)
        self.log.info(
            "Connecting to RDP server %s:%d (%dx%d, %d bpp, security %s, dpi %d).",
            s.hostname, s.port, width, height, s.color_depth, s.security, dpi,
        )  # fmt: skip
        # Input that arrives while connecting is dropped (guacd: no RDP instance yet).
        self.rdp = client
        # TCP through the shared upstream service (Wake-on-LAN, guacd's texts).
        sock = await upstream.connect(
            s.hostname,
            s.port,
            float(s.timeout),
            params=self.params if wake else None,
            log=self.log,
            policy=RDP_CONNECT_POLICY,
        )
        try:
            await client.connect(sock)
        except RDPConnectError as exc:
            self.rdp = None
            sock.close()
            self.log.info("RDP connection failed (%s): %s", exc.kind, exc)
            raise connect_error(exc) from exc
        self.log.info("RDP session established.")
        return client

    def _client_time_zone(self) -> bytes:
        """guacd's ``timezone``: the parameter, else the owner's handshake time zone,
        else the system's; as TS_TIME_ZONE_INFORMATION (what FreeRDP builds from TZ)."""
        owner = self.conn.owner
        name = self.params.get("timezone") or (owner.info.timezone if owner else None)
        name = name or timezone.local_zone_name()
        if timezone.zone(name) is None:
            self.log.warning('Unknown time zone "%s": sending "Client Local Time".', name[:64])
        else:
            self.log.debug('Forwarding time zone "%s" to the RDP server.', name)
        return timezone.time_zone_information(name)

    def _new_session(self) -> None:
        """Per-session state starts afresh on a reconnect, as guacd's new keyboard:
        nothing held, locks off and synchronized again before the first key."""
        self._pending.clear()
        self._failure = None
        self._held.clear()
        self._mods = 0
        self._shift_keys.clear()
        self._locks = 0
        self._locks_synced = False

    async def close(self) -> None:
        self._display_free.set()  # a reader still waiting goes on (and ends)
        if self._frame_timer is not None:
            self._frame_timer.cancel()
        if self._size_task is not None:
            self._size_task.cancel()
        if self._sftp_task is not None:
            self._sftp_task.cancel()
        rdp, self.rdp = self.rdp, None
        if rdp is not None:
            await rdp.close()
        if self.sftp is not None:
            await self.sftp.close()
        if self.drive is not None:
            await self.drive.close()
        await self.display.close()

    def _log_unsupported(self) -> None:
        p = self.params
        for name, reason in UNSUPPORTED.items():
            if p.raw(name) and p.raw(name) != "false":
                self.log.warning('Parameter "%s" is not supported: %s.', name, reason)
        if not p.get_bool("disable-audio"):
            self.log.info(AUDIO_UNSUPPORTED)
        for name in ("gateway-port", "gateway-domain", "gateway-username", "gateway-password"):
            if p.raw(name) and p.raw("gateway-hostname"):
                self.log.debug('Parameter "%s" ignored with the gateway.', name)

    async def _check_cert(self, der: bytes) -> None:
        """guacd (FreeRDP) with ignore-cert off: a certificate listed in
        ``cert-fingerprints`` or recorded for this host and port in the known-hosts
        store is trusted; with ``cert-tofu`` an unknown one is recorded and trusted; a
        changed one is always refused."""
        if cert_matches(der, self.settings.trusted):
            return
        s = self.settings
        path = known_hosts.default_path()
        try:
            verdict = await asyncio.to_thread(
                known_hosts.check, path, s.hostname, s.port, der, s.cert_tofu
            )
        except OSError as exc:
            self.log.error("Cannot use the RDP known-hosts file %s: %s", path, exc)
            raise CertificateRefused("The known-hosts file is not usable.") from None
        fp = known_hosts.fingerprint(der)
        if verdict is known_hosts.Verdict.ADDED:
            self.log.info(
                "Trusting the certificate of %s:%d on first use (%s).", s.hostname, s.port, fp
            )
        if verdict in (known_hosts.Verdict.KNOWN, known_hosts.Verdict.ADDED):
            return
        if verdict is known_hosts.Verdict.CHANGED:
            self.log.warning(
                "The certificate of %s:%d has CHANGED since it was recorded in %s (now %s): "
                "refused. Remove its line there to trust the new one.",
                s.hostname, s.port, path, fp,
            )  # fmt: skip
            raise CertificateRefused("The server certificate has changed.")
        self.log.info("RDP server certificate is not trusted (%s).", fp)
        raise CertificateRefused("The server certificate is not trusted.")

    # ------------------------------------------------------------------- credentials
    async def _credentials(self) -> None:
        """Ask a 1.3.0+ owner for missing credentials (guacd's ``required``): the
        username, the domain too when neither is set, and the password."""
        s = self.settings
        missing = []
        if not s.username:
            missing.append("username")
            if not s.domain:
                missing.append("domain")
        if not s.password:
            missing.append("password")
        owner = self.conn.owner
        if not missing or owner is None or not owner.info.version.supports_required:
            return
        self._prompt = set(missing)
        self._answered = asyncio.Event()
        self.log.info("Asking the owner for: %s", ", ".join(missing))
        self.conn.send_to_owner(b.required(*missing))
        await self._answered.wait()

    def accepts_argv(self, name: str) -> bool:
        return name in self._prompt

    def on_argv(self, user: User, name: str, value: str) -> None:
        if user is not self.conn.owner or name not in self._prompt:
            return
        self._answers[name] = value
        if self._prompt <= self._answers.keys():
            self._prompt = set()
            if self._answered is not None:
                self._answered.set()

    # ------------------------------------------------------------------- RDP sink
    def bitmap(self, x: int, y: int, pixels: U8) -> None:
        # Held back and drawn in one go with end_frame (below): the display flushes a
        # frame only between drawing, and RDP servers push bitmaps without pause.
        self._pending.append((x, y, pixels))

    def update_end(self) -> None:
        if self._frame_timer is None and not self._waiting_display:
            loop = asyncio.get_running_loop()
            self._frame_timer = loop.call_later(FRAME_DELAY, self._end_frame)

    def _end_frame(self) -> None:
        """Draw what arrived since the last frame and end it, once the display can take
        another frame (while it encodes one, bitmaps gather here: a slow client slows
        the frame rate, not the RDP session)."""
        self._frame_timer = None
        display = self.display
        if not display.ready:
            if not self._waiting_display:
                self._waiting_display = True
                self._display_free.clear()
                display.when_ready(self._display_ready)
            return
        self._draw_pending()
        display.end_frame()

    def _display_ready(self) -> None:
        self._waiting_display = False
        self._display_free.set()
        self._end_frame()

    async def more_updates(self) -> None:
        """The RDP reader's pause after each update: a loop turn, and no more reading
        while bitmaps wait for the display (the server merges changes meanwhile)."""
        await asyncio.sleep(0)
        await self._display_free.wait()

    def _draw_pending(self) -> None:
        pending, self._pending = self._pending, []
        blit = self.display.blit
        for x, y, pixels in pending:
            blit(x, y, pixels)

    def error_info(self, code: int) -> None:
        self._failure = error_for_info(code)
        self.log.debug("Disconnect reason code: 0x%X.", code)

    def keyboard_indicators(self, flags: int) -> None:
        """The server's lock keys changed (Set Keyboard Indicators): as guacd, our copy
        takes the server's state, so the next lock-key synchronisation keeps it."""
        self.log.debug("Received updated keyboard lock flags from RDP server: 0x%X", flags)
        self._locks = flags & keymap.LOCK_MASK

    def desktop_resized(self, width: int, height: int) -> None:
        self.log.info("RDP desktop resized to %dx%d.", width, height)
        self._draw_pending()
        self.display.resize(width, height)

    def cursor(self, cursor: Cursor) -> None:
        if cursor.default:
            self.display.set_cursor_pointer()
        else:
            self.display.set_cursor(
                cursor.hotspot_x, cursor.hotspot_y, cursor.width, cursor.height, cursor.rgba
            )
        self.update_end()  # a pointer change alone must still reach the client

    def server_clipboard(self, text: str) -> None:
        self.clipboard.copy(text.encode("utf-8"))

    # -------------------------------------------------------------- static channels
    def svc_opened(self, name: str) -> None:
        """guacd: a joined static channel becomes a pipe stream to every user."""
        stream = self._svc_pipes.get(name)
        if stream is None:  # a reconnect keeps the stream the users know
            try:
                stream = self.conn.alloc_stream()
            except OverflowError:
                self.log.warning('No stream left for static channel "%s".', name)
                return
            self._svc_pipes[name] = stream
            self.conn.broadcast(b.pipe(stream, "application/octet-stream", name))
        self.log.debug('Static channel "%s" connected.', name)

    def svc_data(self, name: str, data: bytes) -> None:
        stream = self._svc_pipes.get(name)
        if stream is not None:
            self.conn.broadcast(b.blob(stream, data))

    def on_pipe(self, user: User, stream: int, mimetype: str, name: str) -> StreamSink | None:
        """guacd: a client pipe named after a static channel carries data to it."""
        if user.read_only:
            return None
        if name not in self._svc_pipes:
            self.log.warning(
                'User requested non-existent pipe (no such SVC configured): "%s"', name[:64]
            )
            user.ack(stream, "FAIL (NO SUCH PIPE)", Status.CLIENT_BAD_REQUEST)
            return _Discard()
        self.log.debug('Inbound half of channel "%s" connected.', name)
        return _ChannelWriter(self, user, stream, name)

    # ------------------------------------------------------------------- clipboard
    def on_clipboard(self, user: User, mimetype: str, data: bytes) -> None:
        received = self.clipboard.receive(user, mimetype, data)
        rdp = self.rdp
        if received is None or rdp is None:
            return
        text = received.decode("utf-8", "replace")
        mode = self.params.get("normalize-clipboard")
        if mode in ("unix", "windows"):
            text = text.replace("\r\n", "\n")
            if mode == "windows":
                text = text.replace("\n", "\r\n")
        rdp.set_clipboard(text)

    # ----------------------------------------------------------------------- input
    def on_mouse(self, user: User, x: int, y: int, mask: int) -> None:
        self.display.move_pointer(user, x, y, mask)
        rdp = self.rdp
        if rdp is None:
            return
        changed = mask ^ self._mask
        if not changed & 0x07:
            rdp.pointer(x, y, PTR_MOVE)
        for bit, flag in BUTTONS:
            if changed & bit:
                rdp.pointer(x, y, flag | (PTR_DOWN if mask & bit else 0))
        if changed & mask & 8:
            rdp.pointer(x, y, WHEEL_UP)
        if changed & mask & 16:
            rdp.pointer(x, y, WHEEL_DOWN)
        self._mask = mask

    def on_key(self, user: User, keysym: int, pressed: bool) -> None:
        rdp = self.rdp
        if rdp is None or not rdp.accepts_input:
            return  # (re)connecting: dropped, and the lock state stays unsynchronized
        self._update_locks(rdp, keysym, pressed)
        if not pressed:
            code = self._held.pop(keysym, None)
            if code is None:
                return
            if code < 0:
                rdp.unicode(-code, False)
            else:
                rdp.key(code & 0xFF, bool(code & keymap.EXT), False)
            self._track_modifier(keysym, False)
            return
        fixed = keymap.FIXED.get(keysym)
        if fixed is not None and keysym in keymap.KEYPAD_DIGITS:
            # guacd's keymaps ("-shift +num"): a keypad digit never goes with Shift
            # held (Shift+keypad is End/Down/... on the server), so Shift is let go
            # for it; Num Lock was turned on above.
            self._held[keysym] = fixed
            self._with_modifiers(
                rdp,
                self._mods & ~keymap.SHIFT,
                lambda: rdp.key(fixed & 0xFF, bool(fixed & keymap.EXT), True),
            )
            return
        if fixed is not None:
            self._held[keysym] = fixed
            self._track_modifier(keysym, True)
            rdp.key(fixed & 0xFF, bool(fixed & keymap.EXT), True)
            return
        entry = self.settings.layout.keys.get(keysym)
        if entry is None:
            cp = keymap.codepoint_of(keysym)
            if cp is None:
                self.log.debug("No scancode for keysym 0x%X.", keysym)
                return
            self._held[keysym] = -cp
            rdp.unicode(cp, True)
            return
        code, mods = entry
        if self._locks & keymap.SYNC_CAPS and keysym in self.settings.layout.caps:
            mods ^= keymap.SHIFT  # Caps Lock already gives the other case
        self._held[keysym] = code
        self._with_modifiers(rdp, mods, lambda: rdp.key(code & 0xFF, bool(code & keymap.EXT), True))

    def _update_locks(self, rdp: RDPClient, keysym: int, pressed: bool) -> None:
        """guacd's lock-key handling: before the first key of the session the server's
        Caps/Num/Scroll Lock are set to the client's (all off until it presses one);
        a lock key's press toggles our copy (its scancode toggles the server's); a
        keypad digit first turns Num Lock on, as guacd's keymaps require."""
        if not self._locks_synced:
            self._locks_synced = True
            rdp.synchronize(self._locks)
        if not pressed or keysym in self._held:
            return  # a release, or a repeat of a held key: no toggle
        self._locks ^= keymap.LOCK_FLAGS.get(keysym, 0)
        if keysym in keymap.KEYPAD_DIGITS and not self._locks & keymap.SYNC_NUM:
            self._locks |= keymap.SYNC_NUM
            rdp.synchronize(self._locks)

    def _track_modifier(self, keysym: int, pressed: bool) -> None:
        if keysym in (0xFFE1, 0xFFE2):
            if pressed:
                self._shift_keys.add(keysym)
            else:
                self._shift_keys.discard(keysym)
            self._mods = (self._mods & ~keymap.SHIFT) | (keymap.SHIFT if self._shift_keys else 0)
        elif keysym == 0xFE03:
            self._mods = (self._mods & ~keymap.ALTGR) | (keymap.ALTGR if pressed else 0)

    def _with_modifiers(self, rdp: RDPClient, wanted: int, send: Callable[[], None]) -> None:
        """Press/release Shift and AltGr so the server sees ``wanted``, send, restore."""
        have = self._mods
        changes: list[tuple[int, bool]] = []
        if wanted & keymap.SHIFT and not have & keymap.SHIFT:
            changes.append((keymap.SC_LSHIFT, True))
        if have & keymap.SHIFT and not wanted & keymap.SHIFT:
            changes += [(keymap.SC_LSHIFT, False), (keymap.SC_RSHIFT, False)]
        if wanted & keymap.ALTGR and not have & keymap.ALTGR:
            changes.append((keymap.SC_ALTGR, True))
        if have & keymap.ALTGR and not wanted & keymap.ALTGR:
            changes.append((keymap.SC_ALTGR, False))
        for code, down in changes:
            rdp.key(code & 0xFF, bool(code & keymap.EXT), down)
        send()
        holders = {keymap.SC_LSHIFT: 0xFFE1, keymap.SC_RSHIFT: 0xFFE2}
        for code, down in reversed(changes):
            # A modifier we released goes down again only if the user still holds it.
            if not down and code in holders and holders[code] not in self._shift_keys:
                continue
            rdp.key(code & 0xFF, bool(code & keymap.EXT), not down)

    # ------------------------------------------------------------------------- SFTP
    async def _start_sftp(self) -> None:
        """guacd's ``enable-sftp``: once the RDP session is up, a separate SSH
        connection whose SFTP filesystem is exposed to the owner; failing ends the
        connection (the shared SFTP service)."""
        assert self.sftp is not None
        try:
            fs = await self.sftp.open()
        except GuacrError as exc:
            self.log.info("SFTP side channel failed: %s", exc.message)
            self._sftp_error = exc
            if self.rdp is not None:
                await self.rdp.close()
            return
        owner = self.conn.owner
        if owner is not None and owner in self.conn.users:
            fs.expose(owner)

    def on_file(self, user: User, stream: int, mimetype: str, filename: str) -> StreamSink | None:
        """guacd's choice for a plain upload: SFTP when it is on and allows uploads,
        unless the drive is on too and ``sftp-directory`` is not set; else the drive."""
        sftp = self.sftp
        if (
            sftp is not None
            and not sftp.settings.disable_upload
            and (self.drive is None or sftp.settings.directory is not None)
        ):
            return sftp.on_file(user, stream, filename)
        if self.drive is not None:
            return self.drive.upload(user, stream, filename)
        return None

    def on_get(self, user: User, obj: int, name: str) -> None:
        if self.drive is not None and self.drive.owns(user, obj):
            self.drive.get(user, obj, name)
        elif self.sftp is not None:
            self.sftp.on_get(user, obj, name)

    def on_put(
        self, user: User, obj: int, stream: int, mimetype: str, name: str
    ) -> StreamSink | None:
        if self.drive is not None and self.drive.owns(user, obj):
            return self.drive.put(user, stream, name)
        return self.sftp.on_put(user, obj, stream, name) if self.sftp is not None else None

    def user_left(self, user: User) -> None:
        if self.sftp is not None:
            self.sftp.user_left(user)
        if self.drive is not None:
            self.drive.forget(user)

    # ------------------------------------------------------------------------ drive
    def _open_drive(self) -> None:
        """guacd's ``enable-drive``: ``drive-path`` (created if ``create-drive-path``)
        is shared with the server as a drive named ``drive-name``, and offered to the
        owner as the "Shared Drive" filesystem (``disable-download``/``-upload``)."""
        p = self.params
        if not p.get_bool("enable-drive"):
            return
        path = p.get("drive-path")
        if not path:
            self.log.warning("Drive redirection is enabled but drive-path is empty.")
            return
        try:
            root = drive.prepare(
                path, p.get_bool("create-drive-path"), not p.get_bool("disable-download")
            )
        except OSError as exc:
            self.log.error('Unable to use drive-path "%s": %s', path, exc)
            return
        self._drive_path = str(root)
        fs = SFTPFilesystem(
            cast(Any, drive.LocalFiles(root)),  # duck-typed SFTP client on a directory
            "/",
            disable_download=p.get_bool("disable-download"),
            disable_upload=p.get_bool("disable-upload"),
            logger=self.log,
        )
        fs.name = drive.OBJECT_NAME
        fs.upload_path = "/"  # plain uploads land in the drive's root, as guacd's
        self.drive = fs
        owner = self.conn.owner
        if owner is not None and owner in self.conn.users:
            fs.expose(owner)

    def _drive_download(self, path: str, remove: bool) -> None:
        """The server wrote a file into the drive's Download folder (``remove``: it goes
        once sent, as guacd's) or moved one there: to the owner."""
        owner = self.conn.owner
        if self.drive is not None and owner is not None and owner in self.conn.users:
            self.log.info('Sending "%s" from the shared drive to the owner.', path)
            if remove:
                cast(drive.LocalFiles, self.drive.sftp).consume(path)
            self.drive.download(owner, path)

    def _files_open(self) -> int:
        """Drive files open on either side (guacd's ``open_files``: the server's, and
        the transfers to and from the Guacamole client)."""
        local = cast(drive.LocalFiles, self.drive.sftp).open_files if self.drive else 0
        return local + (self.rdp.open_files if self.rdp is not None else 0)

    # ---------------------------------------------------------------------- resize
    def on_size(self, user: User, width: int, height: int) -> None:
        """The owner's display changed: with ``resize-method`` set, the server follows
        (client pixels converted to the session's DPI, as guacd)."""
        if user is not self.conn.owner or self.settings.resize_method not in RESIZE_METHODS:
            return
        width = width * self._dpi // self._client_dpi
        height = height * self._dpi // self._client_dpi
        self._size_wanted = clamp_size(width, height)
        if self._size_task is None or self._size_task.done():
            self._size_task = asyncio.get_running_loop().create_task(self._resize_later())

    async def _resize_later(self) -> None:
        """At most one change per RESIZE_INTERVAL (guacd's rate limit), and only to a
        size the session does not have: a Display Control layout, or a reconnect."""
        await asyncio.sleep(RESIZE_INTERVAL)
        while self._reconnecting:
            await asyncio.sleep(RESIZE_INTERVAL)
        wanted, self._size_wanted = self._size_wanted, None
        rdp = self.rdp
        if wanted is None or rdp is None:
            return
        if self.settings.resize_method == "reconnect":
            wanted = await self._when_no_files_open(wanted)
            # RDP sessions are opened at a width that is a multiple of 4 (as at connect).
            wanted = (max(4, wanted[0] & ~3), wanted[1])
            if wanted != (self.display.width, self.display.height):
                self.log.info("Reconnecting to resize the RDP session to %dx%d.", *wanted)
                self._reconnect_size = wanted
                await rdp.close()
            return
        if rdp.can_resize and wanted != (self.display.width, self.display.height):
            self.log.info("Asking the RDP server to resize to %dx%d.", *wanted)
            rdp.resize(*wanted)

    async def _when_no_files_open(self, wanted: tuple[int, int]) -> tuple[int, int]:
        """guacd never reconnects while drive files are open (the server would lose
        them): wait until none is, then take the latest size asked for meanwhile."""
        logged = False
        while self._files_open():
            if not logged:
                self.log.info("Resize by reconnect deferred: drive files are open.")
                logged = True
            await asyncio.sleep(RESIZE_INTERVAL)
            newer, self._size_wanted = self._size_wanted, None
            wanted = newer or wanted
        return wanted

    # ----------------------------------------------------------------------- users
    def user_joined(self, user: User) -> None:
        if user is not self.conn.owner:
            self.clipboard.send(user)
        for name, stream in self._svc_pipes.items():  # guacd sends joiners the pipes
            user.send(b.pipe(stream, "application/octet-stream", name))
        self.display.send_full_state(user)


class _ChannelWriter:
    """An inbound pipe's blobs, each written to its static channel as one message and
    acknowledged as guacd does."""

    def __init__(self, handler: RDPHandler, user: User, stream: int, name: str) -> None:
        self.handler, self.user, self.stream, self.name = handler, user, stream, name

    def blob(self, data: bytes) -> None:
        rdp = self.handler.rdp
        if rdp is not None:
            rdp.svc_write(self.name, data)
        self.user.ack(self.stream, "OK (DATA RECEIVED)", Status.SUCCESS)

    def end(self) -> None:
        pass


class _Discard:
    """A refused inbound pipe (already answered): its data goes nowhere."""

    def blob(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        pass
