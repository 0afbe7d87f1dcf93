"""Unit tests of the sans-I/O telnet core with scripted server bytes."""

from __future__ import annotations

import random

import pytest

from guacr.handlers.telnet.protocol import (
    AUTHENTICATION,
    AYT,
    BINARY,
    DM,
    DO,
    DONT,
    ECHO,
    ENCRYPT,
    GA,
    IAC,
    IS,
    LFLOW,
    LINEMODE,
    NAWS,
    NEW_ENVIRON,
    NOP,
    OLD_ENVIRON,
    SB,
    SE,
    SEND,
    SGA,
    STATUS,
    TIMING_MARK,
    TSPEED,
    TTYPE,
    WILL,
    WONT,
    XDISPLOC,
    Command,
    Data,
    Event,
    OptionChanged,
    TelnetClient,
)


def cmd(*parts: int) -> bytes:
    return bytes(parts)


def sb(option: int, payload: bytes) -> bytes:
    return bytes((IAC, SB, option)) + payload.replace(b"\xff", b"\xff\xff") + bytes((IAC, SE))


def client(username: str | None = "guest", width: int = 80, height: int = 24) -> TelnetClient:
    return TelnetClient("linux", username, width, height)


def data_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


def others(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, Data)]


# What inetutils telnetd 2.4 sent on connect, in its three rounds [observed], then data.
INETUTILS_SCRIPT = (
    b"\xff\xfb%\xff\xfb&\xff\xfd\x18\xff\xfd \xff\xfd#\xff\xfd'\xff\xfd$"
    b"\xff\xfa'\x01\xff\xf0\xff\xfa\x18\x01\xff\xf0"
    b'\xff\xfb\x03\xff\xfd\x01\xff\xfd"\xff\xfd\x1f\xff\xfb\x05\xff\xfd!'
    b"\xff\xfb\x01\xff\xfd\x06\xff\xfd\x00"
    b"\r\nvm login: \xff\xffa\r\x00b\r\n"
)


def test_inetutils_negotiation_replies() -> None:
    tc = client(width=100, height=30)
    events = tc.receive_data(INETUTILS_SCRIPT)
    out = tc.data_to_send()
    expected = (
        # AUTHENTICATION, ENCRYPT refused; TTYPE accepted; TSPEED, XDISPLOC refused;
        # NEW-ENVIRON accepted; OLD-ENVIRON refused.
        cmd(IAC, DONT, AUTHENTICATION, IAC, DONT, ENCRYPT, IAC, WILL, TTYPE)
        + cmd(IAC, WONT, TSPEED, IAC, WONT, XDISPLOC, IAC, WILL, NEW_ENVIRON)
        + cmd(IAC, WONT, OLD_ENVIRON)
        # NEW-ENVIRON SEND (all) and TTYPE SEND answered.
        + sb(NEW_ENVIRON, b"\x00\x00USER\x01guest")
        + sb(TTYPE, b"\x00linux")
        # SGA accepted; DO ECHO and LINEMODE refused; NAWS accepted with the size at once.
        + cmd(IAC, DO, SGA, IAC, WONT, ECHO, IAC, WONT, LINEMODE, IAC, WILL, NAWS)
        + sb(NAWS, b"\x00\x64\x00\x1e")
        + cmd(IAC, DONT, STATUS, IAC, WONT, LFLOW)
        # The server echoes; TIMING-MARK refused; BINARY accepted for our direction.
        + cmd(IAC, DO, ECHO, IAC, WONT, TIMING_MARK, IAC, WILL, BINARY)
    )
    assert out == expected
    assert data_of(events) == b"\r\nvm login: \xffa\rb\r\n"
    assert others(events) == [
        OptionChanged(TTYPE, True, True),
        OptionChanged(NEW_ENVIRON, True, True),
        OptionChanged(SGA, False, True),
        OptionChanged(NAWS, True, True),
        OptionChanged(ECHO, False, True),
        OptionChanged(BINARY, True, True),
    ]
    assert tc.remote_enabled(ECHO) and tc.local_enabled(BINARY)
    assert not tc.remote_enabled(BINARY) and not tc.local_enabled(ECHO)


