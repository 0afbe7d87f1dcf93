"""Connection parameters: declaration (name, guacd default, secrecy) and typed access.

Values arrive as strings in ``connect``; an empty string means "use the default",
as in guacd's ``guac_user_parse_args_*`` helpers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Parameter names whose values must never reach a log line.
SECRET_NAMES = frozenset(
    {
        "password",
        "passphrase",
        "private-key",
        "gateway-password",
        "client-key",
        "ca-cert",
        "client-cert",
        "token",
    }
)


@dataclass(frozen=True)
class Param:
    """One connection parameter as guacd declares it."""

    name: str
    default: str = ""

    @property
    def secret(self) -> bool:
        """True for passwords, keys and the like."""
        return self.name in SECRET_NAMES


def params(names: Iterable[str], defaults: Mapping[str, str] | None = None) -> tuple[Param, ...]:
    """Build a parameter list from names in guacd's order plus their defaults."""
    d = defaults or {}
    return tuple(Param(n, d.get(n, "")) for n in names)


class Params:
    """Typed, default-aware view of one user's ``connect`` values."""

    def __init__(self, declared: Iterable[Param], values: Mapping[str, str]) -> None:
        self._declared = {p.name: p for p in declared}
        self._values = dict(values)

    def raw(self, name: str) -> str:
        """The value as sent (may be empty)."""
        return self._values.get(name, "")

    def get(self, name: str, default: str | None = None) -> str:
        """The value, or the declared (or given) default when empty."""
        value = self._values.get(name, "")
        if value:
            return value
        if default is not None:
            return default
        p = self._declared.get(name)
        return p.default if p else ""

    def get_opt(self, name: str) -> str | None:
        """The value, or None when empty and without default."""
        return self.get(name) or None

    def get_bool(self, name: str, default: bool = False) -> bool:
        """guacd semantics: exactly ``true`` is true; empty gives the default."""
        value = self._values.get(name, "")
        if not value:
            p = self._declared.get(name)
            return (p.default == "true") if p and p.default else default
        return value == "true"

    def get_int(self, name: str, default: int | None = None) -> int:
        """Integer value; empty or invalid gives the default (guacd logs and falls back)."""
        fallback = default
        if fallback is None:
            p = self._declared.get(name)
            fallback = int(p.default) if p and p.default.lstrip("-").isdigit() else 0
        value = self._values.get(name, "")
        try:
            return int(value) if value else fallback
        except ValueError:
            return fallback

    def loggable(self) -> dict[str, str]:
        """Values safe to log: secrets masked."""
        return {k: ("********" if k in SECRET_NAMES and v else v) for k, v in self._values.items()}
