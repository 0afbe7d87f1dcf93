"""A C library built by one user must be loadable by another (the image's user).

guacr's libraries used to come out of ``cc -o <mkstemp file>`` with mode 0711: built as
root, they could not be loaded by the non-root user of the Docker image, so every SSH
session there failed with 512.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from guacr.native_build import CLibrary

# The system interpreter: the checkout (and its venv) may be closed to other users.
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
SOURCE = "int guacr_probe(void) { return 42; }\n"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="guacr-native-mode-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def _build(src_dir: Path, umask: int) -> Path:
    src = src_dir / "probe.c"
    src.write_text(SOURCE)
    src.chmod(0o644)
    old = os.umask(umask)
    try:
        return CLibrary(src, "probe").build(dest=src_dir / "probe.so")
    finally:
        os.umask(old)


def test_built_library_has_the_mode_a_new_file_gets(shared_dir: Path) -> None:
    lib = _build(shared_dir, 0o022)
    assert stat.S_IMODE(lib.stat().st_mode) == 0o755
    assert not list(shared_dir.glob(".build-*")), "temporary file left behind"


def test_built_library_respects_a_strict_umask(shared_dir: Path) -> None:
    lib = _build(shared_dir, 0o077)
    assert stat.S_IMODE(lib.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to build as one user, load as another")
def test_library_built_by_root_loads_as_another_user(shared_dir: Path) -> None:
    lib = _build(shared_dir, 0o022)
    code = f"import ctypes; print(ctypes.CDLL({str(lib)!r}).guacr_probe())"
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", code],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
