"""Operating figures: counted in each worker, summed in the listener.

A worker keeps a :class:`WorkerFigures` (plain counters and fixed-bucket histograms:
an increment is a dict update, cheap enough for per-frame paths) and sends
:meth:`WorkerFigures.snapshot` to the listener over its control channel every few
seconds. The listener's :class:`FiguresStore` keeps the latest snapshot per worker slot
and, when a worker is replaced, folds the old one's totals into a retired base, so
counters never go backwards though workers restart (why prometheus-client's
file-based multiprocess mode is not used: it keys files by pid and needs cleanup that
forked, restarting workers make fragile).

The listener itself can restart (guacr.server.forkserver forks a new one after a
crash): live workers then re-report their own totals to the new one, and what no
worker holds any more (retired workers, the listener's own refusals, worker restarts)
is sent to the main process as it changes (:meth:`FiguresStore.export`) and handed to
the next listener, which starts from it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Seconds. Image encodes and frame plans are sub-millisecond to tens of milliseconds.
BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

# Counters keyed by one label value (protocol or status code).
COUNTERS = (
    "handshakes",  # by protocol: handshakes that reached `ready`
    "handshake_failures",  # by status code
    "bytes_in",  # by protocol: Guacamole bytes from clients
    "bytes_out",  # by protocol: Guacamole bytes to clients
    "instructions_in",
    "instructions_out",
    "frames",  # by protocol: `sync` sent
    "slow_reader_drops",  # by protocol: users dropped for not reading
)
HISTOGRAMS = ("encode_seconds", "frame_plan_seconds")
GAUGES = ("sessions", "users")  # by protocol, current


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def add(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs, as Prometheus wants them."""
        out, running = [], 0
        for bound, n in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


class WorkerFigures:
    """What one worker counts. Call sites use the small methods below."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter[str]] = {name: Counter() for name in COUNTERS}
        self.histograms: dict[str, Histogram] = {name: Histogram() for name in HISTOGRAMS}
        self.gauges: dict[str, Counter[str]] = {name: Counter() for name in GAUGES}
        self.loop_lag = 0.0

    def count(self, name: str, label: str, n: int = 1) -> None:
        self.counters[name][label] += n

    def observe(self, name: str, seconds: float) -> None:
        self.histograms[name].observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable totals since this worker started."""
        return {
            "c": {k: dict(v) for k, v in self.counters.items() if v},
            "h": {k: [h.counts, h.total] for k, h in self.histograms.items() if h.count},
            "g": {k: dict(v) for k, v in self.gauges.items()},
            "lag": self.loop_lag,
        }


# This process's figures. A worker replaces it at start; code far from the worker (the
# renderers timing encodes and frame plans) records into it without a reference.
CURRENT = WorkerFigures()


@dataclass
class _Totals:
    counters: dict[str, Counter[str]] = field(
        default_factory=lambda: {name: Counter() for name in COUNTERS}
    )
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {name: Histogram() for name in HISTOGRAMS}
    )

    def add_snapshot(self, snap: dict[str, Any]) -> None:
        for name, values in snap.get("c", {}).items():
            if name in self.counters:
                self.counters[name].update({str(k): int(v) for k, v in values.items()})
        for name, (counts, total) in snap.get("h", {}).items():
            if name in self.histograms and len(counts) == len(BUCKETS) + 1:
                self.histograms[name].add(Histogram([int(n) for n in counts], float(total)))


class FiguresStore:
    """The listener's view: the latest snapshot per worker slot, plus retired totals."""

    def __init__(
        self,
        restored: dict[str, Any] | None = None,
        on_retired: Callable[[], None] | None = None,
    ) -> None:
        self._retired = _Totals()
        self._latest: dict[int, tuple[int, dict[str, Any]]] = {}  # slot -> (pid, snapshot)
        self.worker_restarts = 0
        self.on_retired = on_retired  # called whenever :meth:`export` would change
        if restored:  # from the previous listener, through the main process
            self._retired.add_snapshot(restored)
            restarts = restored.get("restarts", 0)
            self.worker_restarts = restarts if isinstance(restarts, int) else 0

    def _retired_changed(self) -> None:
        if self.on_retired is not None:
            self.on_retired()

    def export(self) -> dict[str, Any]:
        """What no live worker will report again, JSON-serialisable: the next listener
        starts from it (``FiguresStore(restored=...)``)."""
        return {
            "c": {k: dict(v) for k, v in self._retired.counters.items() if v},
            "h": {
                k: [h.counts, h.total] for k, h in self._retired.histograms.items() if h.count
            },
            "restarts": self.worker_restarts,
        }

    def report(self, slot: int, pid: int, snapshot: dict[str, Any]) -> None:
        """A worker's snapshot; a new pid in a slot retires the old one's figures."""
        old = self._latest.get(slot)
        if old is not None and old[0] != pid:
            self._retired.add_snapshot(old[1])
            self._retired_changed()
        self._latest[slot] = (pid, snapshot)

    def count_refused(self, status: int) -> None:
        """A client the listener itself refused (unknown protocol, draining, ...)."""
        self._retired.counters["handshake_failures"][str(status)] += 1
        self._retired_changed()

    def count_restart(self) -> None:
        """A worker exited unexpectedly and is restarted."""
        self.worker_restarts += 1
        self._retired_changed()

    def worker_gone(self, slot: int) -> None:
        """The worker in ``slot`` exited: keep its counts, forget its gauges."""
        old = self._latest.pop(slot, None)
        if old is not None:
            self._retired.add_snapshot(old[1])
            self._retired_changed()

    def totals(self) -> _Totals:
        """Counters and histograms over every worker that ever ran."""
        out = _Totals()
        out.add_snapshot(
            {
                "c": {k: dict(v) for k, v in self._retired.counters.items()},
                "h": {k: [h.counts, h.total] for k, h in self._retired.histograms.items()},
            }
        )
        for _pid, snap in self._latest.values():
            out.add_snapshot(snap)
        return out

    def gauges(self) -> dict[str, Counter[str]]:
        """Current gauges summed over live workers."""
        out: dict[str, Counter[str]] = {name: Counter() for name in GAUGES}
        for _pid, snap in self._latest.values():
            for name, values in snap.get("g", {}).items():
                if name in out:
                    out[name].update({str(k): int(v) for k, v in values.items()})
        return out

    def loop_lag(self) -> dict[int, float]:
        """Latest event-loop lag per live worker slot, seconds."""
        return {slot: float(snap.get("lag", 0.0)) for slot, (_pid, snap) in self._latest.items()}
