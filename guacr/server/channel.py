"""Control channels between guacr's processes, and every message they carry.

One AF_UNIX ``SOCK_SEQPACKET`` pair joins the listener to each worker, the main
process to the listener, and the main process to each worker. SEQPACKET keeps packet
boundaries, so a file descriptor (SCM_RIGHTS) always arrives with the message that
describes it. Each packet is one message: a typed dataclass below, sent as JSON
``[opcode, {field: value}]``; :func:`recv` rebuilds the dataclass and rejects what
does not fit (unknown opcode, missing or extra fields, wrong types).

Requests (:class:`Request` subclasses) carry an ``rid``; the answer is a
:class:`Reply` with the same ``rid``, matched to the asker's future by
:class:`Requests`. So the listener can ask a worker a question (list a connection's
users, end a connection) and await the answer.

Who sends what:

listener -> worker
  :class:`Handoff` (+ client fd), :class:`Relay` (+ client fd), :class:`Ping`,
  :class:`ListUsers`, :class:`Terminate`
worker -> listener
  :class:`Ready`, :class:`Hello` (re-registration after a listener restart),
  :class:`ConnectionOpened`/:class:`ConnectionClosed`, :class:`UserJoined`/
  :class:`UserLeft`, :class:`Stats`, :class:`Figures`, :class:`Pong`,
  :class:`Forward` (+ fd), :class:`Reply`, :class:`Redeem` (answered by the listener
  with a :class:`Reply`)
listener -> main process
  :class:`Spawn` (+ the worker's channel end), :class:`Draining`, :class:`Totals`
main process -> listener
  :class:`Spawned`, :class:`Exited`
main process -> worker
  :class:`Attach` (+ its new channel end to a new listener)
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import socket
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

MAX_PACKET = 1 << 20


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected SEQPACKET pair (parent end, child end)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return a, b


def pack_bytes(data: bytes) -> str:
    """Bytes -> channel-safe text."""
    return base64.b64encode(data).decode("ascii")


def unpack_bytes(text: str) -> bytes:
    """Channel text -> bytes."""
    return base64.b64decode(text)


# Messages -----------------------------------------------------------------------------
@dataclass
class Message:
    """Base of every control message; ``op`` is its wire name."""

    op: ClassVar[str] = ""


@dataclass
class Request(Message):
    """A message that expects a :class:`Reply` with the same ``rid``."""

    rid: int = 0


@dataclass
class Reply(Message):
    """The answer to a :class:`Request`: ``ok`` and a result, or an error text."""

    op: ClassVar[str] = "reply"
    rid: int = 0
    ok: bool = True
    error: str = ""
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Handoff(Message):
    """A new client for a worker (its socket travels with it).

    ``door`` is the listener spec's kind the client came through (tcp, tls, ...);
    ``target`` its ``select`` (empty when the worker reads it itself, as with TLS);
    ``pending`` (base64) the bytes the listener read past ``select``. ``user`` is the
    user id the listener assigned and counts the worker's load by. ``tunnel`` carries
    a WebSocket tunnel's verified grant and limits (door ``ws``, guacr.server.ws_door).
    ``port`` is the client's port when a trusted relay named the client (PROXY
    protocol); 0 when the socket's own peer is the client.
    """

    op: ClassVar[str] = "handoff"
    user: str = ""
    target: str = ""
    pending: str = ""
    door: str = "tcp"
    remote: str = ""
    tunnel: dict[str, Any] = field(default_factory=dict)
    port: int = 0


@dataclass
class Relay(Message):
    """A join of another instance's connection, for a worker to relay (+ client fd).

    The listener found the owner in the shared registry (guacr.server.forward); the
    worker connects to ``address`` (the owner's 4822 door) and copies bytes both ways,
    so the relay outlives a listener restart as sessions do. ``user`` counts it as
    the worker's load until the worker reports it gone (:class:`UserLeft`).
    """

    op: ClassVar[str] = "relay"
    user: str = ""
    target: str = ""
    pending: str = ""
    remote: str = ""
    address: str = ""
    port: int = 0  # the client's, when a trusted relay or a TLS worker named it


@dataclass
class Ping(Message):
    """Is the worker's event loop alive? (answered with :class:`Pong`)."""

    op: ClassVar[str] = "ping"


@dataclass
class Pong(Message):
    """The worker's loop answered a :class:`Ping`."""

    op: ClassVar[str] = "pong"


@dataclass
class ListUsers(Request):
    """Request: the users of one connection, as the worker sees them."""

    op: ClassVar[str] = "list_users"
    connection: str = ""


@dataclass
class Terminate(Request):
    """Request: end one connection for all its users (``error`` + ``disconnect``)."""

    op: ClassVar[str] = "terminate"
    connection: str = ""
    message: str = "Connection terminated."
    status: int = 0x0209  # SESSION_CLOSED


@dataclass
class Ready(Message):
    """The worker booted and serves."""

    op: ClassVar[str] = "ready"
    pid: int = 0


@dataclass
class ConnectionOpened(Message):
    """A connection now lives in this worker: joins for it must come here.

    Sent before the owner's client can learn the id from ``ready``.
    """

    op: ClassVar[str] = "conn_open"
    id: str = ""
    protocol: str = ""
    owner: str = ""
    remote: str = ""
    started: float = 0.0  # wall clock (time.time())


@dataclass
class ConnectionClosed(Message):
    """A connection ended (``status``/``message``: the error it ended with, if any;
    ``recording``: the path of its finished session recording, if any)."""

    op: ClassVar[str] = "conn_close"
    id: str = ""
    status: int = 0
    message: str = ""
    recording: str = ""


@dataclass
class UserJoined(Message):
    """A handed-off user finished its handshake and belongs to ``connection``."""

    op: ClassVar[str] = "user_join"
    user: str = ""
    connection: str = ""
    owner: bool = False
    name: str = ""
    port: int = 0  # the client's port (0: unknown, e.g. behind a proxy)


@dataclass
class UserLeft(Message):
    """A handed-off user is gone, whatever stage it reached (sent exactly once)."""

    op: ClassVar[str] = "user_left"
    user: str = ""


@dataclass
class Stats(Message):
    """Byte counters of connections that changed: ``[[id, bytes_in, bytes_out], ...]``."""

    op: ClassVar[str] = "stats"
    counters: list[list[Any]] = field(default_factory=list)


@dataclass
class Figures(Message):
    """Worker figures for metrics and the control API (every 2 s).

    ``figures``: :meth:`guacr.control.figures.WorkerFigures.snapshot`; ``sessions``:
    connections whose details changed, ``{id: [hostname, port, frames, lag_ms,
    [read-only user ids]]}``.
    """

    op: ClassVar[str] = "figures"
    pid: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    sessions: dict[str, Any] = field(default_factory=dict)


DRAINING_MESSAGE = "Server is draining."  # new sessions refused (513), as routing says


@dataclass
class Hello(Message):
    """A live worker introducing itself to a new listener (after a listener restart).

    ``connections`` and ``users`` are the fields of :class:`ConnectionOpened` and
    :class:`UserJoined` (users in their handshake have an empty ``connection``).
    """

    op: ClassVar[str] = "hello"
    pid: int = 0
    connections: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Forward(Message):
    """A join read by a worker (TLS) for a connection owned elsewhere (+ fd).

    ``tunnel`` is empty for a 4822 join (the fd then carries the Guacamole protocol
    after ``select``); for a ``wss`` join it is the upgraded tunnel's grant and limits,
    as in :class:`Handoff`, and the fd carries WebSocket frames. ``port`` as in
    :class:`Handoff`.
    """

    op: ClassVar[str] = "forward"
    target: str = ""
    pending: str = ""
    remote: str = ""
    tunnel: dict[str, Any] = field(default_factory=dict)
    port: int = 0


@dataclass
class Redeem(Request):
    """Worker -> listener: spend guacr token ``token_id`` (``wss``, guacr.server.wss).

    The listener keeps the one redemption store of every door, so a token used once
    cannot be replayed through another worker; ``Reply.ok`` is True only the first time.
    """

    op: ClassVar[str] = "redeem"
    token_id: str = ""
    expires: float = 0.0


@dataclass
class AdmitTunnel(Request):
    """Worker -> listener: may one more ``wss`` tunnel come from ``address``?

    The listener counts tunnels per client address for every door (guacr.server.ws_door);
    ``Reply.ok`` says yes, and the tunnel then counts as ``user`` until that user leaves.
    """

    op: ClassVar[str] = "ws_admit"
    user: str = ""
    address: str = ""


@dataclass
class Spawn(Message):
    """Listener -> main process: fork a worker for ``slot`` (+ its channel end)."""

    op: ClassVar[str] = "spawn"
    slot: int = 0


@dataclass
class Spawned(Message):
    """Main process -> listener: the worker of ``slot`` is ``pid``."""

    op: ClassVar[str] = "spawned"
    slot: int = 0
    pid: int = 0


@dataclass
class Exited(Message):
    """Main process -> listener: a worker exited (status as ``subprocess`` gives it)."""

    op: ClassVar[str] = "exited"
    pid: int = 0
    status: int = 0


@dataclass
class Draining(Message):
    """The drain state: listener -> main process (kept for a listener forked later) and
    listener -> workers (which read ``select`` themselves behind TLS)."""

    op: ClassVar[str] = "draining"
    on: bool = False


@dataclass
class Totals(Message):
    """Listener -> main process: the metric totals that live in no worker any more
    (:meth:`guacr.control.figures.FiguresStore.export`), kept for a listener forked
    later so counters never go back when the listener restarts."""

    op: ClassVar[str] = "totals"
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attach(Message):
    """Main process -> worker: your channel to the new listener (+ fd)."""

    op: ClassVar[str] = "attach"


MESSAGES: dict[str, type[Message]] = {
    cls.op: cls
    for cls in (
        Reply,
        Handoff,
        Relay,
        Ping,
        Pong,
        ListUsers,
        Terminate,
        Ready,
        ConnectionOpened,
        ConnectionClosed,
        UserJoined,
        UserLeft,
        Stats,
        Figures,
        Hello,
        Forward,
        Redeem,
        AdmitTunnel,
        Spawn,
        Spawned,
        Exited,
        Draining,
        Totals,
        Attach,
    )
}

_SIMPLE: dict[Any, Any] = {int: int, float: (int, float), str: str, bool: bool, list: list,
                           dict: dict}  # fmt: skip


_Schema = tuple[tuple[str, ...], tuple[tuple[str, Any, str], ...]]
_SCHEMAS: dict[str, _Schema] = {}


def _schema(cls: type[Message]) -> _Schema:
    """A message class's field names and (name, accepted types, hint) checks, computed
    once per class (``get_type_hints`` evaluates annotations: far too slow per packet)."""
    known = _SCHEMAS.get(cls.op)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))
    checks = []
    for name in names:
        hint = hints[name]
        origin = typing.get_origin(hint) or hint
        if isinstance(origin, types.UnionType) or origin not in _SIMPLE:
            raise TypeError(f"{cls.__name__}.{name}: only int, float, str, bool, list, dict")
        checks.append((name, _SIMPLE[origin], str(hint)))
    _SCHEMAS[cls.op] = names, tuple(checks)
    return _SCHEMAS[cls.op]


