"""guacr's own tokens: authenticated, self-contained, expiring, single-use.

A token is ``g1.`` followed by unpadded base64url of ``nonce(12) || AES-GCM(payload)``.
The payload is compact JSON: ``p`` protocol and ``a`` parameters for a new connection
(and ``c``, when the minter decided it, the ``$id`` that connection gets: gRPC's
``CreateSession`` returns it before anyone connects), or ``j`` the ``$id`` to join and
``ro`` read-only; ``exp`` expiry (Unix seconds) and
``n`` a random token id. AES-GCM authenticates the whole token, so any change to it is
refused; the redemption store makes each token id work once.

The AES key is derived from ``token_key`` with HKDF-SHA256, so the operator's secret can
be any string and a key for another purpose never doubles as this one. gRPC's
``CreateSession``/``ShareSession`` only call :meth:`GuacrTokens.mint`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guacr.tunnel.grant import TokenRefused

PREFIX = "g1."
NONCE_BYTES = 12
ID_BYTES = 16
MIN_KEY_LENGTH = 16
DEFAULT_TTL = 60.0
MAX_TOKEN_LENGTH = 16384
_AAD = b"guacr token v1"


@dataclass(frozen=True)
class Claims:
    """What a verified guacr token says."""

    expires: float
    token_id: str
    protocol: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    join: str | None = None
    read_only: bool = False
    connection: str | None = None
    """The ``$id`` the new connection must get (None: the worker picks one)."""


class RedemptionStore(Protocol):
    """Remembers used token ids until they expire, so a token works once.

    In-process here (:class:`MemoryRedemptionStore`); a store shared between guacr
    instances implements the same method.
    """

    async def redeem(self, token_id: str, expires: float) -> bool:
        """Mark ``token_id`` used; True only the first time."""
        ...


class MemoryRedemptionStore:
    """Used token ids in a dict, dropped once their token has expired anyway."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._used: dict[str, float] = {}
        self._clock = clock
        self._next_sweep = 0.0

    async def redeem(self, token_id: str, expires: float) -> bool:
        """Mark ``token_id`` used; True only the first time."""
        return self.redeem_now(token_id, expires)

    def redeem_now(self, token_id: str, expires: float) -> bool:
        """Synchronous :meth:`redeem` for callers without an event loop."""
        now = self._clock()
        if now >= self._next_sweep:
            self._used = {k: v for k, v in self._used.items() if v > now}
            self._next_sweep = now + 10.0
        if token_id in self._used:
            return False
        self._used[token_id] = expires
        return True

    def __len__(self) -> int:
        return len(self._used)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GuacrTokens:
    """Mints and verifies guacr tokens with one key."""

    def __init__(
        self,
        token_key: str | bytes,
        *,
        default_ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        raw = token_key.encode("utf-8") if isinstance(token_key, str) else token_key
        if len(raw) < MIN_KEY_LENGTH:
            raise ValueError(f"token_key must be at least {MIN_KEY_LENGTH} bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AAD).derive(raw)
        self._aead = AESGCM(key)
        self._ttl = default_ttl
        self._clock = clock

    def mint(
        self,
        *,
        protocol: str | None = None,
        params: Mapping[str, str] | None = None,
        join: str | None = None,
        read_only: bool = False,
        ttl: float | None = None,
        connection: str | None = None,
    ) -> str:
        """A token for a new ``protocol`` connection with ``params`` (whose id will be
        ``connection`` when given), or for joining connection ``join`` (``$id``), valid
        for ``ttl`` seconds and once."""
        if (protocol is None) == (join is None):
            raise ValueError("a token names either a protocol or a connection to join")
        if connection is not None and (join is not None or not _is_new_id(connection)):
            raise ValueError("connection takes a fresh id ($ + UUID) for a new connection")
        if join is not None and not join.startswith("$"):
            raise ValueError("join takes a connection id ($...)")
        if protocol is not None and not protocol:
            raise ValueError("empty protocol name")
        life = self._ttl if ttl is None else ttl
        if life <= 0:
            raise ValueError("ttl must be positive")
        body: dict[str, Any] = {
            "exp": round(self._clock() + life, 3),
            "n": _b64url(os.urandom(ID_BYTES)),
        }
        if protocol is not None:
            body["p"] = protocol
            body["a"] = {str(k): str(v) for k, v in (params or {}).items()}
            if connection is not None:
                body["c"] = connection
        else:
            body["j"] = join
            body["ro"] = bool(read_only)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(body, separators=(",", ":")).encode(), _AAD)
        return PREFIX + _b64url(nonce + sealed)

    def verify(self, token: str) -> Claims:
        """Authenticate and decode ``token``; :class:`TokenRefused` says why not.

        Does not redeem: the caller redeems ``Claims.token_id`` in its store, so the
        token is spent only once it is actually used.
        """
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            raise TokenRefused("not a guacr token")
        try:
            raw = _unb64url(token[len(PREFIX) :])
        except (ValueError, binascii.Error):
            raise TokenRefused("guacr token is not base64url") from None
        if len(raw) <= NONCE_BYTES + 16:
            raise TokenRefused("guacr token too short")
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD)
        except InvalidTag:
            raise TokenRefused(
                "guacr token failed authentication (tampered or wrong key)"
            ) from None
        try:
            body = json.loads(plain)
            claims = _claims(body)
        except (ValueError, TypeError, KeyError):
            raise TokenRefused("guacr token payload is malformed") from None
        if self._clock() >= claims.expires:
            raise TokenRefused("guacr token expired")
        return claims


def _claims(body: Any) -> Claims:
    if not isinstance(body, dict):
        raise ValueError("payload is not an object")
    expires = body["exp"]
    token_id = body["n"]
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise ValueError("exp")
    if not isinstance(token_id, str) or not token_id:
        raise ValueError("n")
    if "p" in body:
        protocol, params = body["p"], body.get("a", {})
        if not isinstance(protocol, str) or not protocol or not isinstance(params, dict):
            raise ValueError("p/a")
        if not all(isinstance(v, str) for v in params.values()):
            raise ValueError("a")
        connection = body.get("c")
        if connection is not None and not (isinstance(connection, str) and _is_new_id(connection)):
            raise ValueError("c")
        return Claims(
            float(expires), token_id, protocol=protocol, params=params, connection=connection
        )
    join = body["j"]
    if not isinstance(join, str) or not join.startswith("$"):
        raise ValueError("j")
    return Claims(float(expires), token_id, join=join, read_only=bool(body.get("ro")))


def new_connection_id() -> str:
    """A connection id as guacd spells them (``$`` + UUID)."""
    return "$" + str(uuid.uuid4())


def _is_new_id(conn_id: str) -> bool:
    """Whether ``conn_id`` is ``$`` + a UUID (what :func:`new_connection_id` makes)."""
    if not conn_id.startswith("$") or len(conn_id) != 37:
        return False
    try:
        uuid.UUID(conn_id[1:])
    except ValueError:
        return False
    return True


async def redeem_once(store: RedemptionStore, claims: Claims) -> None:
    """Spend the token behind ``claims``; a second use is refused."""
    if not await store.redeem(claims.token_id, claims.expires):
        raise TokenRefused("guacr token already used")


__all__ = [
    "Claims",
    "GuacrTokens",
    "MemoryRedemptionStore",
    "RedemptionStore",
    "new_connection_id",
    "redeem_once",
]
