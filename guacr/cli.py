"""``guacr`` command line, with guacd's flags and meanings.

``-b HOST -l PORT -L LEVEL -f -p PIDFILE -C CERT -K KEY -v`` as guacd; guacr adds
``--config FILE`` and one ``--<setting>`` per guacr-only setting (``--workers N``,
``--websocket-bind-port PORT``, ...; see guacr.config).
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
_NOT_BUILT = {
    "registry_url": "shared registry (the in-process one is used)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(message, file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    """Flags as guacd spells them."""
    p = _Parser(prog="guacr", add_help=True, usage=USAGE)
    p.add_argument("-b", dest="bind_host")
    p.add_argument("-l", dest="bind_port")
    p.add_argument("-L", dest="log_level")
    p.add_argument("-p", dest="pid_file")
    p.add_argument("-C", dest="cert")
    p.add_argument("-K", dest="key")
    p.add_argument("-f", dest="foreground", action="store_true")
    p.add_argument("-v", dest="version", action="store_true")
    p.add_argument("--config", dest="config_path")
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
    for setting, what in _NOT_BUILT.items():
        if getattr(config, setting):
            log.warning("%s is set, but this version of guacr has no %s; ignored", setting, what)
    from guacr.server.doors import Door, unsupported
    from guacr.server.ws_door import off_reason

    specs = config.listener_specs()
    if off_reason(config):  # no usable token key: the WebSocket door stays shut
        log.warning("%s", off_reason(config))
        specs = [s for s in specs if s.kind not in ("ws", "wss")]
    missing = unsupported(specs)
    if missing:
        log.error("%s", missing)
        sys.exit(1)
    try:
        doors = [Door.bind(spec) for spec in specs]
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
