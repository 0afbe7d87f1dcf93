"""An open tunnel, sans-I/O: WebSocket frames in, Guacamole instructions out.

The contract is guacamole-common-js's ``WebSocketTunnel`` as guacamole-client's
endpoint serves it:

* the server speaks first, with the ``""`` instruction carrying the tunnel id;
* every message holds whole instructions; fragmented messages are reassembled;
* ``["", "ping", ts]`` is echoed at once, every other ``""`` instruction is dropped
  here and never reaches a handler;
* binary messages are refused (``error ... 783``, close 1003);
* a message that ends in the middle of an instruction is refused as a whole with
  ``error ... 768`` and close 1002: guacamole-common-js never splits an instruction,
  so such a message comes from a broken client, and dropping it silently (what
  guacamole-client does) would leave that client waiting for an answer forever;
* errors go out as guacamole-client reports them: an ``error`` instruction with the
  numeric status, then a close with guacamole-client's code for that status and the
  decimal status as reason. WebSocket-level failures (oversized message, bad UTF-8,
  protocol violations) are reported the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from guacr.errors import GuacrError, ProtocolError
from guacr.protocol.instruction import encode_many, encode_str
from guacr.protocol.parser import Instruction, parse_exact
from guacr.protocol.status import Status
from guacr.tunnel.closecodes import NO_STATUS, close_code, close_reason
from guacr.tunnel.upgrade import _quiet

MAX_MESSAGE = 1 << 20
INTERNAL = ""

# websockets' own failure codes -> the Guacamole status the client is told.
_FAIL_STATUS = {
    1002: (Status.CLIENT_BAD_REQUEST, "WebSocket protocol violation"),
    1007: (Status.CLIENT_BAD_REQUEST, "Invalid UTF-8 in a text message"),
    1009: (Status.CLIENT_OVERRUN, "WebSocket message too large"),
}


@dataclass(frozen=True)
class Received:
    """Instructions from the client, in order, tunnel-internal ones removed; ``raw`` is
    their wire form (the message itself when it held no internal instruction)."""

    instructions: list[Instruction]
    raw: bytes


@dataclass(frozen=True)
class Closed:
    """The tunnel is closing: ``code``/``reason`` as received (1005 when the client
    sent none) or, when ``by_client`` is False, as guacr sent them."""

    code: int
    reason: str
    by_client: bool


Event = Received | Closed


def error_instruction(message: str, status: Status) -> bytes:
    """``error`` with the numeric status, as text for one message."""
    return encode_str("error", message, int(status)).encode("utf-8", "surrogateescape")


class _Protocol(ServerProtocol):
    """``ServerProtocol`` whose own failures read like guacamole-client's errors."""

    def fail(self, code: int, reason: str = "") -> None:
        mapped = _FAIL_STATUS.get(code)
        if mapped is not None and self.state is State.OPEN:
            status, message = mapped
            self.send_frame(Frame(Opcode.TEXT, error_instruction(message, status)))
            code, reason = close_code(status), close_reason(status)
        super().fail(code, reason)


