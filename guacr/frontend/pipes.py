"""guacd's pipes for terminals: the ``STDIN`` input pipe, and the output pipe that
``ESC ] 482202`` opens (host output goes to a ``pipe`` stream instead of the display)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

from guacr.protocol import builders as b
from guacr.protocol.status import Status

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

OSC_PIPE_OPEN: Final = 482202
OSC_PIPE_CLOSE: Final = 482203


class StdinPipe:
    """A client ``pipe`` named ``STDIN``: its data is typed into the session, as guacd."""

    def __init__(self, write: Callable[[bytes], None], user: User, stream: int) -> None:
        self.write, self.user, self.stream = write, user, stream
        user.ack(stream, "Ready for STDIN data.", Status.SUCCESS)

    def blob(self, data: bytes) -> None:
        """Type the data, then ask for more."""
        self.write(data)
        self.user.ack(self.stream, "OK", Status.SUCCESS)

    def end(self) -> None:
        """Nothing to finish: input was typed as it came."""


TO_TERM: Final = 0  # bytes for the emulator
TO_PIPE: Final = 1  # text for the open pipe stream
PIPE_OPEN: Final = 2  # open a pipe: data = name, flags
PIPE_CLOSE: Final = 3  # close the open pipe
PIPE_INTERPRET: Final = 1  # OSC 482202 flag: output goes to the display too
PIPE_AUTOFLUSH: Final = 2  # OSC 482202 flag: the pipe buffer is sent with every frame
PIPE_BLOB: Final = 6048  # guacd's pipe buffer: a blob when full (else at close/autoflush)
_OSC_PAYLOAD_MAX: Final = 2047  # guacd keeps this much of an OSC parameter
_GROUND, _ESC, _CSI, _OSC_NUM, _STRING, _STRING_ESC = range(6)
_CSI_END: Final = re.compile(rb"[\x18\x1a\x1b\x40-\x7e]")
# whole CSIs and short escapes (not strings): most escapes in piped output
_SHORT_ESCAPES: Final = re.compile(
    rb"(\x1b(?:\[[\x20-\x3f]*[\x40-\x7e]|[\x20-\x2f]*[\x30-\x4f\x51-\x57\x59-\x5a\x60-\x7e]))"
)
_STRING_END: Final = re.compile(rb"[\x07\x18\x1a\x1b]")
_LEADING_INT: Final = re.compile(rb"\s*\+?(\d+)")


class Route(NamedTuple):
    """One piece of host output and where it goes (see :class:`OutputRouter`)."""

    kind: int
    data: bytes = b""
    flags: int = 0


class OutputRouter:
    """Splits host output between the emulator and guacd's output pipe (sans-I/O).

    ``ESC ] 482202 ; [flags ;]... name`` (BEL or ST) opens a pipe: from then on, as in
    guacd, text goes to the pipe instead of the display, while escape sequences still
    reach the emulator (they are interpreted, not piped), until ``ESC ] 482203``
    closes it. Flags (OR-ed numbers before the name): 1 = draw the text too, 2 = send
    the pipe buffer with every frame. guacd only closes on ``ESC ] 482203 ;``; the form
    without ``;`` (which guacd ignores) closes too.

    Outside a pipe the only cost is one ``bytes.find`` per chunk: all bytes go to the
    emulator and only ``ESC ]`` is looked at.
    """

    def __init__(self) -> None:
        self.piping = False
        self._keep_order = False  # text is drawn as well as piped (flag 1)
        self._state = _GROUND
        self._num = bytearray()  # digits of the OSC number being read
        self._cmd = 0  # 482202/482203 while its payload is read, else 0
        self._payload = bytearray()
        self._data = b""  # the chunk being routed, and routes found so far
        self._out: list[Route] = []
        self._mark = 0  # start of bytes not yet given a route

    def feed(self, data: bytes) -> list[Route]:
        """Route one chunk; state carries over to the next."""
        quiet = self._state == _GROUND and not self.piping
        if quiet and data.find(b"\x1b]") < 0 and not data.endswith(b"\x1b"):
            return [Route(TO_TERM, data)]
        out: list[Route] = []
        self._data, self._out, self._mark = data, out, 0
        pos, n = 0, len(data)
        while pos < n:
            pos = self._step(data, pos, n)
        self._emit_term(n)
        self._data = b""
        return out

    def _emit_term(self, end: int) -> None:
        if end > self._mark:
            self._out.append(Route(TO_TERM, self._data[self._mark : end]))
        self._mark = end

    def _step(self, data: bytes, pos: int, n: int) -> int:
        """Consume from ``pos``; returns the new position."""
        state = self._state
        if state == _GROUND:
            if self.piping:
                return self._pipe_text(data, pos, n)
            i = data.find(b"\x1b]", pos)
            if i >= 0:
                self._state, self._num = _OSC_NUM, bytearray()
                return i + 2
            if data.endswith(b"\x1b"):
                self._state = _ESC
            return n
        c = data[pos]
        if state == _ESC:
            return self._escape(c, pos)
        if state == _CSI:
            m = _CSI_END.search(data, pos)
            if m is None:
                return n
            self._state = _ESC if data[m.start()] == 0x1B else _GROUND
            return m.start() + 1
        if state == _OSC_NUM:
            if 0x30 <= c <= 0x39 and len(self._num) < 8:
                self._num.append(c)
                return pos + 1
            return self._osc_number(c, pos)
        if state == _STRING:
            m = _STRING_END.search(data, pos)
            end = n if m is None else m.start()
            if self._cmd:
                room = _OSC_PAYLOAD_MAX - len(self._payload)
                self._payload += data[pos : min(end, pos + max(0, room))]
            if m is None:
                return n
            c = data[end]
            if c == 0x07:
                self._finish(end + 1)
            elif c == 0x1B:
                self._state = _STRING_ESC
            else:  # CAN/SUB cancel the string
                self._cmd, self._state = 0, _GROUND
            return end + 1
        # _STRING_ESC: ESC \ ends the string; ESC + anything else ends it and starts anew
        if c == 0x5C:
            self._finish(pos + 1)
            return pos + 1
        self._finish(pos)
        self._state = _ESC
        return pos

    def _pipe_text(self, data: bytes, pos: int, n: int) -> int:
        """Inside a pipe: text to the pipe, whole short escapes to the emulator, up to the
        first other escape (split in C: piped ``ls --color`` output is mostly escapes)."""
        parts = _SHORT_ESCAPES.split(data[pos:] if pos else data)  # text, escape, text, ...
        end = n
        for k in range(0, len(parts), 2):
            j = parts[k].find(b"\x1b")
            if j >= 0:  # a string, or an escape this chunk ends inside
                parts[k] = parts[k][:j]
                del parts[k + 1 :]
                end = pos + sum(map(len, parts))
                break
        self._emit_term(pos)
        out = self._out
        if self._keep_order:  # the text is drawn too: keep it in order with the escapes
            for k, part in enumerate(parts):
                if part:
                    out.append(Route(TO_TERM if k % 2 else TO_PIPE, part))
        else:  # pipe and emulator are separate sinks: one route each
            escapes, text = b"".join(parts[1::2]), b"".join(parts[0::2])
            if escapes:
                out.append(Route(TO_TERM, escapes))
            if text:
                out.append(Route(TO_PIPE, text))
        self._mark = end
        if end == n:
            return n
        self._state = _ESC  # its ESC goes to the emulator with what follows
        return end + 1

    def _escape(self, c: int, pos: int) -> int:
        if c == 0x5D:  # ]
            self._state, self._num = _OSC_NUM, bytearray()
        elif not self.piping:
            self._state = _GROUND  # only OSCs matter outside a pipe
            return pos
        elif c == 0x5B:  # [
            self._state = _CSI
        elif c in b"PX^_":  # DCS, SOS, PM, APC: strings up to ST
            self._cmd, self._state = 0, _STRING
        elif 0x20 <= c <= 0x2F or c == 0x1B or (c < 0x20 and c not in (0x18, 0x1A)):
            pass  # intermediate, repeated ESC or an executed control: still in the escape
        else:
            self._state = _GROUND  # final byte
        return pos + 1

    def _osc_number(self, c: int, pos: int) -> int:
        cmd = int(self._num) if self._num else -1
        terminator = c in (0x07, 0x1B)
        if cmd in (OSC_PIPE_OPEN, OSC_PIPE_CLOSE) and (
            c == 0x3B or (terminator and cmd == OSC_PIPE_CLOSE)
        ):
            self._cmd, self._payload = cmd, bytearray()
            if c == 0x3B:
                self._state = _STRING
            elif c == 0x07:
                self._finish(pos + 1)
            else:
                self._state = _STRING_ESC
            return pos + 1
        # Any other OSC: inside a pipe skip it to its end (it isn't text); outside a
        # pipe nothing more to watch.
        self._cmd = 0
        self._state = _STRING if self.piping else _GROUND
        return pos

    def _finish(self, end: int) -> None:
        """An OSC ended at ``end``: act on 482202/482203 (their bytes go to the emulator)."""
        cmd, self._cmd, self._state = self._cmd, 0, _GROUND
        if cmd == OSC_PIPE_OPEN:
            *params, name = bytes(self._payload).split(b";")
            flags = 0
            for p in params:
                m = _LEADING_INT.match(p)
                value = int(m.group(1)) if m else 0
                flags |= value if value <= 0x7FFFFFFF else 0
            self._emit_term(end)
            self._out.append(Route(PIPE_OPEN, name, flags))
            self.piping = True
            self._keep_order = bool(flags & PIPE_INTERPRET)
        elif cmd == OSC_PIPE_CLOSE:
            self._emit_term(end)
            if self.piping:
                self._out.append(Route(PIPE_CLOSE))
            self.piping = False


class OutputPipe:
    """The ``pipe`` stream host output goes to while :class:`OutputRouter` pipes it: a
    connection-level stream every user reads, buffered and sent in guacd-sized blobs."""

    def __init__(self, conn: Connection, router: OutputRouter) -> None:
        self.conn = conn
        self.router = router
        self.stream: int | None = None
        self.name = ""
        self.flags = 0
        self.buffer = bytearray()

    @property
    def interpreted(self) -> bool:
        """Piped text is drawn as well (flag 1, or no stream could be opened)."""
        return bool(self.flags & PIPE_INTERPRET) or self.stream is None

    @property
    def autoflush(self) -> bool:
        """The buffer goes out with every frame (flag 2)."""
        return bool(self.flags & PIPE_AUTOFLUSH)

    def open(self, name: str, flags: int) -> None:
        """Open a pipe stream to every user, as guacd (closing any open one first)."""
        self.close()
        log = self.conn.log
        try:
            stream = self.conn.alloc_stream()
        except OverflowError:
            log.warning("No stream left for pipe %r: output stays on the display", name)
            self.router.piping = False
            return
        self.stream, self.name, self.flags = stream, name, flags
        self.conn.broadcast(b.pipe(stream, "text/plain", name))
        log.debug("Terminal output now goes to pipe %r (flags=%d)", name, flags)

    def write(self, data: bytes) -> None:
        """Buffer pipe output; full buffers go out as guacd-sized blobs."""
        stream = self.stream
        if stream is None:
            return
        buf = self.buffer
        buf += data
        if len(buf) > PIPE_BLOB:  # as guacd: a full buffer is sent when more arrives
            full = (len(buf) - 1) // PIPE_BLOB * PIPE_BLOB
            self.conn.broadcast(
                b"".join(
                    b.blob(stream, bytes(buf[i : i + PIPE_BLOB])) for i in range(0, full, PIPE_BLOB)
                )
            )
            del buf[:full]

    def flush(self) -> None:
        """Send what is buffered."""
        if self.stream is not None and self.buffer:
            self.conn.broadcast(b.blob(self.stream, bytes(self.buffer)))
            self.buffer.clear()

    def close(self) -> None:
        """Send what is buffered and end the pipe stream; output returns to the display."""
        stream = self.stream
        if stream is None:
            return
        self.flush()
        self.stream = None
        self.flags = 0
        self.conn.broadcast(b.end(stream))
        self.conn.free_stream(stream)
        self.conn.log.debug("Terminal output now goes to the display again")

    def announce(self, user: User) -> None:
        """Tell a joiner about the open pipe (guacd doesn't; with it, the joiner can
        read what follows)."""
        if self.stream is not None:
            user.send(b.pipe(self.stream, "text/plain", self.name))
