"""Configuration: guacd.conf (read like guacd), ``GUACR_*`` environment, command line.

Precedence, lowest first: built-in defaults, ``/etc/guacamole/guacd.conf``, ``GUACR_*``
environment variables, command-line flags. guacd's sections are ``[server]``
(``bind_host``, ``bind_port``), ``[daemon]`` (``pid_file``, ``log_level``) and ``[ssl]``
(``server_certificate``, ``server_key``); every guacr-only setting lives in ``[guacr]``
under its own name, is ``GUACR_<NAME>`` in the environment and ``--<name-with-dashes>``
on the command line. As in guacd, a missing file is fine but a parse error or an
unknown section or key is fatal; so is a bad value, with one line naming the key.

:class:`Config` is the one typed object the main process, the listener and the workers
read (forked children share it); it declares every setting, including those of doors
and services not built yet, so their issues need not change this module.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

DEFAULT_CONFIG_PATH = "/etc/guacamole/guacd.conf"

# guacd's own sections and keys -> Config field.
GUACD_KEYS: dict[str, dict[str, str]] = {
    "server": {"bind_host": "bind_host", "bind_port": "bind_port"},
    "daemon": {"pid_file": "pid_file", "log_level": "log_level"},
    "ssl": {"server_certificate": "cert", "server_key": "key"},
}

LOG_LEVELS = ("trace", "debug", "info", "warning", "error")
LOG_FORMATS = ("guacd", "text", "json")  # text: another name for guacd's

DoorKind = Literal["tcp", "tls", "ws", "wss"]


class ConfigError(Exception):
    """A configuration problem that stops start-up (one line, naming the setting)."""


@dataclass(frozen=True)
class ListenerSpec:
    """One front door: where it listens and which transport it speaks.

    ``tcp``/``tls`` speak the Guacamole protocol directly (guacd's port); ``ws``/``wss``
    carry it over WebSocket (``path`` empty: any path).
    """

    kind: DoorKind
    host: str
    port: int
    cert: str | None = None
    key: str | None = None
    path: str = ""

    @property
    def name(self) -> str:
        """How logs name this door."""
        return f"{self.kind}://{self.host}:{self.port}{self.path}"


# Kinds of values, for parsing and validation (field metadata "kind").
_PORT = "port"  # 1-65535
_PORT_OR_OFF = "port_or_off"  # 0 = off, else 1-65535
_INT = "int"  # >= 0
_FLOAT = "float"  # > 0
_BOOL = "bool"
_STR = "str"
_OPT_STR = "opt_str"  # empty = unset (None)
_SECRET = "secret"  # like opt_str; never shown in errors or logs


def _f(kind: str, default: object, help_: str = "", guacr: bool = True) -> Any:
    return field(default=default, metadata={"kind": kind, "help": help_, "guacr": guacr})


@dataclass
class Config:
    """Effective settings (see the module docstring for where each comes from)."""

    # guacd's
    bind_host: str = _f(_STR, "localhost", guacr=False)
    bind_port: int = _f(_PORT, 4822, guacr=False)
    log_level: str = _f("log_level", "info", guacr=False)
    pid_file: str | None = _f(_OPT_STR, None, guacr=False)
    cert: str | None = _f(_OPT_STR, None, guacr=False)
    key: str | None = _f(_OPT_STR, None, guacr=False)
    foreground: bool = field(default=False, metadata={"kind": "cli"})
    # guacr's: processes
    workers: int = _f(_INT, 0, "worker processes (0: one per CPU)")
    uvloop: bool = _f(_BOOL, True, "use uvloop when installed")
    handlers: str = _f(_STR, "", "extra handlers: name=module:Class,...")
    shutdown_grace: float = _f(_FLOAT, 10.0, "seconds sessions get at shutdown")
    # WebSocket door (issue 11)
    websocket_bind_host: str = _f(_STR, "", "WebSocket bind address (empty: bind_host)")
    websocket_bind_port: int = _f(_PORT_OR_OFF, 4823, "WebSocket port (0: off; needs a token key)")
    websocket_path: str = _f(_STR, "", "WebSocket path (empty: any)")
    websocket_tls: bool = _f(_BOOL, False, "TLS on the WebSocket door")
    websocket_cert: str | None = _f(_OPT_STR, None, "its certificate (else -C)")
    websocket_key: str | None = _f(_OPT_STR, None, "its key (else -K)")
    guacamole_lite_key: str | None = _f(_SECRET, None, "guacamole-lite token key")
    guacamole_lite_version: str = _f(_STR, "1.1.0", "protocol version of guacamole-lite sessions")
    token_key: str | None = _f(_SECRET, None, "connection token key")
    websocket_origins: str = _f(_STR, "", "allowed Origin values, comma-separated (empty: any)")
    websocket_max_per_address: int = _f(_INT, 0, "tunnels per client address (0: unlimited)")
    websocket_trusted_proxies: str = _f(_STR, "", "proxies whose X-Forwarded-For is believed")
    websocket_max_message: int = _f(_INT, 1 << 20, "largest browser message, bytes")
    websocket_handshake_timeout: float = _f(_FLOAT, 15.0, "seconds for the upgrade request")
    # gRPC control (issue 12)
    grpc_bind_host: str = _f(_STR, "127.0.0.1", "gRPC bind address")
    grpc_bind_port: int = _f(_PORT_OR_OFF, 50051, "gRPC port (0: off; on only with auth)")
    grpc_token: str | None = _f(_SECRET, None, "gRPC bearer token")
    grpc_cert: str | None = _f(_OPT_STR, None, "gRPC TLS certificate")
    grpc_key: str | None = _f(_OPT_STR, None, "gRPC TLS key")
    grpc_client_ca: str | None = _f(_OPT_STR, None, "CA for gRPC client certificates")
    # Observability
    metrics_bind_host: str = _f(_STR, "127.0.0.1", "health/metrics bind address")
    metrics_bind_port: int = _f(_PORT_OR_OFF, 9464, "health/metrics port (0: off)")
    syslog_address: str = _f(_STR, "/dev/log", "syslog socket or host:port (empty: off)")
    log_format: str = _f("log_format", "guacd", "guacd or json")
    # Several instances
    registry_url: str = _f(_STR, "", "shared session registry (empty: in-process)")
    registry_lease_s: float = _f(_FLOAT, 15.0, "registry lease seconds")
    advertise_address: str = _f(_STR, "", "host:port other instances reach us at")
    cluster_ca: str | None = _f(_OPT_STR, None, "CA verifying other instances' TLS (else -C)")
    cluster_server_name: str = _f(_STR, "", "name checked in their certificates (empty: none)")
    proxy_protocol_trusted: str = _f(_STR, "", "peers whose PROXY v2 header is believed on 4822")

    # Parsing -------------------------------------------------------------------------
    def set(self, name: str, value: str, source: str = "") -> None:
        """Set a field from its text form, validating it; ``source`` names where the
        value came from (flag, variable, file key) in the error."""
        meta = _FIELDS.get(name)
        if meta is None:
            raise ConfigError(f"Unknown setting {name!r}")
        kind = meta.metadata["kind"]
        where = source or name
        shown = "(hidden)" if kind == _SECRET else repr(value[:80])

        def bad(want: str) -> ConfigError:
            return ConfigError(f"Invalid value for {where}: {shown} ({want})")

        parsed: object
        if kind in (_PORT, _PORT_OR_OFF, _INT):
            try:
                number = int(value)
            except ValueError:
                raise bad("want a whole number") from None
            if kind == _PORT and not 1 <= number <= 65535:
                raise bad("want a port, 1-65535")
            if kind == _PORT_OR_OFF and not 0 <= number <= 65535:
                raise bad("want a port, 1-65535, or 0 for off")
            if kind == _INT and number < 0:
                raise bad("want 0 or more")
            parsed = number
        elif kind == _FLOAT:
            try:
                seconds = float(value)
            except ValueError:
                raise bad("want a number") from None
            if not seconds > 0 or seconds == float("inf"):
                raise bad("want a number above 0")
            parsed = seconds
        elif kind == _BOOL:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                parsed = True
            elif low in ("0", "false", "no", "off", ""):
                parsed = False
            else:
                raise bad("want true or false")
        elif kind == "log_level":
            if value not in LOG_LEVELS:
                raise bad("want a log level: " + ", ".join(LOG_LEVELS))
            parsed = value
        elif kind == "log_format":
            if value not in LOG_FORMATS:
                raise bad("want a log format: " + ", ".join(LOG_FORMATS))
            parsed = value
        elif kind in (_OPT_STR, _SECRET):
            parsed = value or None
        else:
            parsed = value
        setattr(self, name, parsed)

    def extra_handlers(self) -> dict[str, str]:
        """Parse ``handlers`` into {protocol: import string}."""
        out: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in self.handlers.split(","))):
            name, sep, target = item.partition("=")
            if not sep or ":" not in target:
                raise ConfigError(f"Invalid handler entry {item!r} (want name=module:Class)")
            out[name.strip()] = target.strip()
        return out

    def check(self) -> None:
        """Cross-setting checks, after every source was applied."""
        self.extra_handlers()
        if self.websocket_tls and not (self.websocket_cert or self.cert):
            raise ConfigError("websocket_tls needs websocket_cert or -C")
        if self.registry_url and not self.registry_url.startswith(("redis://", "rediss://")):
            # Never the value: the URL may carry the registry's password.
            raise ConfigError("registry_url: want a redis:// or rediss:// URL")
        if self.cluster_ca and not os.access(self.cluster_ca, os.R_OK):
            raise ConfigError(f"cluster_ca: cannot read {self.cluster_ca[:200]!r}")
        for entry in filter(None, (x.strip() for x in self.proxy_protocol_trusted.split(","))):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f"proxy_protocol_trusted: {entry[:80]!r} is not an address or network"
                ) from None

    # Derived -------------------------------------------------------------------------
    def effective_workers(self) -> int:
        """Worker count: configured, or one per CPU."""
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def listener_specs(self) -> list[ListenerSpec]:
        """The front doors to open: guacd's port, then the WebSocket door if on."""
        specs = [
            ListenerSpec(
                "tls" if self.cert else "tcp",
                self.bind_host,
                self.bind_port,
                self.cert,
                self.key,
            )
        ]
        if self.websocket_bind_port:
            tls = self.websocket_tls
            specs.append(
                ListenerSpec(
                    "wss" if tls else "ws",
                    self.websocket_bind_host or self.bind_host,
                    self.websocket_bind_port,
                    (self.websocket_cert or self.cert) if tls else None,
                    (self.websocket_key or self.key) if tls else None,
                    self.websocket_path,
                )
            )
        return specs


_FIELDS = {f.name: f for f in fields(Config) if f.metadata.get("kind") not in (None, "cli")}

# The ``[guacr]`` section: every guacr-only setting by its own name.
GUACR_KEYS = {name: name for name, f in _FIELDS.items() if f.metadata.get("guacr")}
KEYS: dict[str, dict[str, str]] = {**GUACD_KEYS, "guacr": GUACR_KEYS}

# Every setting is also GUACR_<NAME> (guacd's ``server_certificate`` is GUACR_CERT).
ENV = {f"GUACR_{name.upper()}": name for name in _FIELDS}


def is_secret(name: str) -> bool:
    """True for settings never to be shown (keys, tokens)."""
    f = _FIELDS.get(name)
    return f is not None and f.metadata["kind"] == _SECRET


def guacr_settings() -> list[tuple[str, str]]:
    """(name, help) of every guacr-only setting, for the command line."""
    return [(n, str(f.metadata.get("help", ""))) for n, f in _FIELDS.items() if n in GUACR_KEYS]


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
        config.set(name, value, f"{name} in {file_path}")
    env = os.environ if environ is None else environ
    for var, name in ENV.items():
        if env.get(var):
            config.set(name, env[var], var)
    return config
