"""TerminalSession with the real emulator and view, but a fake connection (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import pytest
from ssh.fakes import FakeConn, FakeUser
from ssh.term_screen import Display, TextReader

from guacr.protocol.parser import Parser
from guacr.frontend import lanes as lanes_mod
from guacr.frontend import session as session_mod
from guacr.frontend.session import TerminalConfig, TerminalSession, Typescript

RETURN = 0xFF0D


class Host:
    """What the handler would be: collects input for the host, tracks flow control."""

    def __init__(self) -> None:
        self.input = bytearray()
        self.paused = 0
        self.resumed = 0
        self.sizes: list[tuple[int, int]] = []


async def make_session(conn: FakeConn | None = None, **cfg: object) -> tuple[TerminalSession, Host]:
    conn = conn or FakeConn()
    host = Host()
    s = TerminalSession(
        conn,  # type: ignore[arg-type]
        TerminalConfig(**cfg),  # type: ignore[arg-type]
        send_input=host.input.extend,
        on_resize=lambda c, r: host.sizes.append((c, r)),
        pause_reading=lambda: setattr(host, "paused", host.paused + 1),
        resume_reading=lambda: setattr(host, "resumed", host.resumed + 1),
    )
    await s.start()
    return s, host


def screen_text(conn: FakeConn) -> list[str]:
    d = Display()
    d.feed_all(conn.instructions())
    return TextReader().screen(d)


async def settle(s: TerminalSession) -> None:
    await s.drain()
    await asyncio.sleep(0.06)


async def test_output_is_drawn_and_frames_end_with_sync() -> None:
    s, _ = await make_session()
    try:
        s.write_output(b"hello \x1b[1mworld\x1b[0m\r\n$ ")
        await settle(s)
        assert screen_text(s.conn)[:2] == ["hello world", "$"]  # type: ignore[arg-type]
        assert s.conn.broadcasts[-1].endswith(b"4.sync,1.0,1.0;")
    finally:
        await s.close()


async def test_echo_after_quiet_is_flushed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The coalescing waits are stretched to half a second, so "drawn at once" and "drawn
    # after a coalescing wait" differ by far more than a loaded machine's jitter.
    monkeypatch.setattr(session_mod, "FRAME_MAX", 0.5)
    monkeypatch.setattr(session_mod, "FRAME_GAP", 0.5)
    s, _ = await make_session()
    conn: FakeConn = s.conn  # type: ignore[assignment]
    try:
        await asyncio.sleep(0.6)  # longer than FRAME_MAX: the terminal is quiet
        before = len(conn.frames)
        t0 = time.monotonic()
        s.write_output(b"x")
        while len(conn.frames) == before and time.monotonic() - t0 < 2:
            await asyncio.sleep(0.001)
        assert len(conn.frames) > before
        assert conn.frames[before][0] - t0 < 0.25  # no coalescing wait after quiet
    finally:
        await s.close()


async def test_streaming_output_is_coalesced_into_40ms_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """guacd's pacing: a frame collects output for up to FRAME_MAX while more keeps
    arriving within FRAME_GAP. Both are stretched (x7.5, x15), so writes 5 ms apart
    still count as "streaming" on a loaded machine whose sleeps overshoot by 100 ms."""
    monkeypatch.setattr(session_mod, "FRAME_MAX", 0.3)
    monkeypatch.setattr(session_mod, "FRAME_GAP", 0.15)
    s, _ = await make_session()
    conn: FakeConn = s.conn  # type: ignore[assignment]
    try:
        await asyncio.sleep(0.05)
        start = len(conn.frames)
        t0 = time.monotonic()
        i = gaps = 0
        last = t0
        while time.monotonic() - t0 < 1.2:  # writes 5 ms apart for 4 x FRAME_MAX
            now = time.monotonic()
            # a sleep that overran FRAME_GAP (a stalled loop) rightly ends a frame
            gaps += now - last > 0.15
            last = now
            s.write_output(b"line %d\r\n" % i)
            i += 1
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - t0
        frames = len(conn.frames) - start
        # at most one frame per FRAME_MAX (+1 for the first, immediate one, +1 for a
        # start-up frame, +1 per stall); without coalescing every write (>100) is a frame
        assert 2 <= frames <= elapsed / 0.3 + 2 + gaps, (frames, elapsed, i, gaps)
    finally:
        await s.close()


async def test_idle_terminal_syncs_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "IDLE_SYNC", 0.05)
    s, _ = await make_session()
    try:
        deadline = time.monotonic() + 10  # 0.15 s unloaded; a loaded loop runs late
        while len(s.conn.frames) < 3 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        assert len(s.conn.frames) >= 3  # type: ignore[attr-defined]
    finally:
        await s.close()


async def test_flow_control_pauses_and_resumes_reading() -> None:
    s, host = await make_session()
    try:
        chunk = b"0123456789" * 100 + b"\r\n"
        for _ in range(400):  # ~400 KB queued before the pump can run
            s.write_output(chunk)
        assert host.paused == 1 and s.backlog > session_mod.BACKLOG_HIGH
        await s.drain(10)
        assert s.backlog == 0 and host.resumed == 1
    finally:
        await s.close()


async def test_answerbacks_go_to_the_host() -> None:
    s, host = await make_session()
    try:
        s.write_output(b"\x1b[6n")  # cursor position report
        await settle(s)
        assert bytes(host.input) == b"\x1b[1;1R"
    finally:
        await s.close()


async def test_keys_become_bytes_and_resize_reaches_the_host() -> None:
    s, host = await make_session()
    user = s.conn.owner  # type: ignore[attr-defined]
    try:
        for keysym in (ord("l"), ord("s"), RETURN, 0xFF52):  # l s Return Up
            s.key(user, keysym, True)
            s.key(user, keysym, False)
        assert bytes(host.input) == b"ls\r\x1b[A"
        s.resize(user, 1024, 768)
        assert host.sizes[-1] == (99, 39)
        assert (s.term.cols, s.term.rows) == (99, 39)
    finally:
        await s.close()


async def test_selection_double_click_copies_the_word_to_every_user() -> None:
    owner, other = FakeUser(), FakeUser(owner=False)
    s, _ = await make_session(FakeConn(owner, other))
    try:
        s.write_output(b"first line\r\nhello wonderful world\r\n")
        await settle(s)
        cw, ch, m = s.view.fonts.cell_width, s.view.fonts.cell_height, s.view.margin
        x, y = m + cw * 8 + 2, m + ch * 1 + 5  # on "wonderful"
        for _ in range(2):
            s.mouse(owner, x, y, 1)  # type: ignore[arg-type]
            s.mouse(owner, x, y, 0)  # type: ignore[arg-type]
        for u in (owner, other):
            ins = u.instructions()
            assert any(i[0] == "clipboard" and i[2] == "text/plain" for i in ins)
            blob = [i for i in ins if i[0] == "blob"][-1]
            assert base64.b64decode(blob[2]) == b"wonderful"
        # drag from "first" down to "hello": two rows, joined by a newline
        s.mouse(owner, m + 1, m + 2, 1)  # type: ignore[arg-type]
        s.mouse(owner, m + cw * 4 + 2, m + ch + 2, 1)  # type: ignore[arg-type]
        s.mouse(owner, m + cw * 4 + 2, m + ch + 2, 0)  # type: ignore[arg-type]
        assert s.selection_text() == "first line\nhello"
        triple = m + ch * 1 + 3
        for _ in range(3):
            s.mouse(owner, m + 5, triple, 1)  # type: ignore[arg-type]
            s.mouse(owner, m + 5, triple, 0)  # type: ignore[arg-type]
        assert s.selection_text() == "hello wonderful world"
    finally:
        await s.close()


async def test_disable_copy_sends_no_clipboard() -> None:
    s, _ = await make_session(disable_copy=True)
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.write_output(b"secret\r\n")
        await settle(s)
        m = s.view.margin
        for _ in range(2):
            s.mouse(owner, m + 3, m + 3, 1)
            s.mouse(owner, m + 3, m + 3, 0)
        assert s.selection_text() == "secret"
        assert not any(i[0] == "clipboard" for i in owner.instructions())
    finally:
        await s.close()


async def test_paste_is_normalised_and_bracketed_when_the_app_asks() -> None:
    s, host = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.set_clipboard(owner, "text/plain", b"echo a\r\necho b\n")
        s.mouse(owner, 20, 20, 4)
        s.mouse(owner, 20, 20, 0)  # right button release pastes
        assert bytes(host.input) == b"echo a\recho b\r"
        host.input.clear()
        s.write_output(b"\x1b[?2004h")
        await settle(s)
        s.paste()
        assert bytes(host.input) == b"\x1b[200~echo a\recho b\r\x1b[201~"
    finally:
        await s.close()


async def test_disable_paste_ignores_client_clipboard() -> None:
    s, host = await make_session(disable_paste=True)
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.set_clipboard(owner, "text/plain", b"rm -rf ~\n")
        s.paste()
        assert bytes(host.input) == b""
    finally:
        await s.close()


async def test_wheel_scrolls_back_three_rows_with_a_copy() -> None:
    s, _ = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.write_output(b"".join(b"%d\r\n" % i for i in range(100)))
        await settle(s)
        mark = len(s.conn.broadcasts)  # type: ignore[attr-defined]
        s.mouse(owner, 50, 50, 8)
        s.mouse(owner, 50, 50, 0)
        await settle(s)
        ins = Parser().receive_data(b"".join(s.conn.broadcasts[mark:]))  # type: ignore[attr-defined]
        ch = s.view.fonts.cell_height
        assert any(i[0] == "copy" and i[1] == "1" and i[9] == str(3 * ch) for i in ins), ins
        rows = s.term.rows
        text = screen_text(s.conn)  # type: ignore[arg-type]
        assert text[0] == str(100 - rows + 1 - 3)  # three older lines now on top
        s.key(owner, ord("a"), True)  # typing returns to the bottom
        await settle(s)
        assert screen_text(s.conn)[0] == str(100 - rows + 1)  # type: ignore[arg-type]
    finally:
        await s.close()


async def test_mouse_goes_to_the_app_when_it_tracks_the_mouse() -> None:
    s, host = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.write_output(b"\x1b[?1000h\x1b[?1006h")
        await settle(s)
        m, cw, ch = s.view.margin, s.view.fonts.cell_width, s.view.fonts.cell_height
        s.mouse(owner, m + cw * 4 + 1, m + ch * 2 + 1, 1)
        s.mouse(owner, m + cw * 4 + 1, m + ch * 2 + 1, 0)
        assert bytes(host.input) == b"\x1b[<0;5;3M\x1b[<0;5;3m"
    finally:
        await s.close()


async def test_prompt_reads_a_line_without_echo() -> None:
    s, host = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        task = asyncio.ensure_future(s.prompt("Password: ", echo=False))
        await asyncio.sleep(0)
        for keysym in (ord("s"), ord("x"), 0xFF08, ord("e"), ord("c"), RETURN):
            s.key(owner, keysym, True)
            s.key(owner, keysym, False)
        assert await asyncio.wait_for(task, 1) == "sec"
        await settle(s)
        assert screen_text(s.conn)[0] == "Password:"  # type: ignore[arg-type]
        assert bytes(host.input) == b""  # nothing typed reached the host
    finally:
        await s.close()


async def test_title_becomes_name_and_argv_updates_are_echoed() -> None:
    owner, other = FakeUser(), FakeUser(owner=False)
    s, host = await make_session(FakeConn(owner, other))
    try:
        s.user_joined(owner)  # type: ignore[arg-type]
        names = [i[3] for i in owner.instructions() if i[0] == "argv"]
        assert names == ["color-scheme", "font-name", "font-size"]
        s.write_output(b"\x1b]0;my title\x07")
        await settle(s)
        assert ("name", "my title") in s.conn.instructions()  # type: ignore[attr-defined]
        s.argv(owner, "font-size", "14")  # type: ignore[arg-type]
        for _ in range(50):
            await asyncio.sleep(0.02)
            if host.sizes:
                break
        assert s.view.fonts.pixels == 19 and host.sizes  # 14 pt at 96 dpi, grid changed
        assert ("argv", "0", "text/plain", "font-size") in other.instructions()
    finally:
        await s.close()


def test_typescript_files_follow_scriptreplay_format(tmp_path: Path) -> None:
    ts = Typescript.create(str(tmp_path / "ts"), "session", create_path=True)
    ts.write(b"hello ")
    ts.flush()
    ts.write(b"world\r\n")
    ts.close()
    data = (tmp_path / "ts" / "session").read_bytes()
    assert data == b"[BEGIN TYPESCRIPT]\nhello world\r\n\n[END TYPESCRIPT]\n"
    timing = (tmp_path / "ts" / "session.timing").read_text().splitlines()
    assert [int(line.split()[1]) for line in timing] == [6, 7]
    assert all(float(line.split()[0]) >= 0 for line in timing)
    assert oct(os.stat(tmp_path / "ts").st_mode & 0o777) == "0o700"
    # a second recording with the same name gets a suffix
    again = Typescript.create(str(tmp_path / "ts"), "session")
    again.close()
    assert again.path.endswith("session.1")
    assert (tmp_path / "ts" / "session.1.timing").exists()


async def test_pointer_is_an_ibar_over_text_and_an_arrow_over_the_scrollbar() -> None:
    s, _ = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        await settle(s)
        s.mouse(owner, 100, 100, 0)
        await settle(s)
        cursors = [i for i in s.conn.instructions() if i[0] == "cursor"]  # type: ignore[attr-defined]
        assert cursors[-1][1:3] == ("3", "8") and cursors[-1][6:] == ("7", "16")  # I-beam
        s.mouse(owner, s.view.width - 5, 100, 0)
        await settle(s)
        cursors = [i for i in s.conn.instructions() if i[0] == "cursor"]  # type: ignore[attr-defined]
        assert cursors[-1][6:] == ("11", "18")  # arrow
    finally:
        await s.close()


async def test_dragging_the_scrollbar_to_the_top_shows_the_oldest_history() -> None:
    s, _ = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.write_output(b"".join(b"L%d\r\n" % i for i in range(60)))
        await settle(s)
        x = s.view.width - 8
        s.mouse(owner, x, s.view.height // 2, 1)
        s.mouse(owner, x, 0, 1)  # drag the handle to the top
        s.mouse(owner, x, 0, 0)
        await settle(s)
        assert screen_text(s.conn)[0] == "L0"  # type: ignore[arg-type]
    finally:
        await s.close()


async def test_color_scheme_update_repaints_everything() -> None:
    s, _ = await make_session()
    owner = s.conn.owner  # type: ignore[attr-defined]
    try:
        s.write_output(b"some text\r\n")
        await settle(s)
        mark = len(s.conn.broadcasts)  # type: ignore[attr-defined]
        s.argv(owner, "color-scheme", "black-white")
        await settle(s)
        ins = Parser().receive_data(b"".join(s.conn.broadcasts[mark:]))  # type: ignore[attr-defined]
        assert ("cfill", "14", "0", "255", "255", "255", "255") in ins  # margins now white
        d = Display()
        d.feed_all(s.conn.instructions())  # type: ignore[attr-defined]
        assert d.layer(1).convert("RGB").getpixel((1, 1)) == (255, 255, 255)
        assert TextReader().screen(d)[0] == "some text"
    finally:
        await s.close()


async def test_echo_is_drawn_before_a_flooding_neighbour_feeds_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: on one worker loop, an echo must not wait behind another session's bulk
    # work. The flooding session feeds in slices, yielding between them; once the echo
    # is queued, no slice may run until the echo's frame is written.
    monkeypatch.setattr(lanes_mod, "URGENT_WAIT", 60.0)  # bounded only by the echo
    flood, _ = await make_session()
    typist, _ = await make_session()
    typist_conn: FakeConn = typist.conn  # type: ignore[assignment]
    try:
        await asyncio.sleep(0.1)  # both quiet
        for _ in range(100):  # 2.4 MB: many slices of bulk work
            flood.write_output(b"0123456789abcdefghijklm\r\n" * 1000)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert flood.backlog > 0
        seen: list[int] = []
        end_frame = typist_conn.end_frame

        def record(frames: int = 0, extra: bytes = b"") -> None:
            seen.append(flood.backlog)
            end_frame(frames, extra)

        monkeypatch.setattr(typist_conn, "end_frame", record)
        typist.key(typist_conn.owner, ord("x"), True)  # type: ignore[arg-type]
        before = flood.backlog
        typist.write_output(b"x")  # its echo
        for _ in range(400):
            if seen:
                break
            await asyncio.sleep(0.005)
        assert seen and seen[0] == before  # drawn with no flood slice in between
    finally:
        await flood.close()
        await typist.close()


async def _quiet_session(monkeypatch: pytest.MonkeyPatch) -> tuple[TerminalSession, FakeConn]:
    s, _ = await make_session()
    s.write_output(b"$ ")
    await settle(s)
    await asyncio.sleep(session_mod.FRAME_MAX)  # quiet: the next output is drawn at once
    return s, s.conn  # type: ignore[return-value]


async def test_echo_is_drawn_on_arrival_without_a_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: the echo's frame is written inside write_output (the SSH channel's
    # data_received), not after other sessions' work of the loop iteration.
    s, conn = await _quiet_session(monkeypatch)
    try:
        before = len(conn.frames)
        s.write_output(b"x")
        assert len(conn.frames) == before + 1  # no await in between
        assert screen_text(conn)[0] == "$ x"
        s.write_output(b"\x08\x1b[K")  # BackSpace's echo: also at once
        assert len(conn.frames) == before + 2
        assert screen_text(conn)[0] == "$"
    finally:
        await s.close()


@pytest.mark.parametrize(
    "echo",
    [
        b"\xc3\xa9",  # a character new to the session: fallback fonts are looked up first
        b"\x1b]0;a title\x07\r\n" * 30,  # scrolling (and a title): left to the pump
    ],
)
async def test_an_echo_that_must_wait_is_left_to_the_pump(
    monkeypatch: pytest.MonkeyPatch, echo: bytes
) -> None:
    s, conn = await _quiet_session(monkeypatch)
    try:
        before = len(conn.frames)
        s.write_output(echo)
        assert len(conn.frames) == before  # not drawn here ...
        await settle(s)
        assert len(conn.frames) > before  # ... but by the pump, completely
        if b"title" in echo:
            assert screen_text(conn)[0] == ""  # the prompt scrolled away: the scroll drawn

            assert b"4.name,7.a title;" in b"".join(conn.broadcasts)
        else:
            assert screen_text(conn)[0] not in ("$", "")  # a glyph after the prompt
    finally:
        await s.close()


async def test_echoes_drawn_on_arrival_spare_the_idle_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pump's idle wait runs on while echoes are drawn on arrival; its sync is only
    # for a terminal that has been idle, as before.
    monkeypatch.setattr(session_mod, "IDLE_SYNC", 0.3)
    s, conn = await _quiet_session(monkeypatch)
    try:
        await asyncio.sleep(0.35)
        start = len(conn.frames)
        for i in range(30):  # 30 keys, 50 ms apart: never idle for IDLE_SYNC / 2
            s.key(conn.owner, ord("x"), True)  # type: ignore[arg-type]
            s.write_output(b"x" if i % 2 == 0 else b"\x08\x1b[K")
            await asyncio.sleep(0.05)
        idle_syncs = [extra for _, extra in conn.frames[start:] if extra == b""]
        assert len(conn.frames) - start >= 30
        assert not idle_syncs
    finally:
        await s.close()


async def test_an_echo_followed_by_more_output_is_no_longer_urgent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: Return after `cat big-file` echoes "\r\n" and then the file follows. It
    # was urgent (uncharged, other sessions' bulk work stepping aside for it) until its
    # first frame -- a full screen encoded while the machine was busiest.
    s, conn = await _quiet_session(monkeypatch)
    lane = lanes_mod.lanes()
    try:
        s.key(conn.owner, RETURN, True)  # type: ignore[arg-type]
        s.write_output(b"\xc3\xa9")  # an echo left to the pump (a new glyph)
        assert lane.urgent == 1
        s.write_output(b"0123456789abcdefghijklm\r\n" * 40)  # a command's output
        assert lane.urgent == 0
        await settle(s)
        assert screen_text(conn)[-2].startswith("0123456789abcdefghijklm")
    finally:
        await s.close()


async def test_a_bulk_frame_takes_its_turn_and_is_charged_as_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: a frame's images encode in a thread; the budget must see its cost
    # before the next bulk session looks, and the frame must wait for its turn.
    s, conn = await _quiet_session(monkeypatch)
    calls: list[str] = []
    real_turn, real_start = lanes_mod.Lanes.bulk_turn, lanes_mod.Lanes.frame_started

    async def turn(self: lanes_mod.Lanes, session: int, wake: asyncio.Event | None = None) -> None:
        calls.append("turn")
        await real_turn(self, session, wake)

    def started(self: lanes_mod.Lanes) -> float:
        calls.append("frame")
        return real_start(self)

    monkeypatch.setattr(lanes_mod.Lanes, "bulk_turn", turn)
    monkeypatch.setattr(lanes_mod.Lanes, "frame_started", started)
    try:
        s.write_output(b"0123456789abcdefghijklm\r\n" * 400)  # 10 KB: bulk
        await settle(s)
        assert "frame" in calls
        i = calls.index("frame")
        assert calls[i - 1] == "turn"  # the turn just before the frame, after feeding
    finally:
        await s.close()


async def test_a_key_in_a_flooding_session_drains_its_backlog_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 16: Ctrl-C on a `cat` while others type on the worker: the output already
    # buffered (backlog, SSH window, pty) was fed at the bulk share, and the prompt came
    # back 4-5 s later. A key typed in the session now lets it feed what is pending
    # without turns, drawing only when it is done.
    # bulk turns a minute apart: the pump waits in one when the key comes, and only the
    # key can end that wait
    monkeypatch.setattr(lanes_mod, "BULK_SHARE_MIN", 1e-4)
    monkeypatch.setattr(lanes_mod, "BULK_SHARE_MAX", 1e-4)
    monkeypatch.setattr(lanes_mod, "MAX_WAIT", 60.0)
    s, conn = await _quiet_session(monkeypatch)
    lane = lanes_mod.lanes()
    other = object()
    keep_typing = True

    async def typist() -> None:
        while keep_typing:
            lane.typed(id(other), time.monotonic())
            await asyncio.sleep(0.05)

    neighbour = asyncio.ensure_future(typist())
    try:
        await asyncio.sleep(0.06)
        for i in range(40):  # ~1 MB of a command's output
            lines = (b"line %07d of the flood\r\n" % (i * 1000 + k) for k in range(1000))
            s.write_output(b"".join(lines))
        await asyncio.sleep(0.3)
        assert s.backlog > 500_000  # held back: others are typing
        frames = len(conn.frames)
        s.key(conn.owner, 0x63, True)  # type: ignore[arg-type]  # (the interrupt)
        s.write_output(b"^C\r\n$ ")
        started = time.monotonic()
        while s.backlog and time.monotonic() - started < 2.0:
            await asyncio.sleep(0.01)
        assert s.backlog == 0, "the backlog still waits for bulk turns"
        await settle(s)
        assert time.monotonic() - started < 1.0
        assert screen_text(conn)[-1] == "$"
        assert len(conn.frames) - frames <= 3  # fed through, not drawn frame by frame
        # typing on into a flood within DRAIN_EVERY does not unthrottle it (past what
        # is left of the first drain: DRAIN_MORE)
        for i in range(80):  # ~2 MB
            lines = (b"more %07d of the flood\r\n" % (i * 1000 + k) for k in range(1000))
            s.write_output(b"".join(lines))
        s.key(conn.owner, 0x63, True)  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        assert s.backlog > 200_000
    finally:
        keep_typing = False
        await neighbour
        await s.close()