def _run(chunks: list[bytes]) -> tuple[bytes, list[Event], bytes]:
    tc = client(width=255, height=511)
    events: list[Event] = []
    for chunk in chunks:
        events += tc.receive_data(chunk)
    return data_of(events), others(events), tc.data_to_send()


def test_any_split_gives_the_same_result() -> None:
    script = (
        INETUTILS_SCRIPT
        + cmd(IAC, NOP)
        + b"\xff\xff\xff\xff\r"
        + cmd(IAC, GA)
        + b"\x00tail\r"
        + sb(STATUS, b"\x00" + bytes(range(256)))
        + b"\x00end"
    )
    whole = _run([script])
    assert whole[0] == b"\r\nvm login: \xffa\rb\r\n\xff\xff\rtail\rend"
    assert _run([bytes([b]) for b in script]) == whole
    rng = random.Random(1143)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(script)), rng.randint(1, 12)))
        chunks = [script[a:b] for a, b in zip([0, *cuts], [*cuts, len(script)], strict=True)]
        assert _run(chunks) == whole


def test_iac_at_chunk_end_and_escaped_data() -> None:
    tc = client()
    assert tc.receive_data(b"ab\xff") == [Data(b"ab")]
    assert tc.receive_data(b"\xffcd\xff") == [Data(b"\xffcd")]
    assert tc.receive_data(cmd(WILL)) == []
    assert tc.receive_data(cmd(ECHO) + b"x") == [OptionChanged(ECHO, False, True), Data(b"x")]
    assert tc.data_to_send() == cmd(IAC, DO, ECHO)


def test_events_keep_their_order() -> None:
    tc = client()
    events = tc.receive_data(b"a" + cmd(IAC, WILL, ECHO) + b"b" + cmd(IAC, AYT) + b"c")
    assert events == [
        Data(b"a"),
        OptionChanged(ECHO, False, True),
        Data(b"b"),
        Command(AYT),
        Data(b"c"),
    ]


def test_commands_and_stray_se() -> None:
    tc = client()
    events = tc.receive_data(cmd(IAC, NOP, IAC, GA, IAC, DM, IAC, SE) + b"z")
    assert events == [Command(NOP), Command(GA), Command(DM), Data(b"z")]
    assert tc.data_to_send() == b""


# -------------------------------------------------------------------- CR NUL and CR


def test_cr_nul_removed_in_nvt_mode_even_across_chunks() -> None:
    tc = client()
    assert data_of(tc.receive_data(b"a\r\x00b\r")) == b"a\rb\r"
    assert data_of(tc.receive_data(b"\x00c\r\n\x00")) == b"c\r\n\x00"
    assert data_of(tc.receive_data(b"\r")) == b"\r"
    assert tc.receive_data(b"\x00") == []
    # A NUL that does not follow a CR is data.
    assert data_of(tc.receive_data(b"\x00x")) == b"\x00x"
    # 0xFF between CR and NUL: the NUL is data again.
    assert data_of(tc.receive_data(b"\r\xff\xff\x00")) == b"\r\xff\x00"


def test_cr_nul_kept_when_server_sends_binary() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, WILL, BINARY))
    assert tc.data_to_send() == cmd(IAC, DO, BINARY)
    assert data_of(tc.receive_data(b"a\r\x00b")) == b"a\r\x00b"


def test_send_escapes_iac_and_uses_cr_nul_in_nvt_mode() -> None:
    tc = client()
    tc.send(b"a\xffb\r")
    tc.send(b"line\r\n\r\x00\n")
    assert tc.data_to_send() == b"a\xff\xffb\r\x00" + b"line\r\n\r\x00\x00\n"
    tc.send(b"")
    assert tc.data_to_send() == b""


def test_send_binary_mode_keeps_cr_but_still_escapes_iac() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, DO, BINARY))
    assert tc.data_to_send() == cmd(IAC, WILL, BINARY)
    tc.send(b"\xff\r\xff")
    assert tc.data_to_send() == b"\xff\xff\r\xff\xff"


