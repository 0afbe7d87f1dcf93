"""Sans-I/O telnet client core: option negotiation, IAC escaping and NVT newline rules.

Bytes from the server go into :meth:`TelnetClient.receive_data`, which returns events
(application :class:`Data`, :class:`OptionChanged`, :class:`Command`); everything the
client must write back (negotiation replies, subnegotiations, escaped user input) is
collected and taken with :meth:`TelnetClient.data_to_send`. No sockets, no clock, so the
asyncio glue stays a few lines and every byte split can be unit tested.

Why not a library: ``telnetlib`` (stdlib) is blocking and removed in Python 3.13.
``telnetlib3`` (5.0.1 on PyPI, ISC, actively maintained, typed) was tried: it is asyncio
based and logged in to inetutils telnetd fine, but it is not sans-I/O. Its option state
lives in a ``TelnetWriter`` that writes to an asyncio transport itself, received bytes
are queued to a background task, and every command byte goes through ``feed_byte``
callbacks, so it cannot sit behind guacr's bytes-in/events-out handler boundary or be
tested split-by-split without a fake transport. Its client also brings much we would
have to switch off (MUD protocols GMCP/ZMP/MCCP, CHARSET, fingerprinting, SyncTERM
font switching that changes the decoding, NEW-ENVIRON answers for TERM/LANG/COLUMNS/
LINES by default), and in bytes mode it passed the server's CR NUL through to the
application. What guacr needs (RFC 854/855 negotiation with the RFC 1143 Q method, NAWS,
TTYPE, NEW-ENVIRON USER) is a few hundred lines, so guacr keeps its own core.

Policy (what guacd's telnet client does, plus BINARY and SGA):

* server options accepted: ECHO (the server echoes, we never do), SGA, BINARY;
* our options accepted: SGA, TTYPE, NAWS, NEW-ENVIRON, BINARY (guacd refuses BINARY;
  ``accept_binary=False`` does too). inetutils telnetd asks DO BINARY, and then it
  passes our bytes through untouched, so 8-bit input and a bare CR arrive as typed;
* everything else is refused once with DONT/WONT; negotiation follows the RFC 1143
  Q method, so we only answer on a state change and never loop.

Newlines (RFC 854): in non-binary (NVT) mode a CR from the user goes out as CR NUL (CR LF
stays CR LF), and the server's CR NUL is turned back into CR. inetutils telnetd
accepts a bare CR, CR NUL and CR LF alike as one CR (it drops a NUL or LF that follows
a CR), so CR NUL is both standard and safe: a bare CR would make the server swallow a
following Ctrl-J or Ctrl-@ typed by the user.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Commands (RFC 854).
SE = 240
NOP = 241
DM = 242
BRK = 243
IP = 244
AO = 245
AYT = 246
EC = 247
EL = 248
GA = 249
SB = 250
WILL = 251
WONT = 252
DO = 253
DONT = 254
IAC = 255

# Options.
BINARY = 0  # RFC 856
ECHO = 1  # RFC 857
SGA = 3  # RFC 858
STATUS = 5  # RFC 859
TIMING_MARK = 6  # RFC 860
TTYPE = 24  # RFC 1091
NAWS = 31  # RFC 1073
TSPEED = 32  # RFC 1079
LFLOW = 33  # RFC 1372
LINEMODE = 34  # RFC 1184
XDISPLOC = 35  # RFC 1096
OLD_ENVIRON = 36  # RFC 1408
AUTHENTICATION = 37  # RFC 2941
ENCRYPT = 38  # RFC 2946
NEW_ENVIRON = 39  # RFC 1572

# TTYPE and NEW-ENVIRON subnegotiation codes.
IS = 0
SEND = 1
INFO = 2
ENV_VAR = 0
ENV_VALUE = 1
ENV_ESC = 2
ENV_USERVAR = 3

_LOCAL_ACCEPTED = frozenset({BINARY, SGA, TTYPE, NAWS, NEW_ENVIRON})
_REMOTE_ACCEPTED = frozenset({BINARY, ECHO, SGA})

# A subnegotiation longer than this is a broken or hostile server; it is dropped.
_MAX_SB = 16384

_IAC_BYTE = b"\xff"
_ESCAPED_IAC = b"\xff\xff"


@dataclass(frozen=True, slots=True)
class Data:
    """Application data from the server, telnet commands removed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class OptionChanged:
    """An option became enabled or disabled.

    ``local`` is True for options we perform (negotiated with WILL/WONT by us), False
    for options the server performs (e.g. ECHO: the server echoes).
    """

    option: int
    local: bool
    enabled: bool


