"""The autoscaler's metric is one guacr really exports, and it counts sessions.

deploy/kubernetes/components/autoscaling/hpa.yaml scales on a per-pod metric by name;
a renamed metric would leave the HorizontalPodAutoscaler without data and silently
never scale. So: start guacr, open sessions, scrape its /metrics, find that name.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

import yaml
from guacr_process import free_port, run_guacr
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent.parent
HPA = ROOT / "deploy" / "kubernetes" / "components" / "autoscaling" / "hpa.yaml"


def hpa_metric() -> str:
    hpa: dict[str, Any] = yaml.safe_load(HPA.read_text())
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    return str(metric["pods"]["metric"]["name"])


def scrape(port: int) -> dict[str, tuple[str, float]]:
    """metric family name -> (type, sum of its samples)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        fam.name: (fam.type, sum(s.value for s in fam.samples))
        for fam in text_string_to_metric_families(text)
    }


def test_the_autoscalers_metric_is_exported_and_counts_sessions(tmp_path: Path) -> None:
    name = hpa_metric()
    port = free_port()
    env = {"GUACR_METRICS_BIND_PORT": str(port), "GUACR_GRPC_BIND_PORT": "0"}
    with run_guacr(tmp_path, workers=1, env=env) as g:
        clients = [g.client(timeout=20) for _ in range(2)]
        for c in clients:
            c.handshake("echo")
        deadline = time.monotonic() + 30  # workers report their figures every few seconds
        while True:
            families = scrape(port)
            assert name in families, f"{name} not among {sorted(families)}"
            kind, value = families[name]
            if value == 2:
                break
            assert time.monotonic() < deadline, f"{name} = {value}, want 2"
            time.sleep(0.2)
        assert kind == "gauge"  # an AverageValue target needs a level, not a counter
        for c in clients:
            c.close()
