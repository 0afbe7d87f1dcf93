"""The echo and bulk lanes of one event loop (guacr.frontend.lanes).

No wall-clock upper bounds: a loaded machine only makes waits longer, so what must not
wait is shown by the task being done after the loop turned, and what must wait by a
lower bound or by the task still pending."""

from __future__ import annotations

import asyncio
import time

import pytest

from guacr.frontend import lanes as lanes_mod
from guacr.frontend.lanes import Lanes, lanes

ME, OTHER = 1, 2


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_one_lanes_object_per_loop() -> None:
    assert lanes() is lanes()


async def test_bulk_goes_on_when_no_echo_is_pending() -> None:
    lane = Lanes()
    task = asyncio.ensure_future(lane.bulk_turn(ME))
    await _turns()
    assert task.done()


async def test_bulk_steps_aside_until_the_pending_echo_is_drawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lanes_mod, "URGENT_WAIT", 60.0)
    lane = Lanes()
    lane.mark_urgent(OTHER)
    task = asyncio.ensure_future(lane.bulk_turn(ME))
    await _turns()
    assert not task.done()  # held back while OTHER's echo waits
    lane.drawn(OTHER)
    await asyncio.wait_for(task, 10)
    assert lane.urgent == 0


async def test_bulk_waits_for_every_pending_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_mod, "URGENT_WAIT", 60.0)
    lane = Lanes()
    lane.mark_urgent(OTHER)
    lane.mark_urgent(3)
    task = asyncio.ensure_future(lane.bulk_turn(ME))
    lane.drawn(OTHER)
    await _turns()
    assert not task.done()
    lane.drawn(3)
    await asyncio.wait_for(task, 10)


async def test_bulk_is_held_back_for_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_mod, "URGENT_WAIT", 0.05)
    lane = Lanes()
    lane.mark_urgent(OTHER)  # never drawn (say, a session stuck in its encoder)
    t0 = time.monotonic()
    await asyncio.wait_for(lane.bulk_turn(ME), 10)
    assert time.monotonic() - t0 >= 0.04


def test_budget_applies_only_while_another_session_types() -> None:
    lane = Lanes()
    now = 100.0
    lane._budget_wait(ME, now)
    lane.charge(lane.share * lanes_mod.WINDOW + 0.01)  # the credit, then 10 ms of debt
    assert lane._budget_wait(ME, now) == 0.0  # nobody typed: no limit
    lane.typed(ME, now)
    lane.charge(0.01)
    assert lane._budget_wait(ME, now) == 0.0  # only its own user typed
    lane.typed(OTHER, now)
    share = lane.share
    debt = share * lanes_mod.MAX_WAIT / 2  # paid off in less than MAX_WAIT
    lane.charge(debt)
    assert lane._budget_wait(ME, now) == pytest.approx(debt / share)  # until paid off
    assert lane._budget_wait(OTHER, now) > 0  # ME typed before OTHER: limited too
    assert lane._budget_wait(ME, now + 1.1 * debt / share) == 0.0  # paid off


def test_debt_and_wait_are_bounded() -> None:
    lane = Lanes()
    now = 100.0
    lane._budget_wait(ME, now)
    lane.typed(OTHER, now)
    lane.charge(60.0)  # a minute of bulk work while another session types
    assert lane._budget_wait(ME, now) == pytest.approx(lanes_mod.MAX_WAIT)
    assert lane._budget_wait(ME, now + lanes_mod.DEBT_MAX) == 0.0  # the rest forgiven


def test_debt_run_up_while_nobody_else_typed_is_forgiven() -> None:
    lane = Lanes()
    now = 100.0
    lane._budget_wait(ME, now)
    lane.charge(60.0)  # a minute of bulk work while nobody else typed
    assert lane._budget_wait(ME, now) == 0.0
    lane.typed(OTHER, now)  # then someone types: that minute is not held against it
    assert lane._budget_wait(ME, now) == 0.0