@dataclass(frozen=True, slots=True)
class Command:
    """A two-byte telnet command from the server (NOP, GA, AYT, DM, ...)."""

    command: int


Event = Data | OptionChanged | Command


class _Q(enum.Enum):
    """RFC 1143 option states."""

    NO = 0
    YES = 1
    WANTNO = 2
    WANTYES = 3


class _State(enum.Enum):
    DATA = 0
    IAC = 1
    VERB = 2
    SB = 3
    SB_IAC = 4


def _env_escape(value: bytes) -> bytes:
    """Escape NEW-ENVIRON control bytes inside a name or value (RFC 1572)."""
    if not any(b in value for b in (b"\x00", b"\x01", b"\x02", b"\x03")):
        return value
    out = bytearray()
    for byte in value:
        if byte <= ENV_USERVAR:
            out.append(ENV_ESC)
        out.append(byte)
    return bytes(out)


def _parse_env_send(request: bytes) -> list[tuple[int, bytes | None]]:
    """Split a NEW-ENVIRON SEND list into (VAR or USERVAR, name or None for "all")."""
    entries: list[tuple[int, bytearray | None]] = []
    escaped = False
    for byte in request:
        if escaped:
            escaped = False
        elif byte == ENV_ESC:
            escaped = True
            continue
        elif byte in (ENV_VAR, ENV_USERVAR):
            entries.append((byte, None))
            continue
        elif byte == ENV_VALUE:
            break  # a SEND carries names only
        if not entries:
            continue  # bytes before the first type are meaningless
        kind, name = entries[-1]
        if name is None:
            name = bytearray()
            entries[-1] = (kind, name)
        name.append(byte)
    return [(kind, None if name is None else bytes(name)) for kind, name in entries]


