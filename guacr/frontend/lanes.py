"""Two lanes for the terminal sessions of one event loop: echoes first, bulk bounded.

A worker's loop serves many terminals. A key echo is a few bytes after quiet that a
user waits for; a ``cat`` of a big file is megabytes nobody reads line by line. Drawn
first-come first-served, an echo waits behind every other session's feed slices and
big frames, and bulk output keeps the whole process runnable, so under CPU contention
the kernel makes everyone on the worker wait for it (issue 16: with 10 of 200 sessions
running ``cat``, typing p99 rose 1.8x). So, per loop:

* **Echo lane**: a session whose output is an echo (see ``TerminalSession._queue``)
  is *urgent* until its frame is written -- or until more than an echo's bytes follow
  (a command's output: bulk from then on); bulk work steps aside while any session is
  urgent (for at most :data:`URGENT_WAIT`, so bulk output always progresses).
* **Bulk lane**: feeding big output and drawing its frames (a full-screen frame costs
  10-30 ms, most of it composing and encoding in a thread) is charged to a token
  bucket that refills at a *share* of the loop's time; while *another* session of the
  loop has typed within :data:`INTERACTIVE`, bulk work in debt waits until the debt is
  paid. A frame is charged its estimated cost as it starts (:meth:`Lanes.frame_started`)
  and corrected when done: charged only when done, every bulk session waiting
  meanwhile started one too, and ten ``cat`` sessions starting at once encoded ten
  full screens together (typing p99 150-300 ms for the first 0.3 s). The bucket is
  the loop's, not a session's: bulk sessions that waited for the same debt check it
  again when they wake, so the first one's work sends the others back to wait instead
  of all of them going at once; and so that bulk output always progresses, one piece
  of it may go in debt every :data:`MAX_WAIT` -- one for the loop, not one per session
  (with 10 ``cat`` sessions on 2 workers, per-session turns used 5x the share). Debt
  run up while nobody else typed is forgiven. A session alone (``seq`` on one
  terminal) is never held back, and neither is a session whose own user is the only
  one typing.
* **The share** adapts to contention, like TCP's congestion window: it starts at
  :data:`BULK_SHARE_MIN` (and starts there again after :data:`RESTART` without bulk
  work), halves when the kernel kept the worker waiting for a CPU
  (``/proc/self/schedstat``) for more than :data:`CONTENDED` of a :data:`WINDOW`, and
  else grows by a quarter per window (up to :data:`BULK_SHARE_MAX`: from the minimum in
  ~0.8 s). On a machine short of CPU, bulk output then slows down -- its sshd waits
  for window space and stops competing too -- rather than every typist of the worker
  waiting for it; bulk output that begins on a busy machine does not first take
  :data:`BULK_SHARE_MAX` of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from typing import Final

WINDOW: Final = 0.05  # how often the share is adapted (s)
BULK_SHARE_MAX: Final = 0.3  # share of the loop's time bulk work may use while others type
# ... and while the worker is short of CPU. At 3%, 10 `cat` sessions among 200 typists
# still raised the typists' p99 1.6x (5.5 vs 3.4 ms); at 1%, 1.2x (3.8 vs 3.1 ms), their
# output drawn at a third of the rate meanwhile (bench_load --busy 10, A/B, 3 rounds).
BULK_SHARE_MIN: Final = 0.01
CONTENDED: Final = 0.1  # run-queue wait per window above which the share halves
MAX_WAIT: Final = 0.5  # bulk work in debt: one piece of it goes this often (s)
DEBT_MAX: Final = 2.0  # debt beyond this many seconds of paying off is forgiven
SCHEDSTAT: Final = "/proc/self/schedstat"  # run time, run-queue wait (ns), timeslices
RESTART: Final = 1.0  # bulk work after this long without any starts from the minimum share
FRAME_COST: Final = 0.01  # a bulk frame's cost until one was measured (s)
INTERACTIVE: Final = 1.0  # a session that typed this recently is interactive
URGENT_WAIT: Final = 0.05  # longest bulk work steps aside for pending echoes

_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Lanes] = weakref.WeakKeyDictionary()


def lanes() -> Lanes:
    """The lanes of the running loop (one per worker)."""
    loop = asyncio.get_running_loop()
    found = _lanes.get(loop)
    if found is None:
        found = _lanes[loop] = Lanes()
    return found


class Lanes:
    """Echo priority and the bulk budget of one event loop's terminal sessions."""

    __slots__ = (
        "_debt",
        "_forced",
        "_frame_cost",
        "_paid",
        "_queued",
        "_share",
        "_typed",
        "_urgent",
        "_waiters",
        "_window",
    )

    def __init__(self) -> None:
        self._urgent: set[int] = set()  # ids of sessions with an echo not yet drawn
        self._waiters: deque[asyncio.Future[None]] = deque()  # bulk work stepping aside
        self._debt = 0.0  # bulk seconds charged and not yet paid off
        self._paid = 0.0  # when the debt was last paid down (monotonic)
        self._forced = 0.0  # when bulk work last went in debt (monotonic)
        self._share = BULK_SHARE_MIN  # slow start (see _adapt)
        self._frame_cost = FRAME_COST  # estimated cost of a bulk frame (s)
        self._window = 0.0  # start of the current adaptation window (monotonic)
        self._queued = _run_queue_wait()  # at the start of the window
        # The two most recent typists (time, session id), distinct sessions: enough to
        # tell whether someone *other* than a given session typed lately.
        self._typed: list[tuple[float, int]] = [(-INTERACTIVE, 0), (-INTERACTIVE, 0)]

    # Echo lane --------------------------------------------------------------------
    @property
    def urgent(self) -> int:
        """Sessions with an echo waiting to be drawn."""
        return len(self._urgent)

    def mark_urgent(self, session: int) -> None:
        """``session`` has an echo to draw: bulk work steps aside until it is written."""
        self._urgent.add(session)

    def drawn(self, session: int) -> None:
        """``session`` wrote its frame (or closed): it no longer holds bulk work back."""
        urgent = self._urgent
        if session in urgent:
            urgent.discard(session)
            if not urgent:
                self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    # Bulk lane --------------------------------------------------------------------
    def typed(self, session: int, now: float) -> None:
        """A user of ``session`` gave input (``now``: time.monotonic)."""
        first = self._typed[0]
        if first[1] != session:
            self._typed[1] = first
        self._typed[0] = (now, session)

    def others_typing(self, session: int, now: float) -> bool:
        """Whether a session other than ``session`` typed within INTERACTIVE."""
        (t0, s0), (t1, _) = self._typed
        if s0 != session:
            return now - t0 < INTERACTIVE
        return now - t1 < INTERACTIVE

    def charge(self, seconds: float) -> None:
        """Bulk work took ``seconds`` of the loop."""
        self._debt += seconds

    @property
    def share(self) -> float:
        """The share of a window bulk work may use now."""
        return self._share

    def _budget_wait(self, session: int, now: float) -> float:
        """Seconds bulk work of ``session`` must wait for the budget (0: go)."""
        if now - self._window >= WINDOW:
            self._adapt(now)
        share = self._share
        # Paid off at the share of the time passed; credit up to one window's worth.
        debt = self._debt - share * (now - self._paid)
        self._debt = min(share * DEBT_MAX, max(-share * WINDOW, debt))
        self._paid = now
        if self._debt <= 0:
            return 0.0
        if not self.others_typing(session, now):
            self._debt = 0.0  # bulk work while nobody else typed is not held against it
            return 0.0
        return min(self._debt / share, MAX_WAIT)

    def _adapt(self, now: float) -> None:
        """Halve the share if the worker waited for a CPU in the last window, else grow it;
        after RESTART without bulk work, start again from the minimum."""
        queued = _run_queue_wait()
        elapsed = now - self._window
        if elapsed >= RESTART:
            self._share = BULK_SHARE_MIN
        elif queued is not None and self._queued is not None and elapsed < 4 * WINDOW:
            if queued - self._queued > CONTENDED * elapsed:
                self._share = max(BULK_SHARE_MIN, self._share / 2)
            else:
                self._share = min(BULK_SHARE_MAX, self._share * 1.25)
        self._window, self._queued = now, queued

    def frame_started(self) -> float:
        """A bulk frame starts: its estimated cost is charged now, before its images
        encode in a thread (charged only when done, every bulk session waiting meanwhile
        would start one too). Returns the estimate, for :meth:`frame_done`."""
        estimate = self._frame_cost
        self._debt += estimate
        return estimate

    def frame_done(self, estimate: float, cost: float) -> None:
        """The bulk frame charged ``estimate`` in advance took ``cost`` seconds."""
        self._debt += cost - estimate
        self._frame_cost = (self._frame_cost + cost) / 2

    async def bulk_turn(self, session: int, wake: asyncio.Event | None = None) -> None:
        """Yield the loop once, then wait while echoes are pending (bounded) and while
        the bulk budget is spent. Call before each piece of bulk work. Setting ``wake``
        ends the wait for the budget at once (the session's user typed: see
        TerminalSession's drain)."""
        await asyncio.sleep(0)
        if self._urgent:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters
            while waiters and waiters[0].done():
                waiters.popleft()  # timed out earlier
            waiters.append(fut)
            timer = loop.call_later(URGENT_WAIT, _resolve, fut)
            try:
                await fut
            finally:
                timer.cancel()
        # Look again after each wait: other bulk work may have run up the debt meanwhile.
        start = time.monotonic()
        while True:
            if wake is not None and wake.is_set():
                return
            now = time.monotonic()
            wait = self._budget_wait(session, now)
            if wait <= 0:
                return
            turn = max(start, self._forced) + MAX_WAIT  # this session's next chance
            if now >= turn:
                self._forced = now  # goes in debt; the next one waits MAX_WAIT more
                return
            if wake is None:
                await asyncio.sleep(min(wait, turn - now))
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), min(wait, turn - now))


def _run_queue_wait() -> float | None:
    """Seconds this thread has waited for a CPU while runnable (None: not on Linux)."""
    try:
        with open(SCHEDSTAT, "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
