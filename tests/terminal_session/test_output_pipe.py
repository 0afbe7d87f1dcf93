"""guacd's output pipe: OSC 482202 sends terminal output to a named ``pipe`` stream
instead of the display, OSC 482203 ends it (router, session, and through real sshd)."""

from __future__ import annotations

import asyncio
import base64
from typing import NamedTuple

from guacr_process import Guacr
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import SSHServer
from ssh.fakes import FakeConn, FakeUser
from ssh.ssh_helpers import TermClient, ssh_values
from ssh.term_screen import Display, TextReader

from guacr.protocol.parser import Instruction
from guacr.frontend.pipes import (
    PIPE_BLOB,
    PIPE_CLOSE,
    PIPE_OPEN,
    TO_PIPE,
    TO_TERM,
    OutputRouter,
    Route,
)
from guacr.frontend.session import TerminalConfig, TerminalSession

OPEN = b"\x1b]482202;mypipe\x07"
CLOSE = b"\x1b]482203;\x07"


# Router ------------------------------------------------------------------------------
def merged(routes: list[Route]) -> list[Route]:
    """Adjacent routes of the same data kind joined (chunking must not matter)."""
    out: list[Route] = []
    for r in routes:
        if out and r.kind == out[-1].kind and r.kind in (TO_TERM, TO_PIPE):
            out[-1] = Route(r.kind, out[-1].data + r.data)
        elif r.data or r.kind not in (TO_TERM, TO_PIPE):
            out.append(r)
    return out


def route(data: bytes, chunk: int = 0) -> list[Route]:
    router = OutputRouter()
    if not chunk:
        return merged(router.feed(data))
    out: list[Route] = []
    for i in range(0, len(data), chunk):
        out.extend(router.feed(data[i : i + chunk]))
    return merged(out)


class Sinks(NamedTuple):
    term: bytes
    pipe: bytes


def sinks(routes: list[Route]) -> list[Sinks | Route]:
    """What each sink gets between pipe events: (emulator bytes, pipe bytes), events.

    Without flag 1 the router may reorder text and escapes between the two sinks (each
    sink's own order is kept), so this is what must not depend on chunking.
    """
    out: list[Sinks | Route] = [Sinks(b"", b"")]
    for r in routes:
        last = out[-1]
        if r.kind in (TO_TERM, TO_PIPE):
            assert isinstance(last, Sinks)
            t, p = last
            out[-1] = Sinks(t + r.data, p) if r.kind == TO_TERM else Sinks(t, p + r.data)
        else:
            out.extend([r, Sinks(b"", b"")])
    return out


def test_plain_output_is_one_route_for_the_emulator() -> None:
    data = b"ls\r\n\x1b[1;32mfile\x1b[0m \x1b]0;title\x07done\x1b"
    assert OutputRouter().feed(data) == [Route(TO_TERM, data)]


def test_open_pipe_text_close() -> None:
    data = b"$ " + OPEN + b"PIPED\r\n" + CLOSE + b"$ "
    assert route(data) == [
        Route(TO_TERM, b"$ " + OPEN),
        Route(PIPE_OPEN, b"mypipe", 0),
        Route(TO_PIPE, b"PIPED\r\n"),
        Route(TO_TERM, CLOSE),
        Route(PIPE_CLOSE),
        Route(TO_TERM, b"$ "),
    ]


def test_escape_sequences_in_a_pipe_go_to_the_emulator_not_the_pipe() -> None:
    """As guacd: only what its text handler sees is piped; sequences are interpreted."""
    body = b"a\x1b[1;31mred\x1b[0m\x1b]0;t\x07b\x1b(Bc\x1bPdcs\x1b\\d\x1b7e"
    routes = route(OPEN + body)
    assert b"".join(r.data for r in routes if r.kind == TO_PIPE) == b"aredbcde"
    assert b"".join(r.data for r in routes if r.kind == TO_TERM) == (
        OPEN + b"\x1b[1;31m\x1b[0m\x1b]0;t\x07\x1b(B\x1bPdcs\x1b\\\x1b7"
    )


def test_flags_st_terminator_and_close_variants() -> None:
    routes = route(b"\x1b]482202;1;2;my pipe\x1b\\x\x1b]482203\x07y")
    assert routes[1] == Route(PIPE_OPEN, b"my pipe", 3)
    assert Route(TO_PIPE, b"x") in routes
    assert routes[-2:] == [Route(PIPE_CLOSE), Route(TO_TERM, b"y")]
    # guacd parses flags like strtoul (junk -> 0); a name may be empty
    assert route(b"\x1b]482202;2x;junk;\x07")[1] == Route(PIPE_OPEN, b"", 2)


