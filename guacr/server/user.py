"""One user: a client of a connection inside a worker, from ``args`` to ``disconnect``.

``User`` is the sans-I/O user session, shaped like ``websockets``' protocol objects:
bytes in (:meth:`User.receive_data`), whole instructions out (through its
:class:`Link`, or :meth:`User.data_to_send` while it has none). It runs the
handshake (:class:`~guacr.protocol.Handshake`), dispatches running instructions into
the connection's handler, keeps inbound and outbound streams, answers ``sync`` with
lag accounting, and knows its timers (:meth:`User.tick`, called by the worker's 1 s
sweep with the time). It never touches a socket: a transport adapter
(guacr.server.transport for TCP and TLS; WebSocket next) feeds it and carries its
output, and is the :class:`Link` it writes to, closes and aborts.
"""

from __future__ import annotations

import asyncio
import binascii
import enum
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from guacr.contract.clock import monotonic_ms
from guacr.contract.handler import StreamSink
from guacr.contract.params import Params
from guacr.errors import GuacrError, ProtocolError
from guacr.protocol import builders as b
from guacr.protocol.handshake import ClientInfo, Handshake
from guacr.protocol.parser import Instruction, Parser
from guacr.protocol.status import Status
from guacr.protocol.version import SERVER_VERSION
from guacr.server.pool import IndexPool

if TYPE_CHECKING:
    from guacr.contract.handler import Handler
    from guacr.server.connection import Connection
    from guacr.server.worker import Worker

log = logging.getLogger("guacr.user")

HANDSHAKE_TIMEOUT = 15.0  # per handshake read, as guacd
CLIENT_TIMEOUT = 15.0  # client silence after connect -> 776
KEEPALIVE_INTERVAL = 5.0  # nop once nothing was written for this long
MAX_INBOUND_STREAMS = 512  # guacd's per-user stream limit
MAX_OBJECTS = 64
ARGV_MAX = 16384  # largest live parameter value
DEFAULT_CLIPBOARD_LIMIT = 262144


class Link(Protocol):
    """What a user session needs of the transport adapter carrying it."""

    def write(self, data: bytes) -> None:
        """Send whole instructions to the client."""

    def close(self) -> None:
        """Flush what was written, then close without losing it (lingering)."""

    def abort(self) -> None:
        """Close now, dropping unsent output."""


class State(enum.Enum):
    """Where a user is in its life."""

    HANDSHAKE = 1
    RUNNING = 2
    CLOSED = 3


class _Inbound:
    """Bookkeeping for one client-opened stream."""

    __slots__ = ("buffer", "kind", "limit", "mimetype", "name", "refusal", "sink")

    def __init__(self, kind: str, mimetype: str, name: str = "") -> None:
        self.kind = kind
        self.mimetype = mimetype
        self.name = name
        self.sink: StreamSink | None = None
        self.buffer = bytearray()
        self.limit = 0
        self.refusal: tuple[str, Status] | None = None


def peer_port(peer: object, remote: str) -> int:
    """The port of a socket's peer (``getpeername()``, ``peername``) when that peer is
    the client ``remote`` itself, not a relay or proxy that spoke for it; else 0."""
    if isinstance(peer, tuple) and len(peer) >= 2 and str(peer[0]) == remote:
        return int(peer[1])
    return 0


