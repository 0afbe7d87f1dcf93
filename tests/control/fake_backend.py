"""An in-memory ControlBackend for unit tests of the servicer (no daemon)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from guacr.control import model
from guacr.control.events import EventBus


class FakeBackend:
    """Sessions in a dict; terminate/create/share record what they were asked."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.sessions: dict[str, model.SessionInfo] = {}
        self.draining = False
        self.workers_ready = 2
        self.terminated: list[tuple[str, str, int]] = []
        self.created: list[tuple[str, dict[str, str], float]] = []

    def add(self, sid: str, protocol: str = "ssh", host: str = "10.0.0.1", users: int = 1,
            started: float | None = None) -> model.SessionInfo:
        s = model.SessionInfo(
            id=sid, protocol=protocol, remote_host=host, remote_port=22,
            owner_id=f"@{sid[1:]}-0",
            users=[model.UserInfo(id=f"@{sid[1:]}-{i}", name=f"user{i}", address="127.0.0.1",
                                  port=40000 + i, owner=i == 0, read_only=i > 1)
                   for i in range(users)],
            started_at=started if started is not None else time.time(),
            bytes_to_clients=1000, bytes_from_clients=10, frames=5, lag_ms=3, worker=1,
            worker_pid=4242,
        )
        self.sessions[sid] = s
        self.events.publish(model.SessionStarted(s))
        return s

    async def list_sessions(self) -> list[model.SessionInfo]:
        return list(self.sessions.values())

    async def get_session(self, session_id: str) -> model.SessionInfo | None:
        return self.sessions.get(session_id)

    async def terminate(self, session_id: str, reason: str, status: int) -> int | None:
        s = self.sessions.pop(session_id, None)
        if s is None:
            return None
        self.terminated.append((session_id, reason, status))
        self.events.publish(model.SessionEnded(session_id, status, reason))
        return len(s.users)

    async def create_session(self, protocol: str, parameters: Mapping[str, str],
                             ttl: float) -> model.CreatedSession:
        if self.draining:
            raise model.ControlError(model.Failure.UNAVAILABLE, "draining")
        if protocol != "ssh":
            raise model.ControlError(model.Failure.INVALID, f"unknown protocol {protocol}")
        self.created.append((protocol, dict(parameters), ttl))
        return model.CreatedSession("tok-" + protocol, "$new", time.time() + ttl)

    async def share_session(self, session_id: str, read_only: bool,
                            ttl: float) -> model.SharedSession:
        if session_id not in self.sessions:
            raise model.ControlError(model.Failure.NOT_FOUND, f"no session {session_id}")
        return model.SharedSession(f"join-{session_id}-{int(read_only)}", time.time() + ttl)

    async def set_draining(self, draining: bool) -> None:
        self.draining = draining

    def instance(self) -> model.InstanceInfo:
        return model.InstanceInfo(
            draining=self.draining, sessions=len(self.sessions),
            users=sum(len(s.users) for s in self.sessions.values()),
            workers_ready=self.workers_ready, workers=2, version="test", started_at=1.0,
        )