def test_accept_binary_false_refuses_binary() -> None:
    tc = TelnetClient("linux", None, 80, 24, accept_binary=False)
    assert tc.receive_data(cmd(IAC, DO, BINARY, IAC, WILL, BINARY)) == []
    assert tc.data_to_send() == cmd(IAC, WONT, BINARY, IAC, DONT, BINARY)
    tc.send(b"\r")
    assert tc.data_to_send() == b"\r\x00"


# ---------------------------------------------------------------------------- NAWS


def test_naws_sent_on_do_and_on_resize_with_255_escaped() -> None:
    tc = client(width=255, height=0x1FF)
    tc.resize(10, 10)  # NAWS not negotiated yet: nothing goes out
    assert tc.data_to_send() == b""
    tc.resize(255, 0x1FF)
    assert tc.receive_data(cmd(IAC, DO, NAWS)) == [OptionChanged(NAWS, True, True)]
    expected_sb = cmd(IAC, SB, NAWS, 0x00, 0xFF, 0xFF, 0x01, 0xFF, 0xFF, IAC, SE)
    assert tc.data_to_send() == cmd(IAC, WILL, NAWS) + expected_sb
    tc.resize(0xFFFF, 80)
    assert tc.data_to_send() == cmd(IAC, SB, NAWS, 0xFF, 0xFF, 0xFF, 0xFF, 0, 80, IAC, SE)
    tc.resize(70000, -5)  # clamped to the 16-bit field
    assert tc.data_to_send() == cmd(IAC, SB, NAWS, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, IAC, SE)
    assert tc.size == (70000, -5)


def test_naws_stops_after_dont() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, DO, NAWS))
    tc.data_to_send()
    assert tc.receive_data(cmd(IAC, DONT, NAWS)) == [OptionChanged(NAWS, True, False)]
    assert tc.data_to_send() == cmd(IAC, WONT, NAWS)
    tc.resize(100, 40)
    assert tc.data_to_send() == b""


# ---------------------------------------------------------------- TTYPE, NEW-ENVIRON


def test_ttype_answered_only_when_enabled() -> None:
    tc = TelnetClient("xterm-256color", None, 80, 24)
    tc.receive_data(sb(TTYPE, bytes((SEND,))))
    assert tc.data_to_send() == b""
    tc.receive_data(cmd(IAC, DO, TTYPE) + sb(TTYPE, bytes((SEND,))))
    assert tc.data_to_send() == cmd(IAC, WILL, TTYPE) + sb(TTYPE, b"\x00xterm-256color")
    # Asked again (RFC 1091 cycling): the same type again means "end of list".
    tc.receive_data(sb(TTYPE, bytes((SEND,))))
    assert tc.data_to_send() == sb(TTYPE, b"\x00xterm-256color")
    # TTYPE IS from the server is not a request.
    tc.receive_data(sb(TTYPE, bytes((IS,)) + b"vt100"))
    assert tc.data_to_send() == b""


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        (b"", b"\x00USER\x01guest"),
        (b"\x00", b"\x00USER\x01guest"),
        (b"\x00USER", b"\x00USER\x01guest"),
        (b"\x00USER\x00USER", b"\x00USER\x01guest"),
        (b"\x00DISPLAY\x00USER", b"\x00DISPLAY\x00USER\x01guest"),
        (b"\x03", b""),
        (b"\x03FOO", b"\x03FOO"),
        (b"\x03USER", b"\x03USER"),  # a USERVAR named USER is not the VAR
        (b"\x00US\x02\x01ER", b"\x00US\x02\x01ER"),  # escaped name: not USER, undefined
    ],
)
def test_new_environ_send(request_: bytes, reply: bytes) -> None:
    tc = client()
    tc.receive_data(cmd(IAC, DO, NEW_ENVIRON))
    assert tc.data_to_send() == cmd(IAC, WILL, NEW_ENVIRON)
    tc.receive_data(sb(NEW_ENVIRON, bytes((SEND,)) + request_))
    assert tc.data_to_send() == sb(NEW_ENVIRON, bytes((IS,)) + reply)


