"""Prometheus metrics: a custom collector over the listener's :class:`FiguresStore`.

Nothing is stored in prometheus-client's own metric objects; every scrape builds the
families from the latest worker snapshots (see :mod:`guacr.control.figures` for why not
its multiprocess mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from guacr.control.figures import FiguresStore
from guacr.control.model import InstanceInfo

_COUNTERS: dict[str, tuple[str, str, str]] = {
    # figure name: (metric name, label, help)
    "handshakes": ("guacr_handshakes", "protocol", "Handshakes completed (ready sent)"),
    "handshake_failures": (
        "guacr_handshake_failures",
        "status",
        "Handshakes that ended with an error, by Guacamole status code",
    ),
    "bytes_in": ("guacr_received_bytes", "protocol", "Guacamole protocol bytes from clients"),
    "bytes_out": ("guacr_sent_bytes", "protocol", "Guacamole protocol bytes to clients"),
    "instructions_in": (
        "guacr_received_instructions",
        "protocol",
        "Instructions received from clients",
    ),
    "instructions_out": ("guacr_sent_instructions", "protocol", "Instructions sent to clients"),
    "frames": ("guacr_frames", "protocol", "Frames (sync) sent"),
    "slow_reader_drops": (
        "guacr_slow_reader_drops",
        "protocol",
        "Users dropped because they stopped reading",
    ),
}
_HISTOGRAMS = {
    "encode_seconds": ("guacr_encode_seconds", "Time to encode one image"),
    "frame_plan_seconds": ("guacr_frame_plan_seconds", "Time to plan one frame's drawing"),
}


class GuacrCollector(Collector):
    """Builds every guacr metric family at scrape time."""

    def __init__(self, store: FiguresStore, instance: Callable[[], InstanceInfo]) -> None:
        self.store = store
        self.instance = instance

    def collect(self) -> Iterator[Metric]:
        info = self.instance()
        gauges = self.store.gauges()
        for name, help_ in (("sessions", "Live sessions"), ("users", "Connected users")):
            g = GaugeMetricFamily(f"guacr_{name}", help_, labels=["protocol"])
            for protocol, n in sorted(gauges[name].items()):
                g.add_metric([protocol], n)
            yield g
        totals = self.store.totals()
        for figure, (metric, label, help_) in _COUNTERS.items():
            c = CounterMetricFamily(metric, help_, labels=[label])
            for value, n in sorted(totals.counters[figure].items()):
                c.add_metric([value], n)
            yield c
        for figure, (metric, help_) in _HISTOGRAMS.items():
            h = totals.histograms[figure]
            fam = HistogramMetricFamily(metric, help_)
            fam.add_metric([], h.cumulative(), h.total)
            yield fam
        lag = GaugeMetricFamily(
            "guacr_event_loop_lag_seconds", "Event-loop lag per worker", labels=["worker"]
        )
        for slot, seconds in sorted(self.store.loop_lag().items()):
            lag.add_metric([str(slot)], seconds)
        yield lag
        yield CounterMetricFamily(
            "guacr_worker_restarts", "Workers restarted after exiting", self.store.worker_restarts
        )
        yield GaugeMetricFamily("guacr_workers_ready", "Workers serving", info.workers_ready)
        yield GaugeMetricFamily("guacr_workers", "Worker slots", info.workers)
        yield GaugeMetricFamily("guacr_draining", "1 while draining", int(info.draining))


def make_registry(store: FiguresStore, instance: Callable[[], InstanceInfo]) -> CollectorRegistry:
    """A registry holding only guacr's collector (no process/platform defaults)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuacrCollector(store, instance))
    return registry


def exposition(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """(body, content type) for a scrape with this Accept header."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
