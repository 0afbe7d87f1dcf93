"""A worker shortens the GIL switch interval (issue 16): its loop thread gives the GIL
up in every poll and ctypes call, and must not then wait 5 ms each time for a thread
that encodes images."""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from typing import Any

import pytest

from guacr.config import Config
from guacr.server import worker


def test_worker_runs_its_loop_with_a_short_switch_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[float] = []

    def run_loop(coro: Coroutine[Any, Any, None], use_uvloop: bool = True) -> None:
        seen.append(sys.getswitchinterval())
        coro.close()  # not run: only the setting matters here

    monkeypatch.setattr(worker, "run_loop", run_loop)
    monkeypatch.setattr("guacr.log.setup", lambda *args: None)
    old = sys.getswitchinterval()
    try:
        worker.run_forked(None, Config())  # type: ignore[arg-type]
    finally:
        sys.setswitchinterval(old)
    assert seen == [pytest.approx(worker.SWITCH_INTERVAL)]
    assert worker.SWITCH_INTERVAL <= 0.001 < old
