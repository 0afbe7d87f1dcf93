"""Protocol timestamps, shared by the core, recordings and every handler."""

from __future__ import annotations

import time


def monotonic_ms() -> int:
    """guacd's timestamps: milliseconds of CLOCK_MONOTONIC (``sync``, ``mouse``, ``key``)."""
    return time.monotonic_ns() // 1_000_000