def test_new_environ_without_username_and_with_odd_bytes() -> None:
    tc = client(username=None)
    tc.receive_data(cmd(IAC, DO, NEW_ENVIRON) + sb(NEW_ENVIRON, b"\x01"))
    assert tc.data_to_send() == cmd(IAC, WILL, NEW_ENVIRON) + sb(NEW_ENVIRON, b"\x00")
    # Control bytes in the value are ESC-prefixed, 0xFF doubled by the SB framing.
    tc = client(username="a\x01b\xff")
    tc.receive_data(cmd(IAC, DO, NEW_ENVIRON) + sb(NEW_ENVIRON, b"\x01"))
    value = "a\x01b\xff".encode()  # U+00FF is c3 bf in UTF-8: no IAC byte
    escaped = value.replace(b"\x01", b"\x02\x01")
    assert tc.data_to_send() == cmd(IAC, WILL, NEW_ENVIRON) + sb(
        NEW_ENVIRON, b"\x00\x00USER\x01" + escaped
    )
    assert sb(NEW_ENVIRON, b"\xff") == cmd(IAC, SB, NEW_ENVIRON, IAC, IAC, IAC, SE)


# ------------------------------------------------------------ refusals and no loops


def test_unknown_options_refused_once_per_request() -> None:
    tc = client()
    assert tc.receive_data(cmd(IAC, WILL, 200, IAC, DO, 201, IAC, DO, ECHO)) == []
    assert tc.data_to_send() == cmd(IAC, DONT, 200, IAC, WONT, 201, IAC, WONT, ECHO)
    # Their acknowledgements (WONT/DONT for a disabled option) get no answer.
    assert tc.receive_data(cmd(IAC, WONT, 200, IAC, DONT, 201, IAC, DONT, ECHO)) == []
    assert tc.data_to_send() == b""


def test_acknowledgements_do_not_loop() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, WILL, SGA, IAC, DO, SGA, IAC, WILL, ECHO))
    assert tc.data_to_send() == cmd(IAC, DO, SGA, IAC, WILL, SGA, IAC, DO, ECHO)
    # A server repeating itself (or acking our ack) gets silence, not another round.
    for _ in range(3):
        assert tc.receive_data(cmd(IAC, WILL, SGA, IAC, DO, SGA, IAC, WILL, ECHO)) == []
        assert tc.data_to_send() == b""
    # Disabling: one answer, then silence.
    assert tc.receive_data(cmd(IAC, WONT, ECHO)) == [OptionChanged(ECHO, False, False)]
    assert tc.data_to_send() == cmd(IAC, DONT, ECHO)
    assert tc.receive_data(cmd(IAC, WONT, ECHO)) == []
    assert tc.data_to_send() == b""


def test_two_clients_talking_to_each_other_settle() -> None:
    """Our own core on both ends (one side's output is the other's input) must go quiet."""
    a, b = client(), client()
    a.request(SGA, local=True)
    a.request(SGA, local=False)
    a.request(NAWS, local=True)
    b.request(SGA, local=True)
    b.request(NAWS, local=False)  # b wants a to send NAWS while a offers it
    rounds = 0
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        b.receive_data(out_a)
        a.receive_data(out_b)
        rounds += 1
        assert rounds < 10
    assert a.local_enabled(SGA) and a.remote_enabled(SGA) and a.local_enabled(NAWS)
    assert b.remote_enabled(SGA)


