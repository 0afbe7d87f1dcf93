"""Fixtures for the image tests: the Dockerfile replayed by tests/image/replay.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from image.replay import Builder, Image, ReplayError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def image() -> Image:
    """The image, built (or taken from the layer cache) once per test session."""
    if os.geteuid() != 0:
        pytest.fail("the image tests replay the Dockerfile with chroot and mount: run as root")
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap missing: run (as root) scripts/install-test-deps.sh")
    try:
        return Builder(ROOT).build()
    except ReplayError as exc:
        pytest.fail(f"replaying the Dockerfile failed: {exc}")