def test_lookalikes_do_not_open_or_close() -> None:
    for data in (
        b"\x1b]482202\x07text",  # no name: guacd ignores it
        b"\x1b]4822020;x\x07text",
        b"\x1b]48220;x\x07text",
        b"\x1b]482203;\x07text",  # nothing open: nothing to close
    ):
        assert [r.kind for r in route(data)] == [TO_TERM], data
    # inside a pipe, another pipe's OSC closes it and opens the new one
    routes = route(OPEN + b"a" + b"\x1b]482202;second\x07b")
    assert [r.kind for r in routes] == [TO_TERM, PIPE_OPEN, TO_PIPE, TO_TERM, PIPE_OPEN, TO_PIPE]
    assert routes[4].data == b"second"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *(b"txt", b"\r\n", OPEN, CLOSE, b"\x1b]482202;1;drawn\x07", b"\x1b[1m"),
                *(b"\x1b(B", b"\x1b]0;t\x07", b"\x1bPq\x1b\\", b"\x1b", b"\x1b\\", b"]", b"["),
            ]
        ),
        max_size=14,
    ),
    st.integers(1, 7),
)
def test_chunking_never_changes_the_routes(parts: list[bytes], chunk: int) -> None:
    data = b"".join(parts)
    whole = route(data)
    assert sinks(route(data, chunk)) == sinks(whole)
    if b";1;drawn" in data and OPEN not in data:  # flag 1: text and escapes stay in order
        assert route(data, chunk) == whole


def test_drawn_pipe_text_keeps_its_order_with_escapes() -> None:
    routes = route(b"\x1b]482202;1;p\x07a\x1b[1mb\x1b[0mc")
    assert routes[1:] == [
        Route(PIPE_OPEN, b"p", 1),
        Route(TO_PIPE, b"a"),
        Route(TO_TERM, b"\x1b[1m"),
        Route(TO_PIPE, b"b"),
        Route(TO_TERM, b"\x1b[0m"),
        Route(TO_PIPE, b"c"),
    ]


# Session with a fake connection ---------------------------------------------------------
async def make_session(conn: FakeConn) -> TerminalSession:
    s = TerminalSession(conn, TerminalConfig(), send_input=lambda _: None)
    await s.start()
    return s


async def settle(s: TerminalSession) -> None:
    await s.drain()
    await asyncio.sleep(0.06)


def screen(ins: list[Instruction]) -> list[str]:
    d = Display()
    d.feed_all(ins)
    rows: list[str] = TextReader().screen(d)
    return rows


class Pipe(NamedTuple):
    stream: str
    name: str
    data: bytes
    ended: bool


def pipe_streams(ins: list[Instruction]) -> list[Pipe]:
    """Every ``pipe`` stream opened in ``ins``, in order, with its data."""
    out: list[Pipe] = []
    live: dict[str, int] = {}  # stream -> index in out, until its end (indices are reused)
    for i in ins:
        if i[0] == "pipe":
            assert i[2] == "text/plain" and i[1] not in live
            live[i[1]] = len(out)
            out.append(Pipe(i[1], i[3], b"", False))
        elif i[0] == "blob" and i[1] in live:
            p = out[live[i[1]]]
            out[live[i[1]]] = p._replace(data=p.data + base64.b64decode(i[2]))
        elif i[0] == "end" and i[1] in live:
            n = live.pop(i[1])
            out[n] = out[n]._replace(ended=True)
    return out


def pipe_blob_sizes(ins: list[Instruction]) -> list[int]:
    """Sizes of the blobs of the first pipe stream."""
    stream = next(i[1] for i in ins if i[0] == "pipe")
    start = next(n for n, i in enumerate(ins) if i[0] == "pipe")
    sizes = []
    for i in ins[start:]:
        if i[0] == "end" and i[1] == stream:
            break
        if i[0] == "blob" and i[1] == stream:
            sizes.append(len(base64.b64decode(i[2])))
    return sizes


async def test_session_pipes_output_instead_of_drawing_it() -> None:
    conn = FakeConn()
    s = await make_session(conn)
    try:
        s.write_output(b"before\r\n" + OPEN + b"PIPED\r\n")
        await settle(s)
        assert s.pipe_name == "mypipe"
        ins = conn.instructions()
        (pipe,) = pipe_streams(ins)
        assert int(pipe.stream) % 2 == 1  # a connection-level (broadcast) stream, as guacd's
        assert pipe == (pipe.stream, "mypipe", b"", False)  # buffered until close
        s.write_output(b"more" + CLOSE + b"after")
        await settle(s)
        ins = conn.instructions()
        assert pipe_streams(ins) == [(pipe.stream, "mypipe", b"PIPED\r\nmore", True)]
        assert screen(ins)[:2] == ["before", "after"]  # piped text never drawn
        assert s.pipe_name is None
    finally:
        await s.close()


