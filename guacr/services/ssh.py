"""SSH connections for every handler that needs one (guacd's ``src/common-ssh``): the
``ssh`` terminal itself, and the SFTP side channel of VNC and RDP.

* Keys: OpenSSH and PEM private keys, optionally with an OpenSSH user certificate
  (guacd's ``public-key``/``sftp-public-key``: certificate authentication).
* Host keys: ``host-key`` in known-hosts form (bare ``type base64`` lines are bound to
  the host); none means no verification, logged as a warning, as guacd.
* Credentials are answered once (password, single-prompt keyboard-interactive).
* TCP goes through :func:`guacr.services.upstream.connect` (Wake-on-LAN, timeouts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.encryption import ChachaEncryption, GCMEncryption
from asyncssh.logging import SSHLogger

from guacr.contract.params import Params
from guacr.contract.peers import Log
from guacr.errors import GuacrError, Unauthorized, UpstreamError
from guacr.protocol.status import Status
from guacr.services import upstream

_KEY_TYPES: Final = ("ssh-", "ecdsa-", "sk-", "rsa-")


def _connect_message(f: upstream.ConnectFailed) -> str:
    if f.kind is upstream.Failure.DNS:
        return f'Error parsing given address or port "{f.host}:{f.port}": {f.reason}'
    return f"Failed to open TCP connection to {f.host} on {f.port}: {f.reason}"


# guacd 1.6.1 ends every failed SSH connect with 512 (SERVER_ERROR).
SSH_CONNECT_POLICY: Final = upstream.Policy(default=Status.SERVER_ERROR, message=_connect_message)

# Ciphers offered, best first. asyncssh's own order starts with chacha20-poly1305, which
# it runs in Python: ~170 us per small packet against ~25 us for AES-GCM (OpenSSL via
# cryptography), and every keystroke is a packet (issue 16: typing under load). "^" puts
# these ahead of asyncssh's defaults, which all stay offered after them (chacha, ctr), so
# a server allowing only those still connects.
ENCRYPTION_ALGS: Final = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"


# The empty SSH_MSG_IGNORE asyncssh puts before every packet it sends once encrypting
# (a defence for CBC modes, whose IVs are predictable).
_IGNORE_ARGS: Final = (b"\0\0\0\0",)


def lighten(conn: asyncssh.SSHClientConnection) -> None:
    """Drop per-packet work asyncssh does that an AEAD cipher or guacr does not need.

    Every keystroke is a packet (issue 16). asyncssh sends an empty SSH_MSG_IGNORE
    before each one: with AES-GCM or chacha20-poly1305 (authenticated, no CBC IV to
    predict) that is a second encryption, a second socket write and a second packet for
    sshd to decrypt per key, for nothing. asyncssh also formats a log line for every
    packet before checking that packet logging (debug level 3) is on. Both are skipped
    on this connection (instance attributes; asyncssh itself is left as it is).
    """
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if (
            pkttype == MSG_IGNORE
            and args == _IGNORE_ARGS
            and isinstance(
                getattr(conn, "_send_encryption", None), GCMEncryption | ChachaEncryption
            )
        ):
            return
        send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet  # type: ignore[method-assign]
    quiet_packet_log(conn)


def quiet_packet_log(obj: object) -> None:
    """No per-packet log formatting on ``obj`` (a connection or channel) unless
    asyncssh's packet logging is on."""
    if SSHLogger._debug_level < 3:
        obj.log_sent_packet = _no_log  # type: ignore[attr-defined]
        obj.log_received_packet = _no_log  # type: ignore[attr-defined]


def _no_log(*args: object, **kwargs: object) -> None:
    pass


class PasswordClient(asyncssh.SSHClient):
    """Answers password and keyboard-interactive requests once, like guacd."""

    def __init__(self, password: str | None) -> None:
        self._password = password
        self._used = False

    def password_auth_requested(self) -> str | None:
        if self._used or self._password is None:
            return None
        self._used = True
        return self._password

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:
            return []
        if len(prompts) == 1:
            password = self.password_auth_requested()
            return None if password is None else [password]
        return None  # guacd answers single-prompt challenges only