async def test_bulk_sessions_waiting_for_one_debt_do_not_all_go_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first to wake does its work (and charges it); the others look again and
    wait for that, instead of every waiter going after the same wait."""
    monkeypatch.setattr(lanes_mod, "MAX_WAIT", 600.0)
    monkeypatch.setattr(lanes_mod, "DEBT_MAX", 600.0)
    monkeypatch.setattr(lanes_mod, "_run_queue_wait", lambda: None)  # share stays put
    lane = Lanes()
    lane.typed(OTHER, time.monotonic())
    await lane.bulk_turn(ME)
    lane.charge(0.1 * lane.share)  # paid off in 0.1 s
    done: list[int] = []

    async def work(session: int) -> None:
        await lane.bulk_turn(session)
        lane.charge(300 * lane.share)  # its piece of bulk work: 300 s to pay off
        done.append(session)

    tasks = [asyncio.ensure_future(work(s)) for s in (ME, 3, 4)]
    try:
        await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0.5)  # the others woke too, and went back to wait
        assert len(done) == 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_bulk_in_debt_goes_once_per_max_wait_for_the_whole_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bulk output always progresses, but debt that is never paid off lets one piece
    of bulk work go per MAX_WAIT -- not one per waiting session."""
    monkeypatch.setattr(lanes_mod, "MAX_WAIT", 0.2)
    monkeypatch.setattr(lanes_mod, "DEBT_MAX", 600.0)
    monkeypatch.setattr(lanes_mod, "_run_queue_wait", lambda: None)  # share stays put
    lane = Lanes()
    lane.typed(OTHER, time.monotonic())
    await lane.bulk_turn(ME)
    lane.charge(300 * lane.share)  # 300 s to pay off
    done: list[int] = []

    async def work(session: int) -> None:
        await lane.bulk_turn(session)
        done.append(session)

    tasks = [asyncio.ensure_future(work(s)) for s in (ME, 3, 4)]
    try:
        await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        await _turns()
        assert len(done) == 1  # the others' chances come later, one at a time
        await asyncio.wait_for(asyncio.gather(*tasks), 30)  # but they do come
        assert sorted(done) == [ME, 3, 4]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_typing_is_forgotten_after_the_interactive_period() -> None:
    lane = Lanes()
    lane.typed(OTHER, 10.0)
    lane.typed(ME, 10.5)
    assert lane.others_typing(ME, 10.6)
    assert not lane.others_typing(ME, 10.0 + lanes_mod.INTERACTIVE + 0.01)
    assert lane.others_typing(OTHER, 10.6)


async def test_bulk_in_debt_waits_while_another_session_types() -> None:
    lane = Lanes()
    lane.typed(OTHER, time.monotonic())
    await lane.bulk_turn(ME)
    lane.charge(0.3 * lane.share)  # paid off in 0.3 s
    t0 = time.monotonic()
    await asyncio.wait_for(lane.bulk_turn(ME), 10)
    assert time.monotonic() - t0 >= 0.2


def test_share_starts_low_grows_halves_under_contention_and_grows_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued = [0.0]
    monkeypatch.setattr(lanes_mod, "_run_queue_wait", lambda: queued[0])
    lane = Lanes()
    w = lanes_mod.WINDOW * 1.01  # (exactly WINDOW apart may round to just under it)
    now = 1000.0
    lane._budget_wait(ME, now)  # first window (no history to judge)
    assert lane.share == lanes_mod.BULK_SHARE_MIN  # slow start
    for _ in range(16):  # ~0.8 s without waiting for a CPU
        now += w
        lane._budget_wait(ME, now)
    assert lane.share == lanes_mod.BULK_SHARE_MAX
    for _ in range(20):  # every window, waited half of it for a CPU
        queued[0] += w / 2
        now += w
        lane._budget_wait(ME, now)
    assert lane.share == lanes_mod.BULK_SHARE_MIN
    for _ in range(40):  # no waiting any more
        now += w
        lane._budget_wait(ME, now)
    assert lane.share == lanes_mod.BULK_SHARE_MAX


def test_bulk_work_after_a_pause_starts_again_from_the_minimum_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16: ten ``cat`` commands starting after quiet got the share earned by the
    last bulk work (or the maximum) at once, on a machine already busy with typing."""
    monkeypatch.setattr(lanes_mod, "_run_queue_wait", lambda: 0.0)  # never contended
    lane = Lanes()
    now = 1000.0
    for _ in range(40):
        now += lanes_mod.WINDOW * 1.01
        lane._budget_wait(ME, now)
    assert lane.share == lanes_mod.BULK_SHARE_MAX
    now += lanes_mod.RESTART  # no bulk work for a while
    lane._budget_wait(ME, now)
    assert lane.share == lanes_mod.BULK_SHARE_MIN


def test_a_bulk_frame_is_charged_as_it_starts_and_corrected_when_done() -> None:
    """Its images encode in a thread while the loop runs on: charged only when done,
    every other bulk session would find the budget unspent and start a frame too."""
    lane = Lanes()
    now = time.monotonic()
    lane.typed(OTHER, now)
    assert lane._budget_wait(ME, now) == 0.0
    estimate = lane.frame_started()
    assert estimate == lanes_mod.FRAME_COST
    assert lane._budget_wait(3, now) > 0  # another bulk session waits meanwhile
    lane.frame_done(estimate, 0.03)  # it took 30 ms
    assert lane._budget_wait(3, now) == pytest.approx(
        min(lanes_mod.MAX_WAIT, (0.03 - lane.share * lanes_mod.WINDOW) / lane.share)
    )
    assert lane.frame_started() == pytest.approx((lanes_mod.FRAME_COST + 0.03) / 2)


def test_run_queue_wait_is_read_from_the_kernel() -> None:
    first = lanes_mod._run_queue_wait()
    if first is None:
        pytest.skip("no /proc/self/schedstat")
    sum(range(200_000))
    second = lanes_mod._run_queue_wait()
    assert second is not None and second >= first