class TelnetClient:
    """Telnet client option negotiation and data framing, without I/O."""

    def __init__(
        self,
        terminal_type: str,
        username: str | None,
        width: int,
        height: int,
        *,
        accept_binary: bool = True,
    ) -> None:
        """``accept_binary=False`` refuses BINARY as guacd does, keeping NVT newlines."""
        self._local_accepted = _LOCAL_ACCEPTED if accept_binary else _LOCAL_ACCEPTED - {BINARY}
        self._remote_accepted = _REMOTE_ACCEPTED if accept_binary else _REMOTE_ACCEPTED - {BINARY}
        self._terminal_type = terminal_type.encode("ascii", "replace")
        self._environ: dict[bytes, bytes] = {}
        if username:
            self._environ[b"USER"] = username.encode("utf-8")
        self._width = width
        self._height = height
        self._out = bytearray()
        self._q: dict[tuple[bool, int], _Q] = {}
        self._queued: set[tuple[bool, int]] = set()  # RFC 1143 "OPPOSITE" queue bits
        self._state = _State.DATA
        self._verb = 0
        self._sb = bytearray()
        self._sb_overflow = False
        self._cr_pending = False  # last data byte was a CR; a following NUL is padding

    # Public API -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse bytes from the server; any split point is fine."""
        events: list[Event] = []
        text = bytearray()
        i, n = 0, len(data)
        while i < n:
            state = self._state
            if state is _State.DATA:
                j = data.find(_IAC_BYTE, i)
                end = n if j < 0 else j
                if end > i:
                    self._take_data(data[i:end], text)
                if j < 0:
                    break
                self._state = _State.IAC
                i = j + 1
            elif state is _State.SB:
                j = data.find(_IAC_BYTE, i)
                end = n if j < 0 else j
                self._sb_add(data[i:end])
                if j < 0:
                    break
                self._state = _State.SB_IAC
                i = j + 1
            else:
                byte = data[i]
                i += 1
                if state is _State.IAC:
                    self._after_iac(byte, text, events)
                elif state is _State.VERB:
                    self._flush(text, events)
                    self._state = _State.DATA
                    self._negotiate(self._verb, byte, events)
                elif byte == IAC:  # SB_IAC: escaped 255 inside the subnegotiation
                    self._sb_add(_IAC_BYTE)
                    self._state = _State.SB
                elif byte == SE:
                    self._flush(text, events)
                    self._state = _State.DATA
                    payload = bytes(self._sb)
                    self._sb.clear()
                    if not self._sb_overflow:
                        self._on_subnegotiation(payload)
                else:
                    # IAC <command> inside SB: the server never ended the subnegotiation.
                    # Drop it and read the byte as a command, as a lenient client would.
                    self._sb.clear()
                    self._state = _State.IAC
                    i -= 1
        self._flush(text, events)
        return events

    def data_to_send(self) -> bytes:
        """Take the bytes waiting to be written to the server."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, data: bytes) -> None:
        """Queue user input: IAC doubled, CR sent as CR NUL unless binary or CR LF."""
        if not data:
            return
        if IAC in data:
            data = data.replace(_IAC_BYTE, _ESCAPED_IAC)
        if 13 in data and not self.local_enabled(BINARY):
            data = data.replace(b"\r", b"\r\x00").replace(b"\r\x00\n", b"\r\n")
        self._out += data

    def resize(self, width: int, height: int) -> None:
        """Record the new size; tell the server with NAWS when that option is on."""
        self._width = width
        self._height = height
        if self.local_enabled(NAWS):
            self._send_naws()

    def send_command(self, command: int) -> None:
        """Queue a two-byte command such as AYT, IP or BRK."""
        self._out += bytes((IAC, command))

    def request(self, option: int, local: bool, enable: bool = True) -> None:
        """Ask to enable/disable an option (RFC 1143); e.g. ``request(SGA, local=False)``
        sends DO SGA. Servers normally start negotiation, so this is optional."""
        key = (local, option)
        state = self._q.get(key, _Q.NO)
        unwanted = _Q.NO if enable else _Q.YES
        wanting, leaving = (_Q.WANTYES, _Q.WANTNO) if enable else (_Q.WANTNO, _Q.WANTYES)
        if state is unwanted:
            self._q[key] = wanting
            self._reply(local, option, enable)
        elif state is leaving:
            self._queued.add(key)  # ask again once the pending answer arrives
        elif state is wanting:
            self._queued.discard(key)
        # Already in the wanted state: nothing to send. Disabling from YES emits no
        # OptionChanged event: the caller knows, and local_enabled() is False at once.

    def local_enabled(self, option: int) -> bool:
        """True when we perform ``option`` (the server said DO and we said WILL)."""
        return self._q.get((True, option)) is _Q.YES

    def remote_enabled(self, option: int) -> bool:
        """True when the server performs ``option`` (e.g. ECHO: it echoes our input)."""
        return self._q.get((False, option)) is _Q.YES

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in characters, as last given."""
        return self._width, self._height

    # Receiving --------------------------------------------------------------------------

    def _take_data(self, seg: bytes, text: bytearray) -> None:
        """Append application data; in NVT mode the NUL of a CR NUL pair is dropped."""
        if self.remote_enabled(BINARY):
            text += seg
            return
        if self._cr_pending:
            self._cr_pending = False
            if seg[0] == 0:
                seg = seg[1:]
                if not seg:
                    return
        if 13 in seg:
            self._cr_pending = seg[-1] == 13
            seg = seg.replace(b"\r\x00", b"\r")
        text += seg

    def _after_iac(self, byte: int, text: bytearray, events: list[Event]) -> None:
        if byte == IAC:
            text.append(IAC)
            self._cr_pending = False
            self._state = _State.DATA
        elif WILL <= byte <= DONT:
            self._verb = byte
            self._state = _State.VERB
        elif byte == SB:
            self._sb.clear()
            self._sb_overflow = False
            self._state = _State.SB
        else:
            self._state = _State.DATA
            if byte != SE:  # a stray SE outside a subnegotiation means nothing
                self._flush(text, events)
                events.append(Command(byte))

    @staticmethod
    def _flush(text: bytearray, events: list[Event]) -> None:
        if text:
            events.append(Data(bytes(text)))
            text.clear()

    def _sb_add(self, chunk: bytes) -> None:
        if self._sb_overflow or not chunk:
            return
        if len(self._sb) + len(chunk) > _MAX_SB:
            self._sb_overflow = True
            self._sb.clear()
            return
        self._sb += chunk

    # Negotiation (RFC 1143) -------------------------------------------------------------

    def _reply(self, local: bool, option: int, positive: bool) -> None:
        positive_verb, negative_verb = (WILL, WONT) if local else (DO, DONT)
        verb = positive_verb if positive else negative_verb
        self._out += bytes((IAC, verb, option))

    def _negotiate(self, verb: int, option: int, events: list[Event]) -> None:
        local = verb in (DO, DONT)
        if verb in (WILL, DO):
            self._on_positive(local, option, events)
        else:
            self._on_negative(local, option, events)

    def _set(self, local: bool, option: int, state: _Q, events: list[Event]) -> None:
        key = (local, option)
        was_on = self._q.get(key, _Q.NO) is _Q.YES
        self._q[key] = state
        self._queued.discard(key)
        now_on = state is _Q.YES
        if was_on != now_on:
            events.append(OptionChanged(option, local, now_on))
            if now_on and local and option == NAWS:
                self._send_naws()

    def _on_positive(self, local: bool, option: int, events: list[Event]) -> None:
        """WILL (server side) or DO (our side) received."""
        key = (local, option)
        state = self._q.get(key, _Q.NO)
        opposite = key in self._queued
        if state is _Q.NO:
            accepted = self._local_accepted if local else self._remote_accepted
            if option in accepted:
                self._reply(local, option, True)
                self._set(local, option, _Q.YES, events)
            else:
                self._reply(local, option, False)
        elif state is _Q.WANTNO:
            # Without a queued request this answers our "no" with "yes": an error that
            # RFC 1143 resolves as NO. With one queued, we wanted it back on anyway.
            self._set(local, option, _Q.YES if opposite else _Q.NO, events)
        elif state is _Q.WANTYES:
            if opposite:
                self._set(local, option, _Q.WANTNO, events)
                self._reply(local, option, False)
            else:
                self._set(local, option, _Q.YES, events)

    def _on_negative(self, local: bool, option: int, events: list[Event]) -> None:
        """WONT (server side) or DONT (our side) received."""
        key = (local, option)
        state = self._q.get(key, _Q.NO)
        if state is _Q.YES:
            self._set(local, option, _Q.NO, events)
            self._reply(local, option, False)
        elif state is _Q.WANTNO and key in self._queued:
            self._set(local, option, _Q.WANTYES, events)
            self._reply(local, option, True)
        elif state is not _Q.NO:
            self._set(local, option, _Q.NO, events)

    # Subnegotiations --------------------------------------------------------------------

    def _send_sb(self, option: int, payload: bytes) -> None:
        self._out += bytes((IAC, SB, option))
        self._out += payload.replace(_IAC_BYTE, _ESCAPED_IAC)
        self._out += bytes((IAC, SE))

    def _send_naws(self) -> None:
        width = min(max(self._width, 0), 0xFFFF)
        height = min(max(self._height, 0), 0xFFFF)
        self._send_sb(NAWS, width.to_bytes(2, "big") + height.to_bytes(2, "big"))

    def _on_subnegotiation(self, payload: bytes) -> None:
        if len(payload) < 2 or payload[1] != SEND:
            return
        option = payload[0]
        if option == TTYPE and self.local_enabled(TTYPE):
            self._send_sb(TTYPE, bytes((IS,)) + self._terminal_type)
        elif option == NEW_ENVIRON and self.local_enabled(NEW_ENVIRON):
            self._send_sb(NEW_ENVIRON, bytes((IS,)) + self._environ_reply(payload[2:]))

    def _environ_reply(self, request: bytes) -> bytes:
        """Answer a NEW-ENVIRON SEND: known VARs with values, unknown ones as undefined."""
        wanted = _parse_env_send(request) or [(ENV_VAR, None), (ENV_USERVAR, None)]
        out = bytearray()
        seen: set[tuple[int, bytes]] = set()
        for kind, name in wanted:
            if name is None:
                # "all well-known variables"; we have no USERVARs to list
                names = [(ENV_VAR, key) for key in self._environ] if kind == ENV_VAR else []
            else:
                names = [(kind, name)]
            for entry in names:
                if entry in seen:
                    continue
                seen.add(entry)
                entry_kind, entry_name = entry
                out.append(entry_kind)
                out += _env_escape(entry_name)
                value = self._environ.get(entry_name) if entry_kind == ENV_VAR else None
                if value is not None:
                    out.append(ENV_VALUE)
                    out += _env_escape(value)
        return bytes(out)