def import_key(text: str, passphrase: str | None) -> asyncssh.SSHKey:
    """A private key; raises asyncssh.KeyImportError / ValueError when unusable."""
    return asyncssh.import_private_key(text, passphrase)


def import_certificate(text: str | None) -> asyncssh.SSHCertificate | None:
    """guacd's ``public-key``: an OpenSSH user certificate for the private key."""
    if not text or not text.strip():
        return None
    try:
        return asyncssh.import_certificate(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise Unauthorized(f"Failed to import public key: {exc}") from None


def known_hosts(
    value: str | None, hostname: str, port: int, log: Log
) -> asyncssh.SSHKnownHosts | None:
    """The trusted host keys ``value`` gives, or None (no verification) with a warning."""
    if value is None:
        log.warning(
            "No host key provided, host identity will not be verified (%s:%d).", hostname, port
        )
        return None
    pattern = hostname if port == 22 else f"[{hostname}]:{port}"
    lines = []
    for line in value.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lines.append(f"{pattern} {line}" if line.startswith(_KEY_TYPES) else line)
    try:
        return asyncssh.import_known_hosts("\n".join(lines) + "\n")
    except (ValueError, asyncssh.KeyImportError) as exc:
        raise GuacrError(
            f"Error occurred attempting to check host key: {exc}", Status.SERVER_ERROR
        ) from None


async def connect(
    hostname: str,
    port: int,
    username: str,
    *,
    password: str | None,
    key: asyncssh.SSHKey | None,
    certificate: asyncssh.SSHCertificate | None = None,
    host_key: str | None,
    timeout: float,
    alive_interval: int,
    params: Params | None,
    log: Log,
) -> asyncssh.SSHClientConnection:
    """An authenticated SSH connection, failures mapped to guacd's statuses.

    ``params`` carry the ``wol-*`` parameters when this connection should wake the
    host (the main connection); None for a side channel.
    """
    trusted = known_hosts(host_key, hostname, port, log)
    sock = await upstream.connect(
        hostname, port, timeout, params=params, log=log, policy=SSH_CONNECT_POLICY
    )
    client_keys: list[asyncssh.SSHKey | tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]] | None
    client_keys = None
    if key is not None:
        client_keys = [(key, certificate)] if certificate is not None else [key]
    try:
        conn = await asyncssh.connect(
            hostname,
            port,
            sock=sock,
            client_factory=lambda: PasswordClient(password),
            username=username,
            known_hosts=trusted,
            client_keys=client_keys,
            password_auth=key is None,
            kbdint_auth=key is None,
            agent_path=None,
            pkcs11_provider=None,
            gss_auth=False,
            gss_kex=False,
            host_based_auth=False,
            x509_trusted_certs=None,
            x509_trusted_cert_paths=[],
            config=[],
            encryption_algs=ENCRYPTION_ALGS,
            keepalive_interval=max(2, alive_interval) if alive_interval > 0 else 0,
            connect_timeout=timeout * 3,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise GuacrError(
            f"Host key did not match any provided known host keys. {exc.reason}",
            Status.SERVER_ERROR,
        ) from None
    except asyncssh.PermissionDenied as exc:
        method = "Public key" if key is not None else "Password"
        raise Unauthorized(f"{method} authentication failed: {exc.reason}") from None
    except asyncssh.DisconnectError as exc:
        raise UpstreamError(f"SSH handshake failed: {exc.reason}") from None
    except TimeoutError:
        raise GuacrError(
            f"Timed out connecting to {hostname} on {port}.", Status.SERVER_ERROR
        ) from None
    except OSError as exc:
        raise UpstreamError(f"SSH handshake failed: {exc}") from None
    lighten(conn)
    return conn