def test_q_method_requests() -> None:
    tc = client()
    # We ask; the server agrees: no further reply.
    tc.request(SGA, local=False)
    assert tc.data_to_send() == cmd(IAC, DO, SGA)
    assert not tc.remote_enabled(SGA)
    assert tc.receive_data(cmd(IAC, WILL, SGA)) == [OptionChanged(SGA, False, True)]
    assert tc.data_to_send() == b""
    tc.request(SGA, local=False)  # already on: nothing
    assert tc.data_to_send() == b""
    # We ask; the server refuses: no reply, stays off.
    tc.request(ECHO, local=False)
    assert tc.receive_data(cmd(IAC, WONT, ECHO)) == []
    assert tc.data_to_send() == cmd(IAC, DO, ECHO)
    assert not tc.remote_enabled(ECHO)
    # Both sides ask for NAWS at once: one WILL, one NAWS report, no echo of DO.
    tc.request(NAWS, local=True)
    assert tc.data_to_send() == cmd(IAC, WILL, NAWS)
    assert tc.receive_data(cmd(IAC, DO, NAWS)) == [OptionChanged(NAWS, True, True)]
    assert tc.data_to_send() == cmd(IAC, SB, NAWS, 0, 80, 0, 24, IAC, SE)
    # We switch SGA off: DONT, the server's WONT completes it silently.
    tc.request(SGA, local=False, enable=False)
    assert tc.data_to_send() == cmd(IAC, DONT, SGA)
    assert not tc.remote_enabled(SGA)
    assert tc.receive_data(cmd(IAC, WONT, SGA)) == []
    assert tc.data_to_send() == b""


def test_q_method_queued_opposite() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, WILL, SGA))
    tc.data_to_send()
    tc.request(SGA, local=False, enable=False)  # YES -> WANTNO, DONT sent
    tc.request(SGA, local=False)  # changes our mind while waiting: queued
    assert tc.data_to_send() == cmd(IAC, DONT, SGA)
    # The WONT arrives: the queued request now goes out as DO.
    assert tc.receive_data(cmd(IAC, WONT, SGA)) == []
    assert tc.data_to_send() == cmd(IAC, DO, SGA)
    assert tc.receive_data(cmd(IAC, WILL, SGA)) == [OptionChanged(SGA, False, True)]
    assert tc.data_to_send() == b""
    # WANTYES with a queued "no": the WILL is answered by DONT.
    tc2 = client()
    tc2.request(ECHO, local=False)
    tc2.request(ECHO, local=False, enable=False)
    assert tc2.data_to_send() == cmd(IAC, DO, ECHO)
    assert tc2.receive_data(cmd(IAC, WILL, ECHO)) == []
    assert tc2.data_to_send() == cmd(IAC, DONT, ECHO)
    assert tc2.receive_data(cmd(IAC, WONT, ECHO)) == []
    assert tc2.data_to_send() == b""
    assert not tc2.remote_enabled(ECHO)


# ------------------------------------------------------------- broken subnegotiation


def test_unterminated_sb_is_dropped_and_the_command_is_read() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, DO, TTYPE))
    tc.data_to_send()
    events = tc.receive_data(cmd(IAC, SB, TTYPE, SEND, IAC, WILL, ECHO) + b"ok")
    assert events == [OptionChanged(ECHO, False, True), Data(b"ok")]
    assert tc.data_to_send() == cmd(IAC, DO, ECHO)  # no TTYPE answer for the broken SB


def test_oversized_sb_is_dropped_and_parsing_resumes() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, DO, TTYPE))
    tc.data_to_send()
    huge = cmd(IAC, SB, TTYPE, SEND) + b"x" * 100_000 + cmd(IAC, SE)
    events = tc.receive_data(huge[:50_000]) + tc.receive_data(huge[50_000:] + b"after")
    assert events == [Data(b"after")]
    assert tc.data_to_send() == b""
    tc.receive_data(sb(TTYPE, bytes((SEND,))))
    assert tc.data_to_send() == sb(TTYPE, b"\x00linux")


def test_escaped_iac_inside_sb_and_empty_sb() -> None:
    tc = client()
    tc.receive_data(cmd(IAC, DO, NEW_ENVIRON))
    tc.data_to_send()
    # A requested name containing 0xFF arrives as IAC IAC; it is echoed back, escaped.
    tc.receive_data(sb(NEW_ENVIRON, b"\x01\x03A\xffB"))
    assert tc.data_to_send() == sb(NEW_ENVIRON, b"\x00\x03A\xffB")
    assert tc.receive_data(cmd(IAC, SB, IAC, SE) + b"x") == [Data(b"x")]


def test_send_command() -> None:
    tc = client()
    tc.send_command(AYT)
    assert tc.data_to_send() == cmd(IAC, AYT)
