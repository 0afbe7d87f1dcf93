"""What the Kubernetes manifests expect of the program itself: the probe endpoints on the
metrics door and the ``guacr drain`` command of the preStop hook.

Both came with issue 12 (health, metrics, gRPC drain).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from guacr_process import ROOT, free_port, run_guacr

KUBE = ROOT / "deploy" / "kubernetes"


def guacr_container() -> dict[str, Any]:
    deployment = yaml.safe_load((KUBE / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def probe_status(url: str, timeout: float = 60.0) -> int | str:
    """The probe's HTTP status once it answers 200, or what it last gave at the deadline:
    the door and the listener's view of its workers come up a little after the workers
    log ``ready``, and a kubelet retries its probes as well."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                last: int | str = r.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except OSError as exc:  # not bound yet, or timed out
            last = repr(exc)
        if last == 200 or time.monotonic() > deadline:
            return last
        time.sleep(0.1)


def test_probe_paths_answer_on_the_metrics_door(tmp_path: Path) -> None:
    c = guacr_container()
    port = free_port()
    env = {"GUACR_METRICS_BIND_HOST": "127.0.0.1", "GUACR_METRICS_BIND_PORT": str(port)}
    with run_guacr(tmp_path, workers=1, env=env):
        for probe in ("readinessProbe", "livenessProbe"):
            path = c[probe]["httpGet"]["path"]
            status = probe_status(f"http://127.0.0.1:{port}{path}")
            assert status == 200, (probe, path, status)


def test_prestop_command_exists() -> None:
    command = guacr_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "guacr"
    proc = subprocess.run(
        [sys.executable, "-m", "guacr", *command[1:2], "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--wait" in proc.stdout
