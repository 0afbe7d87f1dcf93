"""The fork server's warm-up session: it must really run, and leave nothing behind.

The memory per idle session (benchmarks/bench_ssh.py memory) depends on it: a warm-up
that silently failed would only show as workers each copying ~11 MB more.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json, logging, socket, threading
logging.basicConfig(level=logging.INFO)
from guacr.config import load
from guacr.server import forkserver
config = load(None, environ={})
forkserver.WARM_UP_TIMEOUT = 120.0  # its 5 s cap is exceeded on a loaded machine
threads = threading.active_count()
fds_before = len(__import__("os").listdir("/proc/self/fd"))
ok = forkserver.warm_up(config)
gc.collect()
fds_after = len(__import__("os").listdir("/proc/self/fd"))
print(json.dumps({"ok": ok, "threads": threading.active_count() - threads,
                  "fds": fds_after - fds_before}))
"""


def test_warm_up_runs_a_session_and_leaves_no_thread_or_socket() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"ok": True, "threads": 0, "fds": 0}, proc.stderr
    assert "Warm-up session failed" not in proc.stderr
