"""``guacr`` command line, with guacd's flags and meanings.

``-b HOST -l PORT -L LEVEL -f -p PIDFILE -C CERT -K KEY -v`` as guacd; guacr adds
``--config FILE`` and one ``--<setting>`` per guacr-only setting (``--workers N``,
``--websocket-bind-port PORT``, ...; see guacr.config).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys

from guacr import __version__
from guacr import log as glog
from guacr.config import Config, ConfigError, guacr_settings, load

USAGE = (
    "USAGE: guacr [-l LISTENPORT] [-b LISTENADDRESS] [-p PIDFILE] [-L LEVEL] "
    "[-C CERTIFICATE_FILE] [-K PEM_FILE] [-f] [-v] [--workers N] [--config FILE] "
    "[--<setting> VALUE ...]"
)

# guacd's flags -> (setting, how errors name the flag)
_GUACD_FLAGS = {
    "bind_host": "-b",
    "bind_port": "-l",
    "log_level": "-L",
    "pid_file": "-p",
    "cert": "-C",
    "key": "-K",
}

# Settings declared for services later versions bring (guacr.config declares them all
# now): set, they are reported rather than silently ignored.
_NOT_BUILT: dict[str, str] = {}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(message, file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    """Flags as guacd spells them."""
    p = _Parser(
        prog="guacr",
        add_help=True,
        usage=USAGE.removeprefix("USAGE: "),
        description="Guacamole proxy daemon: a drop-in replacement for guacd.",
        epilog="Every setting may also come from /etc/guacamole/guacd.conf or GUACR_<NAME>.",
    )
    p.add_argument("-b", dest="bind_host", metavar="HOST", help="address to listen on (localhost)")
    p.add_argument("-l", dest="bind_port", metavar="PORT", help="port to listen on (4822)")
    p.add_argument(
        "-L", dest="log_level", metavar="LEVEL",
        help="log level: trace, debug, info, warning or error (info)",
    )  # fmt: skip
    p.add_argument("-p", dest="pid_file", metavar="FILE", help="write the daemon's PID to FILE")
    p.add_argument("-C", dest="cert", metavar="FILE", help="TLS certificate chain (PEM); with -K")
    p.add_argument("-K", dest="key", metavar="FILE", help="TLS private key (PEM); with -C")
    p.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    p.add_argument("-v", dest="version", action="store_true", help="print the version and exit")
    p.add_argument(
        "--config", dest="config_path", metavar="FILE",
        help="configuration file (/etc/guacamole/guacd.conf)",
    )  # fmt: skip
    for name, help_ in guacr_settings():
        p.add_argument("--" + name.replace("_", "-"), dest=name, help=help_)
    return p


def resolve(argv: list[str]) -> tuple[Config, argparse.Namespace]:
    """Command line over environment over config file over defaults."""
    ns = build_parser().parse_args(argv)
    config = load(ns.config_path)
    flags = dict(_GUACD_FLAGS)
    flags.update((name, "--" + name.replace("_", "-")) for name, _ in guacr_settings())
    for name, flag in flags.items():
        value = getattr(ns, name)
        if value is not None:
            config.set(name, value, flag)
    config.foreground = ns.foreground
    config.check()
    return config, ns


def check_tls_files(cert: str, key: str, cert_name: str = "-C", key_name: str = "-K") -> str:
    """One line saying why ``cert`` and ``key`` cannot serve TLS, or '' if they can.

    Checked before listening, as guacd refuses to start without them ("Unable to load
    keyfile"); otherwise every worker would fail on its own, naming neither file.
    """
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data: dict[str, bytes] = {}
    for name, path in ((cert_name, cert), (key_name, key)):
        try:
            with open(path, "rb") as f:
                data[name] = f.read()
        except OSError as exc:
            return f"Unable to read {name} {path}: {exc.strerror or exc}"
    try:
        x509.load_pem_x509_certificates(data[cert_name])
    except ValueError:
        return f"Unable to load certificate {cert_name} {cert}: not a PEM certificate"
    try:
        serialization.load_pem_private_key(data[key_name], password=None)
    except TypeError:
        return f"Unable to load keyfile {key_name} {key}: encrypted (guacr needs it unencrypted)"
    except Exception as exc:  # ValueError, or what an unsupported key type raises
        return f"Unable to load keyfile {key_name} {key}: not a PEM private key ({exc})"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = "the key does not match the certificate" if "MISMATCH" in str(exc) else str(exc)
        return f"Unable to use certificate {cert_name} {cert} with key {key_name} {key}: {why}"
    return ""


def daemonize() -> None:
    """Detach like guacd: double fork, new session, chdir /, stdio to /dev/null."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``guacr`` command."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["drain"]:  # guacr drain [--wait S]: the control API's Drain
        from guacr.control.drain_cmd import main as drain_main

        sys.exit(drain_main(args[1:]))
    try:
        config, ns = resolve(args)
    except ConfigError as exc:
        print(f"guacr: {exc}", file=sys.stderr)
        sys.exit(1)
    if ns.version:
        print(f"guacr version {__version__} (Guacamole proxy daemon, guacd 1.6.1 compatible)")
        sys.exit(0)
    glog.setup(config.log_level, config.log_format, config.syslog_address, warn=True)
    log = glog.get("guacr")
    if (config.cert is None) != (config.key is None):
        log.warning("Only one of certificate and key given: SSL/TLS may not work")
    pairs = [(config.cert, config.key, "-C", "-K")]
    if config.websocket_tls and config.websocket_bind_port and config.websocket_cert:
        key_name = "websocket_key" if config.websocket_key else "-K"
        pairs.append(
            (config.websocket_cert, config.websocket_key or config.key, "websocket_cert", key_name)
        )
    for cert, key, cert_name, key_name in pairs:
        problem = check_tls_files(cert, key, cert_name, key_name) if cert and key else ""
        if problem:
            log.error("%s", problem)
            sys.exit(1)
    for setting, what in _NOT_BUILT.items():
        if getattr(config, setting):
            log.warning("%s is set, but this version of guacr has no %s; ignored", setting, what)
    from guacr.server.doors import Door, unsupported
    from guacr.server.ws_door import off_reason

    specs = config.listener_specs()
    if off_reason(config):  # no usable token key: the WebSocket door stays shut
        keys = config.guacamole_lite_key or config.token_key
        (log.warning if keys else log.info)("%s", off_reason(config))
        specs = [s for s in specs if s.kind not in ("ws", "wss")]
    missing = unsupported(specs)
    if missing:
        log.error("%s", missing)
        sys.exit(1)
    doors = []
    for spec in specs:
        try:
            doors.append(Door.bind(spec))
        except socket.gaierror as exc:  # its text names neither the host nor the setting
            setting = "-b" if spec.kind in ("tcp", "tls") else f"{spec.kind} bind host"
            log.error("Unable to resolve %s %s: %s", setting, spec.host, exc.strerror or exc)
            sys.exit(1)
        except OSError as exc:
            log.error("%s", exc)
            sys.exit(1)
    for door in doors:
        host, port = door.sock.getsockname()[:2]
        log.info("Listening on host %s, port %d (%s)", host, port, door.spec.kind)
    if not config.foreground:
        daemonize()
    if config.pid_file:
        try:  # atomically: a reader never sees an empty PID file
            tmp = f"{config.pid_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, config.pid_file)
        except OSError as exc:
            log.error("Could not write PID file: %s", exc)
            sys.exit(1)
    from guacr.server.forkserver import ForkServer

    log.info("Guacamole proxy daemon (guacr) version %s started", __version__)
    status = ForkServer(config, doors).run()
    log.info("Exiting")
    if config.pid_file:
        with contextlib.suppress(OSError):
            os.unlink(config.pid_file)
    sys.exit(status)


if __name__ == "__main__":
    main()
