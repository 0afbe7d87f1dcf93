"""Integer index pools (layers, buffers, streams, objects), reusing freed indices.

Like libguac's ``guac_pool``: the smallest freed index comes back first, so indices
stay small and their wire form short.
"""

from __future__ import annotations

import heapq


class IndexPool:
    """Hands out ``start, start+step, ...`` and reuses freed values."""

    __slots__ = ("_free", "_next", "_step", "limit", "used")

    def __init__(self, start: int = 0, step: int = 1, limit: int | None = None) -> None:
        self._next = start
        self._step = step
        self._free: list[int] = []
        self.limit = limit
        self.used = 0

    def alloc(self) -> int:
        """Return a free index; raises OverflowError past ``limit`` live indices."""
        if self.limit is not None and self.used >= self.limit:
            raise OverflowError("index pool exhausted")
        self.used += 1
        if self._free:
            v = heapq.heappop(self._free)
            return v if self._step > 0 else -v
        v = self._next
        self._next += self._step
        return v

    def free(self, value: int) -> None:
        """Return ``value`` to the pool."""
        self.used -= 1
        heapq.heappush(self._free, value if self._step > 0 else -value)
