"""Configuration: guacd.conf (read like guacd), ``GUACR_*`` environment, command line.

Precedence, lowest first: built-in defaults, ``/etc/guacamole/guacd.conf``, ``GUACR_*``
environment variables, command-line flags. guacd's sections are ``[server]``
(``bind_host``, ``bind_port``), ``[daemon]`` (``pid_file``, ``log_level``) and ``[ssl]``
(``server_certificate``, ``server_key``); guacr-only settings live in ``[guacr]``
(``workers``, ``uvloop``, ``handlers``). As in guacd, a missing file is fine but a parse error or an
unknown section or key is fatal.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_CONFIG_PATH = "/etc/guacamole/guacd.conf"

KEYS: dict[str, dict[str, str]] = {
    "server": {"bind_host": "bind_host", "bind_port": "bind_port"},
    "daemon": {"pid_file": "pid_file", "log_level": "log_level"},
    "ssl": {"server_certificate": "cert", "server_key": "key"},
    "guacr": {
        "workers": "workers",
        "uvloop": "uvloop",
        "handlers": "handlers",
        **{
            k: k
            for k in (
                "websocket_bind_host",
                "websocket_bind_port",
                "websocket_path",
                "guacamole_lite_key",
                "token_key",
                "websocket_origins",
                "websocket_max_per_address",
                "websocket_trusted_proxies",
                "websocket_max_message",
                "websocket_handshake_timeout",
            )
        },
    },
}

ENV = {
    "GUACR_BIND_HOST": "bind_host",
    "GUACR_BIND_PORT": "bind_port",
    "GUACR_LOG_LEVEL": "log_level",
    "GUACR_PID_FILE": "pid_file",
    "GUACR_CERT": "cert",
    "GUACR_KEY": "key",
    "GUACR_WORKERS": "workers",
    "GUACR_UVLOOP": "uvloop",
    "GUACR_HANDLERS": "handlers",
    **{
        f"GUACR_{k.upper()}": k
        for k in (
            "websocket_bind_host",
            "websocket_bind_port",
            "websocket_path",
            "guacamole_lite_key",
            "token_key",
            "websocket_origins",
            "websocket_max_per_address",
            "websocket_trusted_proxies",
            "websocket_max_message",
            "websocket_handshake_timeout",
        )
    },
}


class ConfigError(Exception):
    """A configuration problem that stops start-up."""


@dataclass
class Config:
    """Effective settings."""

    bind_host: str = "localhost"
    bind_port: int = 4822
    log_level: str = "info"
    pid_file: str | None = None
    cert: str | None = None
    key: str | None = None
    workers: int = 0  # 0: one per CPU
    uvloop: bool = True
    foreground: bool = False
    # Extra handlers: "name=package.module:Class,name2=..." (besides entry points).
    handlers: str = ""
    # WebSocket door (issue 11; provisional until the listener's typed config lands)
    websocket_bind_host: str = ""
    websocket_bind_port: int = 0
    websocket_path: str = ""
    guacamole_lite_key: str = ""
    token_key: str = ""
    websocket_origins: str = ""
    websocket_max_per_address: int = 0
    websocket_trusted_proxies: str = ""
    websocket_max_message: int = 1 << 20
    websocket_handshake_timeout: float = 15.0

    def extra_handlers(self) -> dict[str, str]:
        """Parse ``handlers`` into {protocol: import string}."""
        out: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in self.handlers.split(","))):
            name, sep, target = item.partition("=")
            if not sep or ":" not in target:
                raise ConfigError(f"Invalid handler entry {item!r} (want name=module:Class)")
            out[name.strip()] = target.strip()
        return out

    def set(self, name: str, value: str) -> None:
        """Set a field from its text form, validating it."""
        if name in (
            "bind_port",
            "workers",
            "websocket_bind_port",
            "websocket_max_per_address",
            "websocket_max_message",
        ):
            try:
                setattr(self, name, int(value))
            except ValueError:
                raise ConfigError(f"Invalid value for {name}: {value!r}") from None
        elif name == "websocket_handshake_timeout":
            try:
                self.websocket_handshake_timeout = float(value)
            except ValueError:
                raise ConfigError(f"Invalid value for {name}: {value!r}") from None
        elif name == "uvloop":
            self.uvloop = value.lower() in ("1", "true", "yes", "on")
        elif name == "log_level":
            if value not in ("trace", "debug", "info", "warning", "error"):
                raise ConfigError(f"Invalid log level: {value!r}")
            self.log_level = value
        else:
            setattr(self, name, value)

    def effective_workers(self) -> int:
        """Worker count: configured, or one per CPU."""
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def worker_config(self) -> dict[str, Any]:
        """What workers need to know (JSON-serialisable)."""
        d = asdict(self)
        d["workers"] = self.effective_workers()
        d["extra_handlers"] = self.extra_handlers()
        return d


_LINE = re.compile(
    r"""^\s*(?:
        \[(?P<section>[A-Za-z0-9_]+)\]
      | (?P<name>[A-Za-z0-9_]{1,255})\s*=\s*(?:"(?P<quoted>(?:[^"\\\n]|\\.)*)"|(?P<bare>[^\s#"]*))
    )?\s*(?:\#.*)?$""",
    re.VERBOSE,
)


def parse_conf(text: str) -> dict[str, str]:
    """Parse guacd.conf text into {field: value}; raises ConfigError like guacd."""
    result: dict[str, str] = {}
    section: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if m is None:
            raise ConfigError(f"Parse error at line {lineno}: {line.strip()[:80]!r}")
        if m.group("section"):
            section = m.group("section")
            if section not in KEYS:
                raise ConfigError(f'Invalid parameter or section name: "{section}"')
            continue
        name = m.group("name")
        if name is None:
            continue
        if section is None:
            raise ConfigError(f"Parse error at line {lineno}: parameter outside a section")
        field_name = KEYS[section].get(name)
        if field_name is None:
            raise ConfigError(f'Invalid parameter or section name: "{name}"')
        quoted = m.group("quoted")
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else m.group("bare")
        if len(value) > 8191:
            raise ConfigError(f"Value too long at line {lineno}")
        result[field_name] = value
    return result


def load(path: str | None, environ: dict[str, str] | None = None) -> Config:
    """Defaults, then the config file, then the environment."""
    config = Config()
    file_path = path or DEFAULT_CONFIG_PATH
    try:
        with open(file_path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if path is not None:
            raise ConfigError(f"Configuration file {path} not found") from None
        text = ""
    except OSError as exc:
        raise ConfigError(f"Cannot read {file_path}: {exc}") from None
    for name, value in parse_conf(text).items():
        config.set(name, value)
    env = os.environ if environ is None else environ
    for var, name in ENV.items():
        if env.get(var):
            config.set(name, env[var])
    return config
