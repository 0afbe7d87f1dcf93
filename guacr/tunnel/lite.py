"""guacamole-lite tokens, read exactly as guacamole-lite 1.2.0 reads them.

A token is base64 of the JSON ``{"iv": b64, "value": b64}``; ``value`` is the
AES-256-CBC (PKCS#7) encryption of a JSON object ``{"connection": {"type": ...,
"settings": {...}} | {"join": "$id", ...}, "query"?: {...}}``. There is no MAC, expiry
or nonce, so "valid" means what it means to guacamole-lite: it decrypts, the padding
and JSON are sound and the type is one it knows. An optional top-level ``expires``
(Unix time in seconds, or in milliseconds as ``Date.now()`` gives it) is honoured.

Settings are merged as guacamole-lite's ``mergeConnectionOptions`` merges them: its
per-type defaults, then the token's settings, then the allow-listed query keys (with
the token's own ``query`` merged into the URL's query first), later sources winning
through a deep-extend. Values then turn into strings the way its ``GuacdClient`` does.

One deliberate difference: guacamole-lite's ``Crypt`` decodes the plaintext as Node's
``ascii``, which clears bit 7 of every byte and so garbles non-ASCII settings; guacr
decodes UTF-8, so a hostname or password with non-ASCII characters arrives intact.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from guacr.protocol.version import ProtocolVersion
from guacr.tunnel.grant import Grant, Query, TokenRefused

KEY_BYTES = 32
MAX_TOKEN_LENGTH = 16384
DEFAULT_VERSION = ProtocolVersion.V1_1_0

_DISPLAY: dict[str, Any] = {
    "width": 1024,
    "height": 768,
    "dpi": 96,
    "audio": ["audio/L16"],
    "video": None,
    "image": ["image/png", "image/jpeg"],
    "timezone": None,
}

# guacamole-lite's clientOptions.connectionDefaultSettings (Server.js), value for value:
# rdp and vnc ports are strings there, ssh and telnet numbers.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "rdp": {"port": "3389", **_DISPLAY},
    "vnc": {"port": "5900", **_DISPLAY},
    "ssh": {"port": 22, **_DISPLAY},
    "telnet": {"port": 23, **_DISPLAY},
    "join": dict(_DISPLAY),
}

_DISPLAY_KEYS = (
    "width",
    "height",
    "dpi",
    "audio",
    "video",
    "image",
    "timezone",
    "GUAC_AUDIO",
    "GUAC_VIDEO",
)
_TERMINAL_KEYS = ("color-scheme", "font-name", "font-size")

# guacamole-lite's clientOptions.allowedUnencryptedConnectionSettings.
ALLOWED_QUERY_KEYS: dict[str, tuple[str, ...]] = {
    "join": _DISPLAY_KEYS,
    "rdp": _DISPLAY_KEYS,
    "vnc": _DISPLAY_KEYS,
    "ssh": _TERMINAL_KEYS + _DISPLAY_KEYS,
    "telnet": _TERMINAL_KEYS + _DISPLAY_KEYS,
}

_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/]")


def node_b64decode(text: str) -> bytes:
    """Decode base64 as Node's ``Buffer.from(s, "base64")``: both alphabets, padding
    optional, anything else skipped (so a token never fails on a stray character
    where guacamole-lite would accept it)."""
    raw = text.encode("ascii", "ignore").replace(b"-", b"+").replace(b"_", b"/")
    raw = raw.split(b"=", 1)[0]
    raw = _NOT_B64.sub(b"", raw)
    raw = raw[: len(raw) - (len(raw) % 4 == 1)]  # a lone trailing sextet carries no byte
    return base64.b64decode(raw + b"=" * (-len(raw) % 4))


def lite_key(key: str | bytes) -> bytes:
    """Validate a ``guacamole_lite_key``: 32 bytes, as AES-256-CBC needs."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) != KEY_BYTES:
        raise ValueError(f"guacamole_lite_key must be {KEY_BYTES} bytes (AES-256-CBC)")
    return raw


def encrypt(payload: Mapping[str, Any], key: bytes, iv: bytes) -> str:
    """Make a token as guacamole-lite's ``Crypt.encrypt`` does (for tests and tooling)."""
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(payload).encode("utf-8")) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    value = enc.update(plain) + enc.finalize()
    outer = {"iv": base64.b64encode(iv).decode(), "value": base64.b64encode(value).decode()}
    return base64.b64encode(json.dumps(outer).encode()).decode()