class Tunnel:
    """Server side of one open tunnel (after the 101)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._ws = _Protocol(state=State.OPEN, max_size=max_message, logger=_quiet)
        self._fragments: list[bytes] = []
        self._closed: Closed | None = None
        self._reported = False
        self.pings = 0

    # -- input -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Consume bytes from the socket; returns what they completed.

        Keep feeding bytes after a close: the client's answering close frame is what
        completes the closing handshake.
        """
        if self._ws.state is State.CLOSED:
            return []
        self._ws.receive_data(data)
        return self._process()

    def receive_eof(self) -> list[Event]:
        """The client closed its side of the TCP connection."""
        if self._ws.state is not State.CLOSED:
            self._ws.receive_eof()
        events = self._process()
        if self._closed is None:
            self._closed = Closed(1006, "", True)
        return events + self._report()

    def _process(self) -> list[Event]:
        out: list[Event] = []
        for frame in self._ws.events_received():
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is Opcode.CLOSE:
                if self._closed is None:
                    rcvd = self._ws.close_rcvd
                    code = rcvd.code if rcvd is not None else NO_STATUS
                    reason = rcvd.reason if rcvd is not None else ""
                    self._closed = Closed(code, reason, True)
                continue
            if self._closed is not None:
                continue  # closing: no more input for anyone
            if opcode is Opcode.TEXT or opcode is Opcode.CONT:
                if frame.fin and not self._fragments:
                    if opcode is Opcode.TEXT:
                        self._message(bytes(frame.data), out)
                else:
                    self._fragments.append(bytes(frame.data))
                    if frame.fin:
                        data = b"".join(self._fragments)
                        self._fragments.clear()
                        self._message(data, out)
            elif opcode is Opcode.BINARY:
                self.close(Status.CLIENT_BAD_TYPE, "Binary WebSocket messages are not supported")
            # PING is answered by the protocol itself; PONG needs nothing.
        if self._closed is None and self._ws.state is not State.OPEN:
            sent = self._ws.close_sent
            if sent is not None:
                self._closed = Closed(sent.code, sent.reason, False)
            else:
                self._closed = Closed(1006, "", True)
        return out + self._report()

    def _report(self) -> list[Event]:
        if self._closed is not None and not self._reported:
            self._reported = True
            return [self._closed]
        return []

    def _message(self, data: bytes, out: list[Event]) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.close(Status.CLIENT_BAD_REQUEST, "Invalid UTF-8 in a text message")
            return
        try:
            instructions, used = parse_exact(text)
        except GuacrError as exc:
            self.close(exc.status, exc.message)
            return
        if used != len(text):
            self.close(
                Status.CLIENT_BAD_REQUEST,
                "WebSocket message ends in the middle of an instruction",
            )
            return
        kept: list[Instruction] = []
        dropped = False
        for ins in instructions:
            if ins[0] == INTERNAL:
                # Answered while open only: a close frame read with this message
                # (a browser pinging as it leaves) already ended the sending side.
                if len(ins) >= 3 and ins[1] == "ping" and self._ws.state is State.OPEN:
                    self.pings += 1
                    self._ws.send_text(encode_str(INTERNAL, "ping", ins[2]).encode("utf-8"))
                dropped = True
                continue
            kept.append(ins)
        if kept:
            out.append(Received(kept, encode_many(kept) if dropped else data))

    # -- output ----------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether messages can still be sent."""
        return self._ws.state is State.OPEN

    def send_id(self, tunnel_id: str) -> None:
        """The first message of every tunnel: ``""`` with the tunnel's id."""
        self.send(encode_str(INTERNAL, tunnel_id).encode("utf-8", "surrogateescape"))

    def send(self, data: bytes) -> None:
        """One text message of whole instructions (already UTF-8)."""
        if self._ws.state is State.OPEN:
            self._ws.send_text(data)

    def close(self, status: Status = Status.SUCCESS, message: str | None = None) -> None:
        """Close as guacamole-client does: ``error`` first when ``message`` is given
        (leave it out when the error instruction already went out), then close with
        the mapped code and the decimal status as reason."""
        if self._ws.state is not State.OPEN:
            return
        if status is not Status.SUCCESS and message is not None:
            self._ws.send_text(error_instruction(message, status))
        self._ws.send_close(close_code(status), close_reason(status))
        self._closed = self._closed or Closed(close_code(status), close_reason(status), False)

    def fail(self, exc: GuacrError) -> None:
        """Close with a guacr error's status and message."""
        self.close(exc.status, exc.message)

    @property
    def closed(self) -> Closed | None:
        """How the tunnel closed, once it has."""
        return self._closed

    def data_to_send(self) -> list[bytes]:
        """Bytes to write, in order; ``b""`` means half-close the TCP connection."""
        return self._ws.data_to_send()

    def close_expected(self) -> bool:
        """True once the TCP connection should be closed (after a short grace)."""
        return self._ws.close_expected()

    @property
    def state(self) -> State:
        """The WebSocket state (OPEN, CLOSING, CLOSED)."""
        return self._ws.state


__all__ = ["Close", "Closed", "Event", "ProtocolError", "Received", "Tunnel"]
