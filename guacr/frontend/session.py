"""The terminal session shared by the SSH, Telnet and database handlers.

A :class:`TerminalSession` owns one emulator (:class:`guacr.terminal.Terminal`) and one
:class:`~guacr.render.terminal_view.TerminalView`, and turns everything a Guacamole
user does with a terminal into bytes for the host, and host output into frames:

* **Frames are paced like guacd's**: output is collected while it keeps arriving
  within 10 ms, for at most 40 ms, then drawn and ended with ``sync``; an idle
  terminal still sends ``sync`` once a second. Exceptions for latency: output after
  40 ms of quiet, and small output (<= 512 bytes) within 100 ms of a user's input (a
  key echo), are drawn as soon as they have been read, without the 10 ms wait.
* **Echoes first among the worker's sessions** (:mod:`guacr.frontend.lanes`): such an
  echo makes other sessions' bulk work (feed slices, big frames) step aside until it
  is written, and bulk work is held to a share of the loop while other sessions type.
* **Flow control**: host output waits in a bounded backlog; above
  :data:`BACKLOG_HIGH` bytes the handler is asked to stop reading from the host, and
  to resume below :data:`BACKLOG_LOW`. The emulator is fed in slices so other
  connections of the worker keep running.
* Scrollback view (wheel: 3 rows, Shift+PgUp/PgDn, scrollbar drag), selection (drag,
  double-click word, triple-click line, Shift+click extends, Alt+drag rectangle) copied
  to every user's clipboard, paste (right/middle click, Ctrl+Shift+V) with bracketed
  paste, mouse reports when the application enabled tracking, live ``argv`` updates of
  ``color-scheme``/``font-name``/``font-size``, window title as ``name``, typescript
  recording in ``scriptreplay`` format, and in-terminal prompts for credentials.
* guacd's output pipe: after ``ESC ] 482202 ; name BEL`` host output goes to a
  ``pipe`` stream named ``name`` for every user instead of the display, until
  ``ESC ] 482203 ; BEL`` (see :class:`OutputRouter`); OSC 482204 sets the scrollback.
* Characters the font lacks (CJK, symbols) are drawn from a fallback font, looked up
  off the loop before the frame that first shows them (``FontSet.prepare``).

The session never talks to the host itself: the handler passes ``send_input`` (bytes
for the host), and optionally ``on_resize`` (new PTY size), ``pause_reading`` /
``resume_reading`` (flow control) and ``on_osc`` (other OSCs, e.g. guacd's 482200
download and 482201 upload directory). Glue for a handler (see
``guacr.handlers.ssh.handler`` for a complete one)::

    ARGV = frozenset(ARGV_NAMES)                       # class attribute
    self.clipboard_limit = clipboard_limit(params)     # read by the core
    #                                          (guacr.services.clipboard)
    self.session = TerminalSession(conn, TerminalConfig.from_params(params),
                                   send_input=..., on_resize=..., ...)
    # run():   await self.session.start(); [await self.session.prompt("Login as: ")]
    #          host output -> self.session.write_output(data); at the end drain()
    # close(): await self.session.close()
    # hooks:   user_joined/user_left -> same names; on_key -> key; on_mouse -> mouse;
    #          on_size -> resize; on_clipboard -> set_clipboard; on_argv -> argv
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from guacr.frontend.cells import CellKeys, pack
from guacr.frontend.config import ARGV_NAMES, TerminalConfig, normalize_newlines
from guacr.frontend.lanes import Lanes, lanes
from guacr.frontend.pipes import (
    OSC_PIPE_CLOSE,
    OSC_PIPE_OPEN,
    PIPE_OPEN,
    TO_PIPE,
    TO_TERM,
    OutputPipe,
    OutputRouter,
    Route,
    StdinPipe,
)
from guacr.frontend.prompt import LinePrompt
from guacr.frontend.selection import Point, Selector, word_bounds
from guacr.frontend.typescript import Typescript
from guacr.protocol import builders as b
from guacr.render.glyphs import (
    CellKey,
    FontSet,
    font_pixels,
    get_fontset,
)
from guacr.render.terminal_view import Cursor, Pointer, TerminalView
from guacr.services.clipboard import Clipboard, clipboard_limit
from guacr.terminal import (
    MAX_COLS,
    MAX_ROWS,
    KeyAction,
    KeyEncoder,
    MouseMode,
    MouseReporter,
    OscEvent,
    Palette,
    Terminal,
    encode_paste,
    parse_color_scheme,
)
from guacr.terminal.mouse import MOD_ALT, MOD_CTRL, MOD_SHIFT

if TYPE_CHECKING:
    from guacr.contract.peers import Connection, User

log = logging.getLogger(__name__)

FRAME_MAX: Final = 0.040  # guacd: a frame collects output for at most 40 ms ...
FRAME_GAP: Final = 0.010  # ... while new output keeps arriving within 10 ms
IDLE_SYNC: Final = 1.0  # an idle terminal still ends a frame once a second
FEED_SLICE: Final = 16384  # bytes fed to the emulator between yields to the loop
BACKLOG_HIGH: Final = 256 * 1024  # pause reading from the host above this ...
BACKLOG_LOW: Final = 64 * 1024  # ... and resume below this
TYPING_WINDOW: Final = 0.1  # output this soon after a user's input may be an echo ...
ECHO_BYTES: Final = 512  # ... if it is this small: drawn without the coalescing wait
ECHO_ROWS: Final = 2  # an echo changing at most this many rows is drawn on arrival
CONGESTED_WAIT: Final = 0.5  # longest a frame is held back for a congested client
# A key typed in a session with bulk output pending (Ctrl-C on a `cat`) lets it feed its
# backlog and up to DRAIN_MORE bytes after it (what the SSH window and the pty may still
# hold) without bulk turns, drawing when done: at the bulk share, while others typed on
# the worker, that took 4-5 s (issue 16). Once per DRAIN_EVERY, so that typing into a
# flood does not unthrottle it.
DRAIN_MORE: Final = 256 * 1024
DRAIN_EVERY: Final = 1.0
WHEEL_ROWS: Final = 3
OSC_SCROLLBACK: Final = 482204


@dataclass
class _Prompt:
    future: asyncio.Future[str]
    line: LinePrompt


class TerminalSession:
    """Emulator + view + user input handling for one terminal connection."""

    def __init__(
        self,
        conn: Connection,
        config: TerminalConfig,
        *,
        send_input: Callable[[bytes], None],
        on_resize: Callable[[int, int], None] | None = None,
        on_osc: Callable[[OscEvent], None] | None = None,
        pause_reading: Callable[[], None] | None = None,
        resume_reading: Callable[[], None] | None = None,
        strategy: str = "auto",
    ) -> None:
        self.conn = conn
        self.cfg = config
        self.log = conn.log
        self._send_input = send_input
        self.on_resize = on_resize
        self.on_osc = on_osc
        self.pause_reading = pause_reading
        self.resume_reading = resume_reading
        self._strategy = strategy
        self.keys = KeyEncoder(
            backspace=config.backspace,
            terminal_type=config.terminal_type,
            func_keys_and_keypad=config.func_keys_and_keypad or "esc",
        )
        self._reporter = MouseReporter()
        self.argv_values = {
            "color-scheme": config.color_scheme,
            "font-name": config.font_name,
            "font-size": str(config.font_size),
        }
        self.clipboard = Clipboard(conn, config.clipboard_limit, config.disable_copy)
        self.typescript: Typescript | None = None
        # created by start()
        self.term: Terminal
        self.view: TerminalView
        self.started = False
        self._pending_joins: list[User] = []
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # output
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._paused = False
        self._wake = _Wakeup()
        self._dirty = False
        self._flushed = asyncio.Event()
        self._last_flush = 0.0
        self._last_input = 0.0
        self._closed = False
        # echo first, bulk bounded, among the loop's sessions (guacr.frontend.lanes)
        self._lanes: Lanes | None = None
        self._urgent = False  # an echo is waiting to be drawn
        self._drain = 0  # bytes that may still be fed without bulk turns (DRAIN_MORE)
        self._draining = asyncio.Event()  # set while _drain: ends a wait for a bulk turn
        self._drained = -DRAIN_EVERY  # when the last drain was granted (monotonic)
        self._idle = False  # the pump waits for output (nothing fed or drawn under way)
        self._extra = b""  # instructions of a frame begun but left to the pump (a title)
        # guacd's output pipe (OSC 482202): a connection-level stream
        self._router = OutputRouter()
        self._pipe = OutputPipe(conn, self._router)
        # non-ASCII cell texts seen since the last frame: fonts may need a fallback
        # screen cache: CellKeys of the live screen rows and history lines shown
        self._live: list[list[CellKey]] = []
        self._history: dict[int, list[CellKey]] = {}
        self._cells = CellKeys()
        self._pushed = 0
        self._offset = 0  # rows scrolled back into history
        # mouse and selection
        self._mask = 0
        self._dragging_scrollbar = False
        self._sel = Selector()
        self._prompt: _Prompt | None = None

    # Lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Create emulator and view (font loading runs off the loop) and start drawing."""
        owner = self.conn.owner
        width, height, dpi = 1024, 768, 96
        if owner is not None:
            width = owner.info.width or width
            height = owner.info.height or height
            dpi = owner.info.dpi or dpi
        fonts = await self._load_font(self.cfg.font_name, self.cfg.font_size, dpi)
        palette = parse_color_scheme(self.cfg.color_scheme, self.log.logger)
        self.view = TerminalView(
            self.conn,
            fonts,
            width,
            height,
            dpi,
            pack(palette.background),
            strategy=self._strategy,  # type: ignore[arg-type]
        )
        self._update_webp()
        cols, rows = self.view.cols, self.view.rows
        self.term = Terminal(
            min(cols, MAX_COLS), min(rows, MAX_ROWS), self.cfg.scrollback, palette=palette
        )
        self._live = [self._row_keys(y) for y in range(self.term.rows)]
        if self.cfg.typescript_path:
            self._open_typescript()
        self._lanes = lanes()
        self.started = True
        self._task = asyncio.get_running_loop().create_task(self._pump())
        for user in self._pending_joins:
            self.user_joined(user)
        self._pending_joins.clear()

    async def _load_font(self, name: str, size: int, dpi: int) -> FontSet:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, get_fontset, name, font_pixels(size, dpi))

    def _open_typescript(self) -> None:
        assert self.cfg.typescript_path is not None
        try:
            self.typescript = Typescript.create(
                self.cfg.typescript_path,
                self.cfg.typescript_name,
                self.cfg.create_typescript_path,
                self.cfg.typescript_write_existing,
            )
            self.log.info("Typescript will be written to %s", self.typescript.path)
        except OSError as exc:
            self.log.error("Unable to create typescript: %s", exc)

    async def close(self) -> None:
        """Stop drawing; flush and close the typescript."""
        self._closed = True
        self._wake.set()
        self._drawn()
        self._pipe.close()
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        if self.typescript is not None:
            try:
                self.typescript.close()
            except OSError as exc:
                self.log.error("Unable to finish typescript: %s", exc)
            self.typescript = None
        if self.started:
            self.term.close()

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait until all host output so far has been drawn (e.g. before ending)."""
        deadline = time.monotonic() + timeout
        while (self._backlog or self._dirty) and self.started and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._flushed.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), left)

    # Host output ------------------------------------------------------------------
    def write_output(self, data: bytes) -> None:
        """Output from the host: recorded, then drawn with the next frame."""
        if not data or self._closed:
            return
        if self.typescript is not None:
            try:
                self.typescript.write(data)
            except OSError as exc:
                self.log.error("Typescript write failed, recording stopped: %s", exc)
                self.typescript = None
        self._queue(data)

    def write_local(self, data: bytes) -> None:
        """Text shown in the terminal that did not come from the host (prompts)."""
        if data and not self._closed:
            self._queue(data)

    def clear_screen(self) -> None:
        """Clear prompts from the screen, as guacd does once credentials are known."""
        self.write_local(b"\x1b[H\x1b[J")

    def _queue(self, data: bytes) -> None:
        echo = False
        if (
            not self._backlog
            and not self._dirty
            and len(data) <= ECHO_BYTES
            and self._lanes is not None
            and not self._urgent
        ):
            # A few bytes while the pump is idle: drawn at once if they follow input or
            # quiet (see _pump), and meanwhile other sessions' bulk work steps aside.
            now = time.monotonic()
            echo = now - self._last_input < TYPING_WINDOW or now - self._last_flush >= FRAME_MAX
        self._backlog.append(data)
        self._backlog_bytes += len(data)
        if echo:
            if self._idle and self._draw_echo():
                return
            self._urgent = True
            self._lanes.mark_urgent(id(self))  # type: ignore[union-attr]
        elif self._urgent and self._backlog_bytes > ECHO_BYTES:
            # More than an echo follows (a command's output): no longer urgent, it is
            # fed and drawn in the bulk lane like any big output.
            self._drawn()
        if self._backlog_bytes > BACKLOG_HIGH and not self._paused and self.pause_reading:
            self._paused = True
            self.pause_reading()
        self._wake.set()

    def _draw_echo(self) -> bool:
        """Draw the echo just queued here and now, while the pump is idle: no turn of
        the loop in between (other sessions' work of this loop iteration would come
        first) and no task switch. False, with the output fed and the frame left to
        the pump, when the frame needs to wait (fallback fonts, a joiner's replay,
        scrolling, images for the encoder threads)."""
        try:
            self._feed_slice()
            extra, rows = self._frame_rows()
            if not self._cells.new_texts:
                data = self.view.update_now(rows, self._cursor(), ECHO_ROWS)
                if data is not None:
                    self._frame_end(extra + data)
                    return True
            self._extra = extra
        except Exception:
            self.log.exception("Drawing an echo failed")
        self._dirty = True
        return False

    @property
    def backlog(self) -> int:
        """Bytes of host output not yet fed to the emulator."""
        return self._backlog_bytes

    def _feed_slice(self) -> int:
        """Feed up to FEED_SLICE bytes of backlog to the emulator; returns the count."""
        parts: list[bytes] = []
        size = 0
        backlog = self._backlog
        while backlog and size < FEED_SLICE:
            chunk = backlog.popleft()
            room = FEED_SLICE - size
            if len(chunk) > room:
                backlog.appendleft(chunk[room:])
                chunk = chunk[:room]
            parts.append(chunk)
            size += len(chunk)
        self._backlog_bytes -= size
        term = self.term
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        routes = self._router.feed(data)
        if len(routes) == 1 and routes[0].kind == TO_TERM:
            term.feed(data)
        else:
            self._route(routes)
        reply = term.output_to_host()
        if reply:
            self._send_input(reply)
        for event in term.take_osc():
            self._osc(event)
        self._dirty = True
        if self._paused and self._backlog_bytes < BACKLOG_LOW:
            self._paused = False
            if self.resume_reading:
                self.resume_reading()
        return size

    def _route(self, routes: list[Route]) -> None:
        """Host output with an output pipe involved (see :class:`OutputRouter`)."""
        term = self.term
        pending: list[bytes] = []  # emulator input: one feed per run of routes
        for r in routes:
            if r.kind == TO_TERM:
                pending.append(r.data)
            elif r.kind == TO_PIPE:
                self._pipe.write(r.data)
                if self._pipe.interpreted:
                    pending.append(r.data)  # drawn too, in order
            else:
                if pending:
                    term.feed(b"".join(pending))
                    pending.clear()
                if r.kind == PIPE_OPEN:
                    self._pipe.open(r.data.decode("utf-8", "replace"), r.flags)
                else:
                    self._pipe.close()
        if pending:
            term.feed(b"".join(pending))

    @property
    def pipe_name(self) -> str | None:
        """The name of the open output pipe, if any."""
        return self._pipe.name if self._pipe.stream is not None else None

    def _osc(self, event: OscEvent) -> None:
        if event.command in (OSC_PIPE_OPEN, OSC_PIPE_CLOSE):
            return  # handled by the router, where the output splits
        if event.command == OSC_SCROLLBACK:
            with contextlib.suppress(ValueError, MemoryError):
                self.term.set_scrollback_limit(int(event.data.strip() or "0"))
            return
        if self.on_osc is not None:
            try:
                self.on_osc(event)
            except Exception:
                self.log.exception("OSC handler failed")

    # Frames -----------------------------------------------------------------------
    async def _pump(self) -> None:
        """Feed output and draw frames with guacd's pacing (see module docstring); bulk
        output takes its turns in the loop's bulk lane (guacr.frontend.lanes)."""
        wake = self._wake
        assert self._lanes is not None
        lane, sid = self._lanes, id(self)
        while not self._closed:
            if not self._backlog and not self._dirty:
                wake.clear()
                self._idle = True
                try:
                    woke = await wake.wait(IDLE_SYNC)
                finally:
                    self._idle = False
                if not woke:
                    # (echoes drawn on arrival end frames too: no idle sync right after)
                    if time.monotonic() - self._last_flush >= IDLE_SYNC / 2:
                        self._typescript_flush()
                        self.conn.end_frame()
                    continue
            start = time.monotonic()
            # Draw at once (no 10 ms coalescing) after quiet, or for the few bytes a key
            # echo produces while a user types: waiting can't catch more data there.
            quiet = start - self._last_flush >= FRAME_MAX
            typing = start - self._last_input < TYPING_WINDOW
            fed = 0
            if not self._urgent and self._backlog_bytes > ECHO_BYTES:
                await lane.bulk_turn(sid, self._draining)
            while True:
                if self._backlog:
                    t = time.monotonic()
                    n = self._feed_slice()
                    fed += n
                    if self._drain:
                        self._drain = max(0, self._drain - n)
                        if not self._drain:
                            self._draining.clear()
                    now = time.monotonic()
                    if not self._urgent:
                        lane.charge(now - t)
                    if self._backlog:
                        if self._drain:  # fed through (echoes first), one frame when done
                            await lane.bulk_turn(sid, self._draining)
                            continue
                        if now - start >= FRAME_MAX and not self.conn.congested:
                            break
                        if now - start >= CONGESTED_WAIT:
                            break
                        await lane.bulk_turn(sid, self._draining)
                        continue
                if quiet or self._urgent or (typing and fed <= ECHO_BYTES):
                    break
                remaining = FRAME_MAX - (time.monotonic() - start)
                if remaining <= 0:
                    break
                wake.clear()
                if not await wake.wait(min(FRAME_GAP, remaining)):
                    break
            if self._urgent:
                await self._flush()
            elif fed > ECHO_BYTES:
                # A bulk frame: its turn, charged as it starts (see Lanes.frame_started).
                await lane.bulk_turn(sid, self._draining)
                estimate = lane.frame_started()
                lane.frame_done(estimate, await self._flush())
            else:
                lane.charge(await self._flush())

    async def _flush(self) -> float:
        """Draw what changed and end the frame; returns its CPU cost in seconds (the
        waits for fonts and encoder threads left out)."""
        started = time.monotonic()
        extra, rows = self._frame_rows()
        cost = time.monotonic() - started
        if self._cells.new_texts:
            await self._prepare_glyphs()
        data = await self.view.update(rows, self._cursor())
        cost += self.view.last_cost
        started = time.monotonic()
        self._frame_end(extra + data)
        return cost + time.monotonic() - started

    def _frame_rows(self) -> tuple[bytes, list[list[CellKey]]]:
        """Take the emulator's damage into the screen cache: the rows to show, and
        instructions to send with the frame (a new title)."""
        term = self.term
        damage = term.take_damage()
        self._dirty = False
        extra, self._extra = self._extra, b""
        if damage.title is not None:
            extra = b.name(damage.title)
        pushed = term.scrollback_pushed
        if self._offset:
            self._offset = min(self._offset + pushed - self._pushed, term.scrollback_len)
        self._pushed = pushed
        if damage.full or len(self._live) != term.rows:
            self._cells.forget_colours()
            self._live = [self._row_keys(y) for y in range(term.rows)]
        else:
            live = self._live
            for s in damage.scrolls:
                top, bottom, n = s.top, s.bottom, s.lines
                if n > 0:
                    live[top:bottom] = live[top + n : bottom] + live[top : top + n]
                elif n < 0:
                    live[top:bottom] = live[bottom + n : bottom] + live[top : bottom + n]
                if not self._offset:
                    self.view.scroll(top, bottom, n)
            for y in damage.rows:
                live[y] = self._row_keys(y)
        bg = pack(term.palette.background)
        if bg != self.view.background:
            self.view.set_background(bg)
        self.view.set_scrollbar(term.scrollback_len, self._offset)
        if self._pipe.autoflush:
            self._pipe.flush()
        return extra, self._visible_rows()

    def _frame_end(self, data: bytes) -> None:
        """Send a frame's instructions and end it."""
        self._typescript_flush()
        self._last_flush = time.monotonic()
        self.conn.end_frame(extra=data)
        self._drawn()
        self._flushed.set()

    def _drawn(self) -> None:
        """A pending echo was written (or the session closed): bulk work may go on."""
        if self._urgent:
            self._urgent = False
            if self._lanes is not None:
                self._lanes.drawn(id(self))

    async def _prepare_glyphs(self) -> None:
        """Let the font find fallback fonts for new characters, off the loop (fontconfig
        tools and font files): once per character and font."""
        texts = self._cells.take_new_texts()
        fonts = self.view.fonts
        todo = [t for t in texts if fonts.needs_lookup(t)]
        if todo:
            await asyncio.get_running_loop().run_in_executor(None, fonts.prepare, todo)

    def _typescript_flush(self) -> None:
        if self.typescript is not None:
            try:
                self.typescript.flush()
            except OSError as exc:
                self.log.error("Typescript write failed, recording stopped: %s", exc)
                self.typescript = None

    def _request_frame(self) -> None:
        """Something other than host output changed the picture (scroll, selection)."""
        self._dirty = True
        self._wake.set()

    # Screen content -------------------------------------------------------------------
    def _row_keys(self, y: int) -> list[CellKey]:
        """The view's cell keys for emulator row ``y`` (negative: history)."""
        return self._cells.row(self.term, y)

    def _visible_rows(self) -> list[list[CellKey]]:
        """What the display shows: live rows, or history when scrolled back; selection."""
        term = self.term
        rows = term.rows
        offset = self._offset
        sel = self._sel.selection
        if not offset and sel is None:
            self._history.clear()
            return self._live
        out: list[list[CellKey]] = []
        base = self._pushed
        wanted: dict[int, list[CellKey]] = {}
        for i in range(rows):
            emu = i - offset
            if emu >= 0:
                row = self._live[emu]
            else:
                line = base + emu
                row = self._history.get(line) or self._row_keys(emu)
                wanted[line] = row
            if sel is not None:
                span = sel.columns(base + emu, term.cols)
                if span is not None:
                    row = self._cells.highlight(row, *span)
            out.append(row)
        self._history = wanted
        return out

    def _cursor(self) -> Cursor:
        c = self.term.cursor
        return Cursor(c.row + self._offset, c.col, c.visible)

    # Users ------------------------------------------------------------------------
    def user_joined(self, user: User) -> None:
        """The owner gets the live parameters; joiners get the current screen."""
        if not self.started:
            self._pending_joins.append(user)
            return
        self._update_webp()
        self._pipe.announce(user)
        if user.owner:
            for name in ARGV_NAMES:
                user.send(_argv_stream(user, name, self.argv_values[name]))
            return
        self._spawn(self._replay(user))

    def user_left(self, user: User) -> None:
        """Re-evaluate what every remaining user supports."""
        if self.started:
            self._update_webp()

    def _update_webp(self) -> None:
        users = self.conn.users
        self.view.webp = bool(users) and all(u.info.supports_webp for u in users)

    async def _replay(self, user: User) -> None:
        data = await self.view.full_state()
        title = self.term.title
        user.send(data + (b.name(title) if title else b""))
        self.conn.end_frame()  # a client shows nothing before the next sync

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Input: keys -----------------------------------------------------------------------
    def key(self, user: User, keysym: int, pressed: bool) -> None:
        """A key event: bytes for the host, or a local action (paste, scroll)."""
        if not self.started:
            return
        term = self.term
        # The modes only shape what a press sends (two emulator calls spared per release).
        res = self.keys.key(
            keysym,
            pressed,
            application_cursor=pressed and term.application_cursor_keys,
            application_keypad=pressed and term.application_keypad,
        )
        if self._prompt is not None:
            if res.action is KeyAction.INPUT:
                self._prompt_input(res.data)
            elif res.action is KeyAction.PASTE and not self.cfg.disable_paste:
                self._prompt_input(self.clipboard.data.split(b"\n")[0].split(b"\r")[0])
            return
        if res.action is KeyAction.INPUT:
            if res.data:
                self._scroll_to(0)
                self.send_input(res.data)
        elif res.action is KeyAction.PASTE:
            self.paste()
        elif res.action is KeyAction.SCROLL_PAGE_UP:
            self._scroll_to(self._offset + term.rows)
        elif res.action is KeyAction.SCROLL_PAGE_DOWN:
            self._scroll_to(self._offset - term.rows)

    def send_input(self, data: bytes) -> None:
        """Bytes typed by a user, for the host."""
        if data:
            now = self._last_input = time.monotonic()
            if self._lanes is not None:
                self._lanes.typed(id(self), now)
            if self._backlog_bytes > ECHO_BYTES and now - self._drained >= DRAIN_EVERY:
                self._drain, self._drained = self._backlog_bytes + DRAIN_MORE, now
                self._draining.set()
            self._send_input(data)

    # Input: prompt -----------------------------------------------------------------------
    async def prompt(self, text: str, echo: bool = True) -> str:
        """Ask the user for a line of text inside the terminal (guacd's credential prompt)."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._prompt = _Prompt(fut, LinePrompt(echo))
        self.write_local(text.encode())
        try:
            return await fut
        finally:
            self._prompt = None

    def _prompt_input(self, data: bytes) -> None:
        p = self._prompt
        if p is None or p.future.done():
            return
        self.write_local(p.line.feed(data))
        if p.line.done:
            p.future.set_result(p.line.text)

    # Input: mouse ----------------------------------------------------------------------
    def mouse(self, user: User, x: int, y: int, mask: int) -> None:
        """Pointer events: scrollbar, wheel, selection, paste, or reports to the app."""
        if not self.started:
            return
        prev, self._mask = self._mask, mask
        pressed, released = mask & ~prev, prev & ~mask
        view, term = self.view, self.term
        if self._dragging_scrollbar:
            if mask & 1:
                self._scroll_to(view.scrollbar_offset(y, term.scrollback_len))
            else:
                self._dragging_scrollbar = False
            return
        tracking = term.mouse_mode is not MouseMode.NONE and not self.keys.shift
        if pressed & 1 and view.on_scrollbar(x) and term.scrollback_len and not tracking:
            self._dragging_scrollbar = True
            self._scroll_to(view.scrollbar_offset(y, term.scrollback_len))
            return
        pointer: Pointer = "arrow" if view.on_scrollbar(x) else "ibar"
        if pointer != view.pointer:
            view.set_pointer(pointer)
            self._request_frame()
        row, col = view.cell_at(x, y)
        col = min(col, term.cols - 1)
        if tracking:
            mods = (
                (MOD_SHIFT if self.keys.shift else 0)
                | (MOD_ALT if self.keys.alt else 0)
                | (MOD_CTRL if self.keys.ctrl else 0)
            )
            data = self._reporter.update(
                col,
                row - self._offset,
                mask,
                mode=term.mouse_mode,
                encoding=term.mouse_encoding,
                modifiers=mods,
            )
            if data and row >= self._offset:
                self.send_input(data)
            return
        if pressed & 8:
            self._scroll_to(self._offset + WHEEL_ROWS)
        if pressed & 16:
            self._scroll_to(self._offset - WHEEL_ROWS)
        point = (self._pushed + row - self._offset, col)
        if pressed & 1:
            self._select_press(point)
        elif mask & 1 and self._sel.selecting:
            self._select_drag(point)
        if released & 1 and self._sel.selecting:
            self._select_release()
        if released & (2 | 4):
            self.paste()

    def _scroll_to(self, offset: int) -> None:
        if offset <= 0 and not self._offset:
            return  # at the bottom already (every key press asks)
        offset = max(0, min(offset, self.term.scrollback_len if self.started else 0))
        if offset != self._offset:
            self.view.scroll(0, self.term.rows, self._offset - offset)
            self._offset = offset
            self._request_frame()

    # Selection ---------------------------------------------------------------------------
    def _select_press(self, point: Point) -> None:
        shift, cols = self.keys.shift, self.term.cols
        if self._sel.press(point, time.monotonic(), shift=shift, cols=cols, word=self._word_at):
            self._request_frame()

    def _select_drag(self, point: Point) -> None:
        if self._sel.drag(point, alt=self.keys.alt):
            self._request_frame()

    def _select_release(self) -> None:
        if self._sel.release() is None:
            return
        text = self.selection_text()
        if text and not self.cfg.disable_copy:
            self.copy_to_clipboard(text)

    def _word_at(self, point: Point) -> tuple[int, int]:
        line, col = point
        emu = line - self._pushed
        if not -self.term.scrollback_len <= emu < self.term.rows:
            return col, col
        return word_bounds(self.term.row_cells(emu), col)

    def selection_text(self) -> str:
        """The selected text (rows joined with newlines except where soft-wrapped)."""
        sel = self._sel.selection
        if sel is None or not self.started:
            return ""
        (l0, c0), (l1, c1) = sel.bounds()
        base, term = self._pushed, self.term
        r0, r1 = max(l0 - base, -term.scrollback_len), min(l1 - base, term.rows - 1)
        if r0 > r1:
            return ""
        if sel.block:
            return term.text_block((r0, c0), (r1, c1))
        return term.text_range((r0, c0), (r1, c1 + 1))

    def clear_selection(self) -> None:
        """Remove the selection highlight."""
        if self._sel.clear():
            self._request_frame()

    # Clipboard ---------------------------------------------------------------------------
    def copy_to_clipboard(self, text: str) -> None:
        """Make ``text`` the connection's clipboard and send it to every user."""
        self.clipboard.copy(text.encode("utf-8"))

    def set_clipboard(self, user: User, mimetype: str, data: bytes) -> None:
        """A client's clipboard arrived (``disable-paste`` ignores it)."""
        if not self.cfg.disable_paste:
            self.clipboard.receive(user, mimetype, data)

    def paste(self) -> None:
        """Type the connection clipboard into the session (unless ``disable-paste``)."""
        if self.cfg.disable_paste or not self.clipboard.data or not self.started:
            return
        if self._prompt is not None:
            self._prompt_input(self.clipboard.data.split(b"\n")[0].split(b"\r")[0])
            return
        self._scroll_to(0)
        data = normalize_newlines(self.clipboard.data)
        self.send_input(encode_paste(data, self.term.bracketed_paste))

    # Size and live parameters --------------------------------------------------------
    def resize(self, user: User, width: int, height: int) -> None:
        """A client's display changed size: new grid, PTY resized by the handler."""
        if not self.started or width <= 0 or height <= 0:
            return
        cols, rows = self.view.resize(width, height)
        self._apply_grid(cols, rows)

    def _apply_grid(self, cols: int, rows: int) -> None:
        cols, rows = min(cols, MAX_COLS), min(rows, MAX_ROWS)
        term = self.term
        self._offset = 0
        self._sel.clear()
        if (cols, rows) != (term.cols, term.rows):
            term.resize(cols, rows)
            if self.on_resize is not None:
                self.on_resize(cols, rows)
        term.invalidate()
        self._request_frame()

    def argv(self, user: User, name: str, value: str) -> None:
        """A live parameter update (color-scheme, font-name, font-size), echoed to all."""
        if name not in ARGV_NAMES or not self.started:
            return
        if name == "color-scheme":
            self._set_palette(parse_color_scheme(value, self.log.logger))
        elif name == "font-size":
            try:
                size = int(value)
            except ValueError:
                return
            if size <= 0:
                return
            self.cfg.font_size = size
            self._spawn(self._change_font())
        else:
            self.cfg.font_name = value or "monospace"
            self._spawn(self._change_font())
        self.argv_values[name] = value
        for u in list(self.conn.users):
            u.send(_argv_stream(u, name, value))

    def _set_palette(self, new: Palette) -> None:
        # The emulator offers no palette setter yet: update its palette in place.
        current = self.term.palette
        current.foreground = new.foreground
        current.background = new.background
        current.colors[:] = new.colors
        self._cells.forget_colours()
        self.term.invalidate()
        self._request_frame()

    async def _change_font(self) -> None:
        fonts = await self._load_font(self.cfg.font_name, self.cfg.font_size, self.view.dpi)
        if fonts is self.view.fonts or self._closed:
            return
        async with self.view.lock:
            cols, rows = self.view.set_font(fonts)
        self._cells.clear()  # every text is seen anew: the new font may lack others
        self._apply_grid(cols, rows)


class _Wakeup:
    """A flag the pump can wait on with a timeout, without a task per wait.

    (``asyncio.wait_for`` on an ``Event`` creates a task per call and, on Python 3.11,
    can swallow a cancellation that races with the event being set.)
    """

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[bool] | None = None

    def set(self) -> None:
        self._flag = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(True)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float) -> bool:
        """True once set, False after ``timeout`` seconds."""
        if self._flag:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiter = fut
        timer = loop.call_later(timeout, _resolve, fut, False)
        try:
            return await fut
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


def _argv_stream(user: User, name: str, value: str) -> bytes:
    """An ``argv`` stream carrying one parameter value (text/plain)."""
    stream = user.alloc_stream()
    data = value.encode("utf-8")
    out = b.argv(stream, "text/plain", name)
    if data:
        out += b"".join(b.blobs(stream, data))
    out += b.end(stream)
    user.free_stream(stream)
    return out


__all__ = [
    "ARGV_NAMES",
    "StdinPipe",
    "TerminalConfig",
    "TerminalSession",
    "Typescript",
    "clipboard_limit",
    "normalize_newlines",
]