def _check(cls: type[Message], values: dict[str, Any]) -> None:
    """Reject fields that are missing, unknown or of the wrong simple type."""
    names, checks = _schema(cls)
    if len(values) != len(names) or any(n not in values for n in names):
        raise ValueError(f"{cls.op}: fields {sorted(values)} != {sorted(names)}")
    for name, want, hint in checks:
        value = values[name]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ValueError(f"{cls.op}.{name}: {type(value).__name__} is not {hint}")


def encode_message(msg: Message) -> bytes:
    """A message's wire form."""
    names, _ = _schema(type(msg))
    values = {name: getattr(msg, name) for name in names}
    return json.dumps([msg.op, values], separators=(",", ":")).encode()


def decode_message(data: bytes) -> Message:
    """Wire form -> message; raises ValueError on anything malformed."""
    try:
        op, values = json.loads(data)
    except (ValueError, TypeError):
        raise ValueError("malformed channel packet") from None
    cls = MESSAGES.get(op) if isinstance(op, str) else None
    if cls is None or not isinstance(values, dict):
        raise ValueError(f"unknown channel message {str(op)[:32]!r}")
    _check(cls, values)
    return cls(**values)


def send(sock: socket.socket, msg: Message, fds: list[int] | None = None) -> None:
    """Send one message (blocking is fine: packets are small and the peer drains)."""
    data = encode_message(msg)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[Message | None, list[int]]:
    """Receive one message; (None, []) means the peer closed the channel.

    Raises ValueError (descriptors closed) for a malformed packet.
    """
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 4)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None, []
    try:
        return decode_message(data), fds
    except ValueError:
        for fd in fds:
            socket.close(fd)
        raise


class Requests:
    """The asking side's pending requests: ``rid`` -> future of the :class:`Reply`."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Reply]] = {}

    def prepare(self, request: Request) -> asyncio.Future[Reply]:
        """Give ``request`` a fresh ``rid`` and return the future its reply resolves."""
        request.rid = next(self._ids)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request.rid] = fut
        rid = request.rid

        def forget(_fut: asyncio.Future[Reply]) -> None:
            self._waiting.pop(rid, None)

        fut.add_done_callback(forget)
        return fut

    def resolve(self, reply: Reply) -> None:
        """Deliver a reply (unknown ``rid``: a late answer to a cancelled question)."""
        fut = self._waiting.pop(reply.rid, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def fail_all(self, reason: str) -> None:
        """The peer went away: every pending question gets an error reply."""
        for rid, fut in list(self._waiting.items()):
            if not fut.done():
                fut.set_result(Reply(rid=rid, ok=False, error=reason))
        self._waiting.clear()