class User:
    """A client (owner or joiner) of one :class:`Connection`: the sans-I/O session."""

    def __init__(
        self,
        worker: Worker,
        target: str,
        pending: bytes = b"",
        user_id: str = "",
        remote: str = "",
        door: str = "tcp",
        connection_id: str = "",
        remote_port: int = 0,
    ) -> None:
        self.worker = worker
        self.target = target
        self.id = user_id or "@" + str(uuid.uuid4())
        # The id its new connection must get (decided when its token was minted, so
        # gRPC's CreateSession could return it); '' lets the connection pick one.
        self.connection_id = connection_id
        self.remote = remote  # the client's address, as the listener saw it
        self.door = door  # the kind of front door it came through
        self._remote_port = remote_port  # when the socket here is not the client's own
        self.bytes_in = 0
        self.bytes_out = 0
        self.instructions_in = 0
        self.instructions_out = 0  # counted by terminators (';')
        self.state = State.HANDSHAKE
        self.parser = Parser()
        self.handshake: Handshake | None = None
        self.info = ClientInfo()
        self.params: Params = Params((), {})
        self.conn: Connection | None = None
        self.owner = False
        self.read_only = False
        self._link: Link | None = None
        self._out: list[bytes] = []  # output while no link is attached
        self._pending = pending
        now = time.monotonic()
        self.last_received = now
        self.last_sent = now
        self.congested = False
        # lag tracking (guacd: per-user processing lag from sync round trips)
        self.last_sync_received = 0
        self.min_frame_duration: int | None = None
        self.processing_lag = 0
        self._inbound: dict[int, _Inbound] = {}
        self._streams = IndexPool(0, 2)  # user-level streams are even, as in guacd
        self.objects = IndexPool(0, 1, MAX_OBJECTS)
        self._ack_waiters: dict[int, asyncio.Future[tuple[str, int]]] = {}
        self.log = logging.LoggerAdapter(log, {"user": self.id})  # ids for JSON logs
        worker.user_arrived(self)

    # Sans-I/O interface ------------------------------------------------------------
    def attach(self, link: Link) -> None:
        """Write through ``link`` from now on (output buffered so far goes first)."""
        self._link = link
        out, self._out = self._out, []
        for data in out:
            link.write(data)

    def start(self) -> None:
        """The client is connected: send ``args`` (or refuse), then take what the
        listener read past ``select``."""
        self._begin()
        if self._pending and self.state is not State.CLOSED:
            data, self._pending = self._pending, b""
            self.receive_data(data)

    @property
    def closed(self) -> bool:
        """True once the user was closed (its socket may still linger)."""
        return self.state is State.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client: parse and act on every complete instruction."""
        if self.state is State.CLOSED:
            return  # lingering after close: discard
        self.last_received = time.monotonic()
        self.bytes_in += len(data)
        try:
            instructions = self.parser.receive_data(data)
            self.instructions_in += len(instructions)
            for ins in instructions:
                if self.closed:  # an earlier instruction ended this user
                    return
                self._dispatch(ins)
        except GuacrError as exc:
            self.log.info("Closing user %s: %s", self.id, exc.message)
            self.fail(exc)
        except Exception:
            self.log.exception("Internal error handling input from user %s", self.id)
            self.fail(GuacrError("Internal server error", Status.SERVER_ERROR))

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The asyncio transport under the link, if any: for code that wants socket
        details (the database audit's client address). Not part of the contract."""
        transport: asyncio.BaseTransport | None = getattr(self._link, "transport", None)
        return transport

    @property
    def peer(self) -> str:
        """The client's ``host:port`` from the transport, else ``remote`` (host only)."""
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = str(peer[0])
            return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        return self.remote

    @property
    def port(self) -> int:
        """The client's port: the socket's peer port when that peer is the client the
        listener saw (not a proxy that forwarded for it), else what the door was told;
        0 when unknown."""
        if self._remote_port:
            return self._remote_port
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return peer_port(peer, self.remote)

    def data_to_send(self) -> list[bytes]:
        """Output written while no link was attached (whole instructions)."""
        out, self._out = self._out, []
        return out

    def connection_lost(self) -> None:
        """The transport is gone."""
        self._link = None
        self._leave()

    # Output ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Send whole instructions to this user (dropped once closed)."""
        if self.state is State.CLOSED:
            return
        self.bytes_out += len(data)
        self.instructions_out += data.count(b";")
        self.last_sent = time.monotonic()
        link = self._link
        if link is not None:
            link.write(data)
        else:
            self._out.append(data)

    def drop(self, reason: str) -> None:
        """End this user at once, dropping its unsent output (its client stopped
        reading, say: it must not exhaust the worker's memory for everyone else)."""
        if self.state is State.CLOSED:
            return
        self.log.warning("User %s %s; disconnecting it", self.id, reason)
        self.worker.figures.count("slow_reader_drops", self.worker.protocol_of(self))
        self.state = State.CLOSED
        if self._link is not None:
            self._link.abort()
        self._leave()

    def ack(self, stream: int, message: str, status: Status | int) -> None:
        """Send ``ack`` for an inbound stream."""
        self.send(b.ack(stream, message, status))

    def alloc_stream(self) -> int:
        """A user-level outbound stream index (even)."""
        return self._streams.alloc()

    def free_stream(self, index: int) -> None:
        """Release an outbound stream index."""
        self._streams.free(index)
        fut = self._ack_waiters.pop(index, None)
        if fut is not None and not fut.done():
            fut.cancel()

    def expect_ack(self, stream: int) -> asyncio.Future[tuple[str, int]]:
        """A future resolved with (message, status) by the client's next ``ack``."""
        fut: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        self._ack_waiters[stream] = fut
        return fut

    def fail(self, error: GuacrError) -> None:
        """Send ``error`` + ``disconnect`` and close promptly."""
        if self.state is State.CLOSED:
            return
        if self.state is State.HANDSHAKE:
            self.worker.figures.count("handshake_failures", str(int(error.status)))
        self.send(b.error(error.message, error.status) + b.disconnect())
        self.close()

    def close(self) -> None:
        """Leave the connection; the link flushes what was sent and closes gracefully
        (what still arrives is discarded)."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        if self._link is not None:
            self._link.close()
        self._leave()

    def tick(self, now: float) -> None:
        """Once-a-second timers: handshake/client timeouts and keep-alive ``nop``."""
        if self.state is State.HANDSHAKE:
            if now - self.last_received >= HANDSHAKE_TIMEOUT:
                self.log.info("User %s: handshake timed out", self.id)
                self.fail(GuacrError("Handshake timed out.", Status.CLIENT_TIMEOUT))
        elif self.state is State.RUNNING:
            if now - self.last_received >= CLIENT_TIMEOUT:
                self.log.info("User %s is not responding.", self.id)
                self.fail(GuacrError("User is not responding.", Status.CLIENT_TIMEOUT))
            elif now - self.last_sent >= KEEPALIVE_INTERVAL:
                self.send(b.nop())

    # Handshake ------------------------------------------------------------------------
    def _begin(self) -> None:
        """Send ``args`` for a new protocol or a join, or refuse the target."""
        handler_cls: type[Handler] | None
        if self.target.startswith("$"):
            conn = self.worker.connections.get(self.target)
            if conn is None:
                self.log.info('Connection "%s" does not exist.', self.target)
                self.fail(GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND))
                return
            self.conn = conn
            handler_cls = type(conn.handler)
        else:
            try:
                handler_cls = self.worker.handler_class(self.target)
            except Exception:
                self.log.exception('Handler for protocol "%s" failed to load', self.target)
                handler_cls = None
            if handler_cls is None:
                self.fail(
                    GuacrError(
                        f'Protocol "{self.target[:64]}" is not supported.', Status.UNSUPPORTED
                    )
                )
                return
        self._handler_cls = handler_cls
        names = handler_cls.arg_names()
        self.handshake = Handshake(names)
        self.send(b.args(SERVER_VERSION.wire, names))

    def _finish_handshake(self) -> None:
        assert self.handshake is not None
        self.info = self.handshake.info
        self.params = Params(self._handler_cls.PARAMS, self.info.values)
        self.read_only = self._handler_cls.input_read_only(self.params, owner=self.conn is None)
        self.handshake = None
        self.log.extra = {"user": self.id, "protocol": self._handler_cls.protocol}
        if self.conn is None:
            from guacr.server.connection import Connection

            if self.connection_id and self.connection_id in self.worker.connections:
                # Only a second token minted with the same id could get here (each token
                # works once): an id never names two connections.
                self.log.warning("Connection id %s is already in use", self.connection_id)
                self.fail(GuacrError("Connection id already in use.", Status.RESOURCE_CONFLICT))
                return
            self.owner = True
            conn = Connection(self.worker, self._handler_cls, self.connection_id)
            self.conn = conn
            self.state = State.RUNNING
            # Report the id to the listener before the client can learn it from
            # ``ready``, so an immediate join is routed here (see Supervisor._route_join).
            self.worker.connection_opened(conn, self)
            self.worker.user_joined(self)
            self.send(b.ready(conn.id))
            conn.start(self)
        else:
            if self.conn.closed:
                self.fail(GuacrError("No such connection.", Status.RESOURCE_NOT_FOUND))
                return
            self.state = State.RUNNING
            self.worker.user_joined(self)
            self.send(b.ready(self.conn.id))
            self.conn.join(self)

    def _leave(self) -> None:
        self.state = State.CLOSED
        self.worker.user_gone(self.id)
        for fut in self._ack_waiters.values():
            if not fut.done():
                fut.cancel()
        self._ack_waiters.clear()
        for stream in list(self._inbound.values()):
            if stream.sink is not None:
                try:
                    stream.sink.end()
                except Exception:
                    self.log.exception("Stream sink failed while closing")
        self._inbound.clear()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.leave(self)

    # Dispatch ---------------------------------------------------------------------------
    def _dispatch(self, ins: Instruction) -> None:
        if self.state is State.HANDSHAKE:
            if self.handshake is None:
                raise ProtocolError("Unexpected input before the handshake began")
            if self.handshake.receive(ins):
                self._finish_handshake()
            return
        handler = self._OPS.get(ins[0])
        if handler is None:
            self.log.debug('Handler not found for "%s"', ins[0][:32])
            return
        if self.read_only and ins[0] in _INPUT_OPCODES and not self._owner_argv(ins):
            self._read_only_input(ins)
            return
        handler(self, ins)

    def _owner_argv(self, ins: Instruction) -> bool:
        """A read-only owner's ``argv`` still reaches handlers that want it (VNC)."""
        return ins[0] == "argv" and self.owner and self._handler_cls.READ_ONLY_OWNER_ARGV

    def _read_only_input(self, ins: Instruction) -> None:
        """Read-only users' input is ignored; their stream opens get guacd's refusals."""
        refusal = _REFUSALS.get(ins[0])
        if refusal is not None and len(ins) > 1:
            self._open_refused(ins[1], ins[0], *refusal)

    @property
    def _handler(self) -> Handler:
        assert self.conn is not None
        return self.conn.handler

    def _op_sync(self, ins: Instruction) -> None:
        if len(ins) < 2 or self.conn is None:
            return
        ts = _int(ins[1])
        if ts > self.conn.last_sync_sent:
            raise ProtocolError("Client sent a sync timestamp from the future.")
        if ts < self.last_sync_received:
            return
        now = monotonic_ms()
        duration = now - ts
        if self.min_frame_duration is None or duration < self.min_frame_duration:
            self.min_frame_duration = duration
        self.processing_lag = max(0, duration - self.min_frame_duration)
        self.last_sync_received = ts

    def _op_mouse(self, ins: Instruction) -> None:
        if len(ins) >= 4:
            x, y, mask = _int(ins[1]), _int(ins[2]), _int(ins[3])
            self._handler.on_mouse(self, x, y, mask)
            if self.conn is not None and self.conn.recording is not None:
                self.conn.recording.mouse(x, y, mask)

    def _op_key(self, ins: Instruction) -> None:
        if len(ins) >= 3:
            keysym, pressed = _int(ins[1]), ins[2] == "1"
            self._handler.on_key(self, keysym, pressed)
            if self.conn is not None and self.conn.recording is not None:
                self.conn.recording.key(keysym, pressed)

    def _op_size(self, ins: Instruction) -> None:
        if len(ins) >= 3:
            w, h = _int(ins[1]), _int(ins[2])
            self.info.width, self.info.height = w, h
            self._handler.on_size(self, w, h)

    def _op_touch(self, ins: Instruction) -> None:
        self._handler.on_touch(self, ins[1:])
        if len(ins) >= 8 and self.conn is not None and self.conn.recording is not None:
            tid, x, y, rx, ry = (_int(v) for v in ins[1:6])
            self.conn.recording.touch(tid, x, y, rx, ry, _float(ins[6]), _float(ins[7]))

    def _op_disconnect(self, ins: Instruction) -> None:
        self.send(b.disconnect())
        self.close()

    def _op_nop(self, ins: Instruction) -> None:
        pass

    def _op_ack(self, ins: Instruction) -> None:
        if len(ins) < 4:
            return
        index = _int(ins[1])
        if index % 2:
            return  # connection-level (broadcast) streams take no acks, as in guacd
        fut = self._ack_waiters.pop(index, None)
        if fut is not None and not fut.done():
            fut.set_result((ins[2], _int(ins[3])))

    # Inbound streams --------------------------------------------------------------
    def _new_stream(self, text: str, kind: str, mimetype: str, name: str = "") -> _Inbound | None:
        index = _int(text)
        if not 0 <= index < MAX_INBOUND_STREAMS:
            self.ack(index, "Invalid stream index", Status.CLIENT_BAD_REQUEST)
            return None
        stream = _Inbound(kind, mimetype, name)
        old = self._inbound.get(index)
        if old is not None and old.sink is not None:
            old.sink.end()
        self._inbound[index] = stream
        return stream

    def _open_refused(self, text: str, kind: str, message: str, status: Status) -> None:
        stream = self._new_stream(text, kind, "")
        if stream is not None:
            stream.refusal = (message, status)
            self.ack(_int(text), message, status)

    def _op_clipboard(self, ins: Instruction) -> None:
        if len(ins) < 3:
            return
        if not self._handler.accepts_clipboard(self):
            self._open_refused(ins[1], "clipboard", *_REFUSALS["clipboard"])
            return
        stream = self._new_stream(ins[1], "clipboard", ins[2])
        if stream is not None:
            stream.limit = getattr(self._handler, "clipboard_limit", DEFAULT_CLIPBOARD_LIMIT)

    def _op_argv(self, ins: Instruction) -> None:
        if len(ins) < 4:
            return
        index = _int(ins[1])
        if not self._handler.accepts_argv(ins[3]):
            self._open_refused(ins[1], "argv", "Not allowed.", Status.CLIENT_FORBIDDEN)
            return
        stream = self._new_stream(ins[1], "argv", ins[2], ins[3])
        if stream is not None:
            stream.limit = ARGV_MAX
            self.ack(index, "Ready for updated parameter.", Status.SUCCESS)

    def _open_sink(
        self, text: str, kind: str, mimetype: str, opener: Callable[[int], StreamSink | None]
    ) -> None:
        index = _int(text)
        sink = opener(index)
        if sink is None:
            message, status = _REFUSALS[kind]
            self._open_refused(text, kind, message, status)
            return
        stream = self._new_stream(text, kind, mimetype)
        if stream is not None:
            stream.sink = sink

    def _op_file(self, ins: Instruction) -> None:
        if len(ins) >= 4:
            h = self._handler
            self._open_sink(ins[1], "file", ins[2], lambda i: h.on_file(self, i, ins[2], ins[3]))

    def _op_pipe(self, ins: Instruction) -> None:
        if len(ins) >= 4:
            h = self._handler
            self._open_sink(ins[1], "pipe", ins[2], lambda i: h.on_pipe(self, i, ins[2], ins[3]))

    def _op_audio(self, ins: Instruction) -> None:
        if len(ins) >= 3:
            h = self._handler
            self._open_sink(ins[1], "audio", ins[2], lambda i: h.on_audio(self, i, ins[2]))

    def _op_put(self, ins: Instruction) -> None:
        if len(ins) >= 5:
            h = self._handler
            obj, mimetype, name = _int(ins[1]), ins[3], ins[4]
            self._open_sink(
                ins[2], "put", mimetype, lambda i: h.on_put(self, obj, i, mimetype, name)
            )

    def _op_get(self, ins: Instruction) -> None:
        if len(ins) >= 3:
            self._handler.on_get(self, _int(ins[1]), ins[2])

    def _op_blob(self, ins: Instruction) -> None:
        if len(ins) < 3:
            return
        index = _int(ins[1])
        stream = self._inbound.get(index)
        if stream is None:
            self.ack(index, "Invalid stream index", Status.CLIENT_BAD_REQUEST)
            return
        if stream.refusal is not None:
            self.ack(index, *stream.refusal)
            return
        data = binascii.a2b_base64(ins[2])
        if stream.sink is not None:
            stream.sink.blob(data)
        elif len(stream.buffer) + len(data) <= stream.limit:
            stream.buffer += data
        else:
            stream.buffer += data[: max(0, stream.limit - len(stream.buffer))]

    def _op_end(self, ins: Instruction) -> None:
        if len(ins) < 2:
            return
        index = _int(ins[1])
        stream = self._inbound.pop(index, None)
        if stream is None:
            self.ack(index, "Invalid stream index", Status.CLIENT_BAD_REQUEST)
            return
        if stream.refusal is not None:
            return
        if stream.sink is not None:
            stream.sink.end()
        elif stream.kind == "clipboard":
            data = bytes(stream.buffer)
            self._handler.on_clipboard(self, stream.mimetype, data)
            if self.conn is not None and self.conn.recording is not None:
                self.conn.recording.clipboard(stream.mimetype, data)
        elif stream.kind == "argv":
            value = bytes(stream.buffer).decode("utf-8", "replace")
            self._handler.on_argv(self, stream.name, value)

    _OPS: dict[str, Callable[[User, Instruction], None]] = {
        "sync": _op_sync,
        "mouse": _op_mouse,
        "key": _op_key,
        "size": _op_size,
        "touch": _op_touch,
        "clipboard": _op_clipboard,
        "file": _op_file,
        "pipe": _op_pipe,
        "argv": _op_argv,
        "audio": _op_audio,
        "blob": _op_blob,
        "end": _op_end,
        "ack": _op_ack,
        "get": _op_get,
        "put": _op_put,
        "nop": _op_nop,
        "disconnect": _op_disconnect,
    }


# Input a read-only user may not give (guacd installs no handlers for these).
_INPUT_OPCODES = frozenset({"key", "mouse", "clipboard", "pipe", "argv", "size", "file", "touch"})

# guacd's replies when a stream kind has no handler.
_REFUSALS: dict[str, tuple[str, Status]] = {
    "clipboard": ("Clipboard unsupported", Status.UNSUPPORTED),
    "file": ("File transfer unsupported", Status.UNSUPPORTED),
    "pipe": ("Named pipes unsupported", Status.UNSUPPORTED),
    "argv": ("Reconfiguring in-progress connections unsupported", Status.UNSUPPORTED),
    "audio": ("Audio input unsupported", Status.UNSUPPORTED),
    "put": ("File transfer unsupported", Status.UNSUPPORTED),
}


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ProtocolError(f'Invalid number "{text[:32]}"') from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f'Invalid integer "{text[:32]}"') from None


if TYPE_CHECKING:
    from guacr.contract import peers

    def _satisfies_the_contract(
        user: User, conn: Connection
    ) -> tuple[peers.User, peers.Connection]:
        """mypy proves the core's session and connection are what handlers were promised."""
        return user, conn
