"""From a tunnel's query string to a :class:`~guacr.tunnel.grant.Grant`, or a refusal.

Both token kinds arrive as ``?token=``: guacr's start with ``g1.`` (a character
guacamole-lite's base64 never contains), anything else is tried as guacamole-lite's.
Every refusal is a :class:`~guacr.tunnel.grant.TokenRefused` (status 769) whose reason is
for the log and never contains the token.

For guacr tokens the query may only describe the browser's display (size, dpi, audio,
video, image, timezone, in guacamole-lite's plain spelling or the web app's ``GUAC_*``
one); connection parameters come from the token alone, so a browser cannot redirect or
re-parameterise what it was given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from guacr.protocol.version import SERVER_VERSION, ProtocolVersion
from guacr.tunnel import lite
from guacr.tunnel.grant import Grant, Query, TokenRefused, every, first
from guacr.tunnel.tokens import (
    PREFIX,
    GuacrTokens,
    MemoryRedemptionStore,
    RedemptionStore,
    redeem_once,
)

_DEFAULT_AUDIO = ("audio/L16",)
_DEFAULT_IMAGE = ("image/png", "image/jpeg")


@dataclass
class TokenAuthority:
    """The keys a door verifies tokens with; a kind without its key is refused."""

    lite_key: bytes | None = None
    guacr: GuacrTokens | None = None
    store: RedemptionStore = field(default_factory=MemoryRedemptionStore)
    lite_version: ProtocolVersion = lite.DEFAULT_VERSION
    clock: Callable[[], float] = time.time

    @classmethod
    def from_keys(
        cls,
        guacamole_lite_key: str | None,
        token_key: str | None,
        *,
        store: RedemptionStore | None = None,
        lite_version: ProtocolVersion = lite.DEFAULT_VERSION,
    ) -> TokenAuthority:
        """Build from the configuration's two keys (either may be empty)."""
        return cls(
            lite_key=lite.lite_key(guacamole_lite_key) if guacamole_lite_key else None,
            guacr=GuacrTokens(token_key) if token_key else None,
            store=store if store is not None else MemoryRedemptionStore(),
            lite_version=lite_version,
        )

    @property
    def enabled(self) -> bool:
        """Whether any token can be accepted at all (else the door stays off)."""
        return self.lite_key is not None or self.guacr is not None

    async def authorize(self, query: Query) -> Grant:
        """Verify the query's token (spending a guacr token) and build the grant."""
        token = first(query, "token")
        if not token:
            raise TokenRefused("no token in the query string")
        if token.startswith(PREFIX):
            if self.guacr is None:
                raise TokenRefused("guacr token but no token_key configured")
            claims = self.guacr.verify(token)
            await redeem_once(self.store, claims)
            return _guacr_grant(
                claims.protocol or claims.join or "",
                claims.params,
                claims.join is not None and claims.read_only,
                query,
                claims.connection or "",
            )
        if self.lite_key is None:
            raise TokenRefused("guacamole-lite token but no guacamole_lite_key configured")
        payload = lite.decrypt(token, self.lite_key)
        return lite.grant(payload, query, version=self.lite_version, clock=self.clock)


def _guacr_grant(
    selector: str,
    params: dict[str, str] | object,
    read_only: bool,
    query: Query,
    connection: str = "",
) -> Grant:
    values = dict(params) if isinstance(params, dict) else {}
    if read_only:
        values["read-only"] = "true"
    return Grant(
        selector=selector,
        values=values,
        version=SERVER_VERSION,
        width=first(query, "GUAC_WIDTH", "width") or "1024",
        height=first(query, "GUAC_HEIGHT", "height") or "768",
        dpi=first(query, "GUAC_DPI", "dpi") or "96",
        audio=every(query, "GUAC_AUDIO", "audio") or list(_DEFAULT_AUDIO),
        video=every(query, "GUAC_VIDEO", "video") or [],
        image=every(query, "GUAC_IMAGE", "image") or list(_DEFAULT_IMAGE),
        timezone=[tz] if (tz := first(query, "GUAC_TIMEZONE", "timezone")) else [],
        kind="guacr",
        connection=connection,
    )
