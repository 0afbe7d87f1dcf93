"""Fan-out of session events to WatchEvents subscribers.

The listener publishes from its event loop (synchronously: publishing never waits for
a subscriber). Each subscriber has a bounded queue; one that falls ``QUEUE_LIMIT``
events behind is cut off (its stream ends with RESOURCE_EXHAUSTED) rather than
letting its backlog grow in the listener's memory or slow anybody else.
"""

from __future__ import annotations

import asyncio
import time

from guacr.control.model import Event, EventBody

QUEUE_LIMIT = 10_000


class SubscriberTooSlow(Exception):
    """The subscriber fell too far behind and was cut off."""


class Subscription:
    """One subscriber's queue: register with :meth:`EventBus.open`, read, then close."""

    def __init__(self, bus: EventBus, limit: int) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.limit = limit
        self.overflowed = False
        self._bus = bus

    def put(self, event: Event) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)  # wakes the reader, which raises
            return
        self.queue.put_nowait(event)

    async def next(self) -> Event:
        """The next event; raises :class:`SubscriberTooSlow` once cut off."""
        event = await self.queue.get()
        if event is None:
            raise SubscriberTooSlow(
                f"more than {self.limit} events behind; reconnect to watch again"
            )
        return event

    def close(self) -> None:
        """Stop receiving events."""
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Numbered events, delivered to every current subscriber in order."""

    def __init__(self, limit: int = QUEUE_LIMIT, first: int = 0) -> None:
        self.sequence = first  # the last number given (the next event gets one more)
        self.limit = limit
        self._subscribers: set[Subscription] = set()

    @property
    def subscribers(self) -> int:
        """How many streams are watching."""
        return len(self._subscribers)

    def publish(self, body: EventBody) -> Event:
        """Number ``body`` and queue it for every subscriber; never blocks."""
        self.sequence += 1
        event = Event(self.sequence, time.time(), body)
        for sub in self._subscribers:
            sub.put(event)
        return event

    def open(self) -> Subscription:
        """Start queueing events for a new subscriber (use as a context manager)."""
        sub = Subscription(self, self.limit)
        self._subscribers.add(sub)
        return sub
