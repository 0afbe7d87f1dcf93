"""What the control service talks about, in plain Python (no protobuf).

The listener's registry and workers produce these; :mod:`guacr.control.servicer`
turns them into ``guacr.v1`` messages. Keeping protobuf out of here keeps the listener
code that fills them free of generated classes.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


@dataclass
class UserInfo:
    """One client attached to a session."""

    id: str
    name: str = ""
    address: str = ""
    port: int = 0
    owner: bool = False
    read_only: bool = False
    joined_at: float = field(default_factory=time.time)
    door: str = "tcp"


@dataclass
class SessionInfo:
    """One live connection (``$id``)."""

    id: str
    protocol: str
    remote_host: str = ""
    remote_port: int = 0
    owner_id: str = ""
    users: list[UserInfo] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    bytes_to_clients: int = 0
    bytes_from_clients: int = 0
    frames: int = 0
    lag_ms: int = 0
    worker: int = 0
    worker_pid: int = 0
    stale: bool = False  # listed from the shared registry: its instance did not answer

    def matches(self, protocol: str = "", user: str = "", remote_host: str = "") -> bool:
        """Whether this session passes a ListSessions filter (empty: any)."""
        if protocol and self.protocol != protocol:
            return False
        if remote_host and self.remote_host != remote_host:
            return False
        return not user or any(user in (u.id, u.name) for u in self.users)


@dataclass
class InstanceInfo:
    """State of this guacr instance."""

    draining: bool
    sessions: int
    users: int
    workers_ready: int
    workers: int
    version: str
    started_at: float

    @property
    def ready(self) -> bool:
        """Whether new sessions can be served (health SERVING, /health/ready 200)."""
        return not self.draining and self.workers_ready > 0


@dataclass
class CreatedSession:
    """What CreateSession returns: a one-time token and the future ``$id``."""

    token: str
    session_id: str
    expires_at: float


@dataclass
class SharedSession:
    """What ShareSession returns: a join token."""

    token: str
    expires_at: float


class Failure(enum.Enum):
    """Why a control request failed; mapped to a gRPC status code by the servicer."""

    NOT_FOUND = "not_found"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"
    FAILED_PRECONDITION = "failed_precondition"
    INTERNAL = "internal"


class ControlError(Exception):
    """A control request that cannot be done; ``message`` is shown to the caller."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


# Events (WatchEvents). ``kind`` names the oneof field of guacr.v1.Event.
@dataclass
class SessionStarted:
    session: SessionInfo
    kind: str = "session_started"


@dataclass
class UserJoined:
    session_id: str
    user: UserInfo
    kind: str = "user_joined"


@dataclass
class UserLeft:
    session_id: str
    user_id: str
    kind: str = "user_left"


@dataclass
class SessionEnded:
    session_id: str
    status: int = 0
    message: str = ""
    bytes_to_clients: int = 0
    bytes_from_clients: int = 0
    kind: str = "session_ended"


@dataclass
class RecordingFinished:
    session_id: str
    path: str
    size: int = 0
    kind: str = "recording_finished"


@dataclass
class WorkerRestarted:
    worker: int
    old_pid: int = 0
    exit_status: int = 0
    sessions_lost: int = 0
    kind: str = "worker_restarted"


EventBody = (
    SessionStarted | UserJoined | UserLeft | SessionEnded | RecordingFinished | WorkerRestarted
)


@dataclass
class Event:
    """One event with its place in this listener's sequence."""

    sequence: int
    time: float
    body: EventBody
