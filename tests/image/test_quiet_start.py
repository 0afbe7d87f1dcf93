"""No third-party deprecation noise at start: asyncssh's DSA warnings are silenced, and
nothing else is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from guacr_process import run_guacr

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    """stderr of a fresh interpreter that shows every warning once per place."""
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stderr


def test_importing_the_ssh_handler_prints_no_dsa_warning() -> None:
    assert "DSA is deprecated" not in _python("import guacr.handlers.ssh")


def test_the_filter_is_narrow() -> None:
    """DSA used by anyone but asyncssh still warns (and asyncssh itself still imports the
    deprecated names, or this filter would be dead code worth deleting)."""
    alone = _python("import asyncssh")
    assert "CryptographyDeprecationWarning: DSA is deprecated" in alone
    ours = _python(
        "import guacr.handlers.ssh\n"
        "from cryptography.hazmat.primitives.asymmetric import dsa\n"
        "dsa.DSAPrivateKey\n"
    )
    assert ours.count("DSA is deprecated") == 1


def test_daemon_start_prints_no_warnings(tmp_path: Path) -> None:
    # The built-in handlers (SSH among them) are preloaded and warmed up at start.
    with run_guacr(tmp_path, workers=1, handlers="") as g:
        log = g.log()
    assert "Listening on host" in log
    assert "Warning" not in log, log