async def test_blobs_are_guacd_sized_and_sent_when_the_buffer_overflows() -> None:
    conn = FakeConn()
    s = await make_session(conn)
    try:
        payload = bytes(range(32, 127)) * 200  # 19000 bytes
        s.write_output(OPEN + payload[:PIPE_BLOB])
        await settle(s)
        assert pipe_blob_sizes(conn.instructions()) == []  # exactly full: still held
        s.write_output(payload[PIPE_BLOB:])
        await settle(s)
        assert pipe_blob_sizes(conn.instructions()) == [PIPE_BLOB] * 3
        await s.close()  # closing the session ends the pipe with the rest
        ins = conn.instructions()
        assert pipe_blob_sizes(ins) == [PIPE_BLOB] * 3 + [len(payload) - 3 * PIPE_BLOB]
        assert pipe_streams(ins) == [("1", "mypipe", payload, True)]
    finally:
        await s.close()


async def test_autoflush_and_interpret_flags() -> None:
    conn = FakeConn()
    s = await make_session(conn)
    try:
        s.write_output(b"\x1b]482202;3;both\x07SHOWN")
        await settle(s)
        ins = conn.instructions()
        assert pipe_streams(ins) == [("1", "both", b"SHOWN", False)]  # flag 2: per frame
        assert screen(ins)[0] == "SHOWN"  # flag 1: drawn too
    finally:
        await s.close()
    assert pipe_streams(conn.instructions()) == [("1", "both", b"SHOWN", True)]


async def test_joiners_get_the_open_pipe_and_its_data() -> None:
    owner, joiner = FakeUser(), FakeUser(owner=False)
    conn = FakeConn(owner)
    s = await make_session(conn)
    try:
        s.write_output(OPEN + b"early ")
        await settle(s)
        conn.users.append(joiner)
        s.user_joined(joiner)
        s.write_output(b"late" + CLOSE)
        await settle(s)
        assert pipe_streams(owner.instructions()) == [("1", "mypipe", b"early late", True)]
        # guacd would leave the joiner with blobs of a stream it never saw opened; here it
        # gets the ``pipe`` and all not sent yet (the buffer held "early " still)
        assert pipe_streams(joiner.instructions()) == [("1", "mypipe", b"early late", True)]
    finally:
        await s.close()


async def test_terminal_state_changes_while_piping_still_apply() -> None:
    """Escape sequences are interpreted while a pipe is open (title, cursor moves)."""
    conn = FakeConn()
    s = await make_session(conn)
    try:
        s.write_output(OPEN + b"x\x1b]0;piped title\x07y\x1b[3;5H" + CLOSE + b"Z")
        await settle(s)
        ins = conn.instructions()
        assert ("name", "piped title") in ins
        assert pipe_streams(ins) == [("1", "mypipe", b"xy", True)]
        assert screen(ins)[2] == "    Z"  # the cursor move applied while piping
    finally:
        await s.close()


# Through the daemon and a real sshd --------------------------------------------------------
def test_pipe_through_the_daemon_and_sshd(guacr_ssh: Guacr, sshd: SSHServer) -> None:
    """The shell opens a pipe (as guacctl -o does), echoes into it and closes it."""
    client = guacr_ssh.client()
    try:
        term = TermClient(client)
        client.handshake("ssh", ssh_values(sshd), size=(800, 480, 96))
        term.wait_text("guest@", timeout=15)
        start = len(term.log)
        term.run(
            r"printf '\033]482202;mypipe\007'; echo PIPED; printf '\033]482203;\007'; echo BACK"
        )

        def closed() -> bool:
            return any(p.ended for p in pipe_streams(term.log[start:]))

        term.wait(closed, what="pipe stream end")
        ((_, name, data, ended),) = pipe_streams(term.log[start:])
        assert (name, data, ended) == ("mypipe", b"PIPED\r\n", True)
        term.wait_text("BACK")
        assert "PIPED" not in term.screen()  # the output line was piped, not drawn
        # closing without the ';' guacctl sends (guacd ignores that form; we close)
        start = len(term.log)
        term.run(r"printf '\033]482202;two\007'; echo TWO; printf '\033]482203\007'")
        term.wait(closed, what="second pipe stream end")
        ((_, name, data, ended),) = pipe_streams(term.log[start:])
        assert (name, data, ended) == ("two", b"TWO\r\n", True)
        assert not term.errors
    finally:
        client.close()
