"""Figures from workers -> Prometheus exposition over HTTP, checked by the real parsers."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guacr.control.figures import BUCKETS, FiguresStore, WorkerFigures
from guacr.control.http import HealthMetricsServer
from guacr.control.metrics import make_registry
from guacr.control.model import InstanceInfo


class State:
    def __init__(self) -> None:
        self.draining = False
        self.ready = 2

    def info(self) -> InstanceInfo:
        return InstanceInfo(self.draining, 0, 0, self.ready, 2, "t", 0.0)


def _worker(handshakes: int, protocol: str = "ssh") -> WorkerFigures:
    w = WorkerFigures()
    for _ in range(handshakes):
        w.count("handshakes", protocol)
    w.count("handshake_failures", "519")
    w.count("bytes_out", protocol, 1000 * handshakes)
    w.count("frames", protocol, 10)
    w.observe("encode_seconds", 0.002)
    w.observe("encode_seconds", 5.0)  # beyond the last bucket: +Inf
    w.gauges["sessions"][protocol] = handshakes
    w.gauges["users"][protocol] = handshakes + 1
    w.loop_lag = 0.003
    return w


def _families(text: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
    return out


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthMetricsServer, FiguresStore, State]]:
    store, state = FiguresStore(), State()
    server = HealthMetricsServer(state.info, make_registry(store, state.info), "127.0.0.1", 0)
    await server.start()
    try:
        yield server, store, state
    finally:
        await server.stop()


def _get(port: int, path: str, method: str = "GET") -> tuple[int, str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


async def test_counters_survive_worker_restarts(served: tuple[HealthMetricsServer, FiguresStore, State]) -> None:
    server, store, _ = served
    store.report(0, 100, _worker(3).snapshot())
    store.report(1, 101, _worker(2, "vnc").snapshot())
    text = (await asyncio.to_thread(_get, server.port, "/metrics"))[2]
    fams = _families(text)
    assert fams["guacr_handshakes"][("guacr_handshakes_total", (("protocol", "ssh"),))] == 3
    assert fams["guacr_handshakes"][("guacr_handshakes_total", (("protocol", "vnc"),))] == 2
    assert fams["guacr_handshake_failures"][("guacr_handshake_failures_total", (("status", "519"),))] == 2
    assert fams["guacr_sessions"][("guacr_sessions", (("protocol", "ssh"),))] == 3
    assert fams["guacr_users"][("guacr_users", (("protocol", "vnc"),))] == 3
    enc = fams["guacr_encode_seconds"]
    assert enc[("guacr_encode_seconds_count", ())] == 4
    assert enc[("guacr_encode_seconds_bucket", (("le", "0.0025"),))] == 2
    assert enc[("guacr_encode_seconds_bucket", (("le", "+Inf"),))] == 4
    assert enc[("guacr_encode_seconds_sum", ())] == pytest.approx(10.004)
    assert fams["guacr_event_loop_lag_seconds"][("guacr_event_loop_lag_seconds", (("worker", "1"),))] == 0.003

    # Worker 0 is replaced (new pid) and starts counting from zero: totals keep growing.
    store.worker_restarts += 1
    store.report(0, 200, _worker(1).snapshot())
    fams = _families((await asyncio.to_thread(_get, server.port, "/metrics"))[2])
    assert fams["guacr_handshakes"][("guacr_handshakes_total", (("protocol", "ssh"),))] == 4
    assert fams["guacr_sessions"][("guacr_sessions", (("protocol", "ssh"),))] == 1  # gauges: live only
    assert fams["guacr_worker_restarts"][("guacr_worker_restarts_total", ())] == 1
    # A worker that exits keeps its counts and drops its gauges.
    store.worker_gone(1)
    fams = _families((await asyncio.to_thread(_get, server.port, "/metrics"))[2])
    assert fams["guacr_handshakes"][("guacr_handshakes_total", (("protocol", "vnc"),))] == 2
    assert ("guacr_sessions", (("protocol", "vnc"),)) not in fams["guacr_sessions"]
    assert len(fams["guacr_event_loop_lag_seconds"]) == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
async def test_promtool_accepts_exposition(served: tuple[HealthMetricsServer, FiguresStore, State]) -> None:
    server, store, _ = served
    store.report(0, 1, _worker(3).snapshot())
    text = (await asyncio.to_thread(_get, server.port, "/metrics"))[2]
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # And it does reject broken input (the check can fail).
    bad = subprocess.run(["promtool", "check", "metrics"], input="guacr_x{ 1\n", capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode != 0


async def test_health_endpoints(served: tuple[HealthMetricsServer, FiguresStore, State]) -> None:
    server, _, state = served
    assert await asyncio.to_thread(_get, server.port, "/health/live") == (200, "text/plain; charset=utf-8", "live\n")
    assert (await asyncio.to_thread(_get, server.port, "/health/ready"))[0] == 200
    state.draining = True
    assert (await asyncio.to_thread(_get, server.port, "/health/ready"))[::2] == (503, "draining\n")
    state.draining, state.ready = False, 0
    assert (await asyncio.to_thread(_get, server.port, "/health/ready"))[::2] == (503, "no worker ready\n")
    assert (await asyncio.to_thread(_get, server.port, "/nope"))[0] == 404
    assert (await asyncio.to_thread(_get, server.port, "/metrics", "POST"))[0] == 405
    status, ctype, body = await asyncio.to_thread(_get, server.port, "/metrics", "HEAD")
    assert status == 200 and ctype.startswith("text/plain") and body == ""


async def test_keep_alive_and_garbage(served: tuple[HealthMetricsServer, FiguresStore, State]) -> None:
    server, _, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\nGET /health/ready HTTP/1.1\r\nhost: x\r\n\r\n")
    data = b""
    async with asyncio.timeout(5):
        while data.count(b"HTTP/1.1 200") < 2:
            data += await reader.read(4096)
    assert b"live\n" in data and b"ready\n" in data
    writer.close()
    # Not HTTP: a 400 and a closed connection; the server keeps serving others.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\x00\x01garbage\r\n\r\n")
    async with asyncio.timeout(5):
        reply = await reader.read()
    assert reply.startswith(b"HTTP/1.1 400")
    # An endless header: cut off at the head limit.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nx-long: " + b"a" * 40000)
    async with asyncio.timeout(5):
        reply = await reader.read()
    assert reply.startswith(b"HTTP/1.1 431")
    assert (await asyncio.to_thread(_get, server.port, "/health/live"))[0] == 200


def test_histogram_buckets_are_sorted() -> None:
    assert list(BUCKETS) == sorted(BUCKETS)


def test_totals_survive_a_listener_restart() -> None:
    """What no live worker re-reports (retired workers, the listener's refusals, worker
    restarts) goes to the main process as it changes and seeds the next listener."""
    from guacr.server import channel

    sent: list[dict[str, object]] = []
    old = FiguresStore(on_retired=lambda: sent.append(old.export()))
    old.report(0, 100, _worker(3).snapshot())
    old.report(0, 200, _worker(1).snapshot())  # pid 100 replaced: retired
    old.count_refused(513)
    old.count_restart()
    old.report(1, 101, _worker(2, "vnc").snapshot())  # live: it re-reports itself
    assert len(sent) == 3
    wire = channel.decode_message(channel.encode_message(channel.Totals(sent[-1])))
    assert isinstance(wire, channel.Totals)
    new = FiguresStore(restored=wire.figures)
    assert new.worker_restarts == 1 and sum(new.gauges()["sessions"].values()) == 0
    # The live workers report to the new listener as they did to the old one.
    new.report(0, 200, _worker(1).snapshot())
    new.report(1, 101, _worker(2, "vnc").snapshot())
    before, after = old.totals(), new.totals()
    assert after.counters == before.counters and after.counters["handshakes"]["ssh"] == 4
    assert after.counters["handshake_failures"]["513"] == 1
    for name, h in before.histograms.items():
        assert after.histograms[name].counts == h.counts
