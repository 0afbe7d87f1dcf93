"""RFB security helpers: VNC Authentication (DES), Plain, and a sans-I/O TLS layer.

The TLS layer wraps ``ssl.SSLObject`` over two ``MemoryBIO`` s so VeNCrypt stays
bytes-in/bytes-out like the rest of the core.
"""

from __future__ import annotations

import ssl
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from guacr.handlers.vnc.events import RFBTLSError


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


_REVERSED = bytes(_reverse_bits(b) for b in range(256))


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """DES-encrypt the 16-byte challenge with the password, VNC style.

    The key is the password's first 8 bytes (Latin-1, NUL-padded) with each byte's bits
    reversed. Triple-DES with the key repeated three times is single DES; it avoids the
    deprecated 8-byte-key path of ``cryptography``.
    """
    if len(challenge) != 16:
        raise ValueError("VNC challenge must be 16 bytes")
    key = password.encode("latin-1", "replace")[:8].ljust(8, b"\0").translate(_REVERSED)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def plain_auth_payload(username: str, password: str) -> bytes:
    """VeNCrypt Plain: u32 username length, u32 password length, then both (UTF-8)."""
    user = username.encode()
    pw = password.encode()
    return struct.pack(">II", len(user), len(pw)) + user + pw


def make_tls_context(anonymous: bool) -> ssl.SSLContext:
    """Client context for VeNCrypt: no certificate checks, like guacd's libvncclient.

    Anonymous sub-types (TLSNone/TLSVnc/TLSPlain) need the aNULL (ADH/AECDH) suites, which
    exist only up to TLS 1.2 and only at OpenSSL security level 0.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if anonymous:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
    else:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class TLSLayer:
    """Sans-I/O TLS: feed wire bytes in, get plaintext out, and vice versa."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side=False)
        self.handshake_done = False
        self.closed = False
        self._pending_plain = bytearray()
        self._step()

    def _step(self) -> None:
        if self.handshake_done:
            return
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            raise RFBTLSError(f"TLS handshake failed: {exc}") from exc
        self.handshake_done = True
        if self._pending_plain:
            data = bytes(self._pending_plain)
            self._pending_plain.clear()
            self.write(data)

    def receive_wire(self, data: bytes) -> bytes:
        """Feed bytes from the socket; returns any decrypted application data."""
        if data:
            self._incoming.write(data)
        self._step()
        if not self.handshake_done:
            return b""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            except ssl.SSLError as exc:
                raise RFBTLSError(f"TLS record error: {exc}") from exc
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        """Encrypt application data (buffered until the handshake completes)."""
        if not self.handshake_done:
            self._pending_plain += data
            return
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise RFBTLSError(f"TLS write failed: {exc}") from exc

    def wire_data(self) -> bytes:
        """Bytes to send to the socket."""
        return self._outgoing.read()

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        return self._obj.cipher()
