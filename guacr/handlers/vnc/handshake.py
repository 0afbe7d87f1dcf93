"""RFB handshake as a reader generator: version, security (None, VncAuth, VeNCrypt),
SecurityResult, ClientInit and ServerInit.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from guacr.handlers.vnc.constants import (
    ANON_TLS_SUBTYPES,
    TLS_SUBTYPES,
    SecurityType,
    VeNCryptSubtype,
)
from guacr.handlers.vnc.events import (
    AuthFailed,
    AuthRequired,
    Event,
    RFBProtocolError,
    RFBSecurityError,
    RFBTLSError,
)
from guacr.handlers.vnc.pixels import PixelFormat
from guacr.handlers.vnc.security import plain_auth_payload, vnc_auth_response
from guacr.handlers.vnc.stream import Reader, StartTLS, WaitCredentials, read_string, read_u32

_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
MAX_REASON = 64 << 10
MAX_NAME = 64 << 10

# Our preference is the server's order, restricted to what we implement.
SUPPORTED_TYPES = (SecurityType.VENCRYPT, SecurityType.VNC_AUTH, SecurityType.NONE)
SUPPORTED_SUBTYPES = tuple(VeNCryptSubtype)

_AUTH_NONE, _AUTH_VNC, _AUTH_PLAIN = "none", "vnc", "plain"
_SUBTYPE_AUTH = {
    VeNCryptSubtype.PLAIN: _AUTH_PLAIN,
    VeNCryptSubtype.TLS_NONE: _AUTH_NONE,
    VeNCryptSubtype.TLS_VNC: _AUTH_VNC,
    VeNCryptSubtype.TLS_PLAIN: _AUTH_PLAIN,
    VeNCryptSubtype.X509_NONE: _AUTH_NONE,
    VeNCryptSubtype.X509_VNC: _AUTH_VNC,
    VeNCryptSubtype.X509_PLAIN: _AUTH_PLAIN,
}


@dataclass(frozen=True, slots=True)
class ServerInit:
    version: tuple[int, int]
    security_type: int
    width: int
    height: int
    pixel_format: PixelFormat
    name: str


def choose_version(major: int, minor: int) -> tuple[int, int]:
    """Answer min(server, 3.8); anything below 3.7 (3.3, 3.5, 3.6...) speaks 3.3."""
    if major < 3:
        raise RFBProtocolError(f"unsupported RFB version {major}.{minor}")
    if major > 3 or minor >= 8:
        return 3, 8
    if minor == 7:
        return 3, 7
    return 3, 3


class Handshake:
    """Runs the handshake; ``credentials`` returns the current (username, password)."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        emit: Callable[[Event], None],
        credentials: Callable[[], tuple[str | None, str | None]],
        *,
        shared: bool = True,
        security_types: Sequence[int] | None = None,
    ) -> None:
        self._send = send
        self._emit = emit
        self._credentials = credentials
        self._shared = shared
        allowed: set[int] = set(SUPPORTED_TYPES if security_types is None else security_types)
        self._subtypes: set[int] = allowed & set(SUPPORTED_SUBTYPES)
        if self._subtypes:
            allowed.add(SecurityType.VENCRYPT)
        elif SecurityType.VENCRYPT in allowed:
            self._subtypes = set(SUPPORTED_SUBTYPES)
        self._allowed = allowed
        self.version = (3, 8)
        self.security_type = 0

    def run(self) -> Reader[ServerInit | None]:
        """Returns ServerInit, or None after emitting AuthFailed."""
        banner = yield 12
        match = _VERSION.fullmatch(banner)
        if not match:
            raise RFBProtocolError(f"not an RFB server (banner {banner!r})")
        self.version = choose_version(int(match[1]), int(match[2]))
        self._send(b"RFB %03d.%03d\n" % self.version)

        sec_type = yield from self._negotiate_type()
        self.security_type = sec_type
        auth = _AUTH_NONE
        if sec_type == SecurityType.VNC_AUTH:
            auth = _AUTH_VNC
        elif sec_type == SecurityType.VENCRYPT:
            subtype = yield from self._vencrypt()
            self.security_type = subtype
            auth = _SUBTYPE_AUTH[VeNCryptSubtype(subtype)]
        if auth == _AUTH_VNC:
            yield from self._vnc_auth()
        elif auth == _AUTH_PLAIN:
            yield from self._plain_auth()

        if self.version >= (3, 8) or sec_type != SecurityType.NONE:
            result = yield from read_u32()
            if result != 0:
                reason = "authentication failed"
                if result == 2:
                    reason = "too many authentication failures"
                if self.version >= (3, 8):
                    text = yield from read_string(MAX_REASON, "SecurityResult reason")
                    reason = text.decode("utf-8", "replace") or reason
                self._emit(AuthFailed(reason))
                return None

        self._send(bytes([1 if self._shared else 0]))
        head = yield 20
        width, height = struct.unpack_from(">HH", head)
        pf = PixelFormat.unpack(head[4:20])
        raw_name = yield from read_string(MAX_NAME, "desktop name")
        return ServerInit(self.version, self.security_type, width, height, pf, _text(raw_name))

    def _negotiate_type(self) -> Reader[int]:
        if self.version == (3, 3):
            sec_type = yield from read_u32()
            if sec_type == SecurityType.INVALID:
                yield from self._refused()
            if sec_type not in (SecurityType.NONE, SecurityType.VNC_AUTH):
                raise RFBProtocolError(f"invalid RFB 3.3 security type {sec_type}")
            if sec_type not in self._allowed:
                raise RFBSecurityError(f"server requires security type {sec_type}, not allowed")
            return sec_type
        count = (yield 1)[0]
        if count == 0:
            yield from self._refused()
        offered = list((yield count))
        for candidate in offered:
            if candidate in SUPPORTED_TYPES and candidate in self._allowed:
                self._send(bytes([candidate]))
                return candidate
        raise RFBSecurityError(f"no supported security type; server offers {offered}")

    def _refused(self) -> Reader[None]:
        reason = yield from read_string(MAX_REASON, "failure reason")
        raise RFBSecurityError(f"server refused connection: {_text(reason)}")

    def _vencrypt(self) -> Reader[int]:
        major, minor = yield 2
        if (major, minor) < (0, 2):
            raise RFBSecurityError(f"VeNCrypt {major}.{minor} not supported")
        self._send(b"\x00\x02")
        if (yield 1)[0] != 0:
            raise RFBSecurityError("server refused VeNCrypt 0.2")
        count = (yield 1)[0]
        raw = (yield 4 * count) if count else b""
        offered: list[int] = list(struct.unpack(f">{count}I", raw))
        chosen = next((t for t in offered if t in self._subtypes), None)
        if chosen is None:
            raise RFBSecurityError(f"no supported VeNCrypt sub-type; server offers {offered}")
        self._send(struct.pack(">I", chosen))
        if chosen in TLS_SUBTYPES:
            if (yield 1)[0] == 0:
                raise RFBTLSError("server failed to initialise TLS")
            yield StartTLS(anonymous=chosen in ANON_TLS_SUBTYPES)
        return chosen

    def _wait_for(self, kinds: tuple[str, ...]) -> Reader[tuple[str, str]]:
        """Ask for missing credentials until the caller provides them."""
        while True:
            username, password = self._credentials()
            missing = tuple(
                k
                for k, v in (("username", username), ("password", password))
                if k in kinds and not v
            )
            if not missing:
                return username or "", password or ""
            self._emit(AuthRequired(missing))
            yield WaitCredentials()

    def _vnc_auth(self) -> Reader[None]:
        _, password = yield from self._wait_for(("password",))
        challenge = yield 16
        self._send(vnc_auth_response(password, challenge))

    def _plain_auth(self) -> Reader[None]:
        username, password = yield from self._wait_for(("username", "password"))
        self._send(plain_auth_payload(username, password))


def _text(raw: bytes) -> str:
    """Names and reasons are UTF-8 on modern servers, Latin-1 on old ones."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
