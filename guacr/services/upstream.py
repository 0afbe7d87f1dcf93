"""Upstream connect, one routine for every handler (guacd's ``guac_tcp_connect`` and
``guac_wol_wake_and_wait``).

* :func:`open_tcp` opens one TCP connection (name lookup included) within a time
  budget shared by all the host's addresses, with ``TCP_NODELAY``, and says *why* it
  failed (:class:`ConnectFailed`: DNS, timeout, refused, unreachable).
* :func:`connect` adds Wake-on-LAN in guacd's order and retries. With ``wol-wait-time``
  > 0 it first tries to connect, sends the packet only when the host does not answer,
  then retries :data:`~guacr.services.wol.RETRIES` times ``wol-wait-time`` apart; with
  0 it sends the packet and connects at once. A packet that cannot be sent fails the
  connection.
* A :class:`Policy` per protocol turns the failure into guacd's status and text for
  that protocol (guacd 1.6.1 is not uniform: SSH says 512 for everything).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from guacr.contract.params import Params
from guacr.contract.peers import Log
from guacr.errors import GuacrError
from guacr.protocol.status import Status
from guacr.services.wol import RETRIES, WakeOnLan

_UNREACHABLE: Final = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN})


class Failure(enum.Enum):
    """Why a TCP connection could not be opened."""

    NO_HOST = "no hostname"
    DNS = "name lookup failed"
    TIMEOUT = "timed out"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    OTHER = "failed"


class ConnectFailed(Exception):
    """A TCP connection failed; ``reason`` is a short human text."""

    def __init__(
        self, kind: Failure, host: str, port: int, reason: str, lookup: bool = False
    ) -> None:
        super().__init__(f"{host}:{port}: {reason}")
        self.kind, self.host, self.port, self.reason = kind, host, port, reason
        self.lookup = lookup  # it failed while looking the name up


def _default_message(f: ConnectFailed) -> str:
    where = f"{f.host}:{f.port}"
    if f.kind is Failure.TIMEOUT and f.lookup:
        return f'Timed out looking up "{f.host}".'

    return {
        Failure.NO_HOST: "No hostname given.",
        Failure.DNS: f'DNS lookup of "{f.host}" failed: {f.reason}.',
        Failure.TIMEOUT: f"Timed out connecting to {where} after {f.reason}.",
        Failure.REFUSED: f"Connection to {where} refused.",
        Failure.UNREACHABLE: f"{where} is unreachable: {f.reason}.",
        Failure.OTHER: f"Unable to connect to {where}: {f.reason}.",
    }[f.kind]


@dataclass(frozen=True)
class Policy:
    """How one protocol reports connect failures: status per kind and the text."""

    statuses: dict[Failure, Status] = field(default_factory=dict)
    default: Status = Status.UPSTREAM_NOT_FOUND
    message: Callable[[ConnectFailed], str] = _default_message

    def error(self, failure: ConnectFailed) -> GuacrError:
        """The error ending the connection for ``failure``."""
        return GuacrError(self.message(failure), self.statuses.get(failure.kind, self.default))


# Unknown host, refused and unreachable 519; no answer 514.
DEFAULT_POLICY: Final = Policy({Failure.TIMEOUT: Status.UPSTREAM_TIMEOUT})


async def open_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """One TCP connection within ``timeout`` seconds (lookup and every address)."""
    if not host:
        raise ConnectFailed(Failure.NO_HOST, host, port, "no hostname")
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except TimeoutError:
        raise ConnectFailed(Failure.TIMEOUT, host, port, "timed out", lookup=True) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConnectFailed(Failure.DNS, host, port, reason, lookup=True) from None
    errors: list[OSError] = []
    for family, type_, proto, _, addr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            errors.append(TimeoutError())
            break
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), left)
        except (OSError, TimeoutError) as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    # The most telling failure: a timeout says more than a refused IPv6 attempt.
    if any(isinstance(e, TimeoutError) for e in errors):
        raise ConnectFailed(Failure.TIMEOUT, host, port, f"{timeout:g} s")
    last = errors[-1] if errors else OSError("no address")
    if isinstance(last, ConnectionRefusedError):
        raise ConnectFailed(Failure.REFUSED, host, port, "connection refused")
    if last.errno in _UNREACHABLE:
        raise ConnectFailed(Failure.UNREACHABLE, host, port, last.strerror or str(last))
    raise ConnectFailed(Failure.OTHER, host, port, last.strerror or str(last))


async def connect(
    host: str,
    port: int,
    timeout: float,
    *,
    params: Params | None,
    log: Log,
    policy: Policy = DEFAULT_POLICY,
    attempts: int = 1,
    interval: float = 1.0,
) -> socket.socket:
    """Wake the host if asked (guacd's order), then connect with up to ``attempts``
    tries ``interval`` seconds apart (VNC's ``autoretry``); raises a GuacrError.

    ``params`` hold the ``wol-*`` parameters (None: no Wake-on-LAN).
    """
    wol = WakeOnLan.from_params(params, log) if params is not None else None
    if wol is not None:
        if wol.wait > 0:
            return await _wake_and_wait(wol, host, port, timeout, log, policy)
        wol.send(log)
    failure: ConnectFailed | None = None
    for attempt in range(max(1, attempts)):
        if attempt:
            log.info("Connect failed. Waiting %.0f ms before retrying...", interval * 1e3)
            await asyncio.sleep(interval)
        try:
            return await open_tcp(host, port, timeout)
        except ConnectFailed as exc:
            failure = exc
            if exc.kind in (Failure.NO_HOST, Failure.DNS):
                break  # no point retrying what cannot be looked up
    assert failure is not None
    log.info("Unable to connect to %s:%d: %s", host, port, failure.reason)
    raise policy.error(failure)


async def _wake_and_wait(
    wol: WakeOnLan, host: str, port: int, timeout: float, log: Log, policy: Policy
) -> socket.socket:
    try:
        return await open_tcp(host, port, timeout)  # awake already: no packet
    except ConnectFailed as exc:
        if exc.kind in (Failure.NO_HOST, Failure.DNS):
            raise policy.error(exc) from None
        log.info("%s:%d does not answer (%s): waking it.", host, port, exc.reason)
    wol.send(log)
    failure: ConnectFailed | None = None
    for _ in range(RETRIES):
        await asyncio.sleep(wol.wait)
        try:
            return await open_tcp(host, port, timeout)
        except ConnectFailed as exc:
            failure = exc
    assert failure is not None
    log.info("Unable to connect to %s:%d after Wake-on-LAN: %s", host, port, failure.reason)
    raise policy.error(failure)