def decrypt(token: str, key: bytes) -> dict[str, Any]:
    """Decrypt a token to its JSON object; :class:`TokenRefused` says why not."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRefused("guacamole-lite token too long")
    try:
        outer = json.loads(node_b64decode(token))
        iv = node_b64decode(outer["iv"])
        value = node_b64decode(outer["value"])
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise TokenRefused("guacamole-lite token is not base64 JSON {iv, value}") from None
    if len(iv) != 16 or not value or len(value) % 16:
        raise TokenRefused("guacamole-lite token has a bad IV or ciphertext length")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(dec.update(value) + dec.finalize()) + unpadder.finalize()
    except ValueError:
        raise TokenRefused("guacamole-lite token does not decrypt (wrong key?)") from None
    try:
        payload = json.loads(plain.decode("utf-8", "replace"))
    except ValueError:
        raise TokenRefused("guacamole-lite token does not hold JSON") from None
    if not isinstance(payload, dict):
        raise TokenRefused("guacamole-lite token does not hold a JSON object")
    return payload


def deep_extend(target: dict[str, Any], *sources: object) -> dict[str, Any]:
    """The ``deep-extend`` package's merge: objects merge key by key, arrays and
    scalars replace, non-object sources are skipped."""
    for source in sources:
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            if key == "__proto__" or value is target:
                continue
            if isinstance(value, list):
                target[key] = copy.deepcopy(value)
            elif not isinstance(value, dict):
                target[key] = value
            elif isinstance(target.get(key), dict):
                target[key] = deep_extend(target[key], value)
            else:
                target[key] = deep_extend({}, value)
    return target


def js_string(value: object) -> str:
    """JavaScript's ``String(value)`` for JSON values (null inside arrays is "")."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _element(value: object) -> str:
    """One instruction element as GuacdClient.sendInstruction makes it."""
    return "" if value is None else js_string(value)


def _arg_value(value: object) -> str:
    """A connect value: ``settings[name] || null``, so every falsy value is ""."""
    if (
        value is None
        or value is False
        or value == ""
        or (isinstance(value, int | float) and value == 0)
    ):
        return ""
    return js_string(value)


def _elements(value: object) -> list[str]:
    """``["audio"].concat(value || [])`` without the opcode."""
    if (
        value is None
        or value is False
        or value == ""
        or (isinstance(value, int | float) and value == 0)
    ):
        return []
    if isinstance(value, list):
        return [_element(v) for v in value]
    return [_element(value)]


def _expiry(payload: Mapping[str, Any]) -> float | None:
    expires = payload.get("expires")
    if expires is None:
        return None
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise TokenRefused("guacamole-lite token has a non-numeric expires")
    return expires / 1000.0 if expires > 1e11 else float(expires)


def grant(
    payload: Mapping[str, Any],
    query: Query,
    *,
    version: ProtocolVersion = DEFAULT_VERSION,
    clock: Callable[[], float] = time.time,
) -> Grant:
    """Turn a decrypted payload plus the URL's query into a :class:`Grant`."""
    expires = _expiry(payload)
    if expires is not None and clock() >= expires:
        raise TokenRefused("guacamole-lite token expired")
    connection = payload.get("connection")
    if not isinstance(connection, dict):
        raise TokenRefused("guacamole-lite token has no connection object")
    join = connection.get("join")
    if join:
        if not isinstance(join, str):
            raise TokenRefused("guacamole-lite token's connection.join is not a string")
        settings_type, selector = "join", join
    else:
        kind = connection.get("type")
        if not isinstance(kind, str) or kind not in DEFAULT_SETTINGS or kind == "join":
            raise TokenRefused("guacamole-lite token has an unknown connection type")
        settings_type, selector = kind, kind

    merged_query: dict[str, Any] = {k: v for k, v in query.items() if k != "token"}
    token_query = payload.get("query")
    if isinstance(token_query, dict):
        merged_query.update(token_query)
    allowed = ALLOWED_QUERY_KEYS[settings_type]
    unencrypted: dict[str, Any] = {}
    for key, value in merged_query.items():
        if key in allowed:
            real = key[5:].lower() if key.startswith("GUAC_") else key
            unencrypted[real] = value

    settings = deep_extend(
        {}, DEFAULT_SETTINGS[settings_type], connection.get("settings"), unencrypted
    )
    values = {k: _arg_value(v) for k, v in settings.items()}
    return Grant(
        selector=selector,
        values=values,
        version=version,
        width=_element(settings.get("width")),
        height=_element(settings.get("height")),
        dpi=_element(settings.get("dpi")),
        audio=_elements(settings.get("audio")),
        video=_elements(settings.get("video")),
        image=_elements(settings.get("image")),
        timezone=_elements(settings.get("timezone")),
        kind="guacamole-lite",
    )
