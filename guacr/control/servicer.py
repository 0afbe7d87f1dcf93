"""The ``guacr.v1.Control`` service over a :class:`~guacr.control.backend.ControlBackend`.

It validates requests, filters, sorts and pages what the backend returns and turns
:mod:`guacr.control.model` objects into protobuf messages. The work per call is bounded
(a page holds at most ``MAX_PAGE`` sessions) so a client cannot make the listener's
event loop build an unbounded answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from guacr.control import model
from guacr.control.backend import ControlBackend
from guacr.control.events import SubscriberTooSlow
from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc as pb_grpc
from guacr.protocol.status import Status

log = logging.getLogger("guacr.control")

DEFAULT_PAGE = 100
MAX_PAGE = 1000
DEFAULT_TTL = 60.0
MAX_TTL = 24 * 3600.0
MAX_REASON = 1024
MAX_PARAMETERS = 128
MAX_VALUE = 8192  # code points, the Guacamole protocol's element limit
DEFAULT_REASON = "Session terminated."

_FAILURE_CODES = {
    model.Failure.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    model.Failure.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    model.Failure.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    model.Failure.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    model.Failure.INTERNAL: grpc.StatusCode.INTERNAL,
}


# Conversions -------------------------------------------------------------------------
def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def fill_user(msg: pb.User, user: model.UserInfo) -> pb.User:
    """Set ``msg`` from ``user`` in place (no intermediate message to copy)."""
    msg.id = user.id
    msg.name = user.name
    msg.address = user.address
    msg.port = user.port
    msg.owner = user.owner
    msg.read_only = user.read_only
    msg.joined_at.FromNanoseconds(int(user.joined_at * 1e9))
    msg.door = user.door
    return msg


def user_pb(user: model.UserInfo) -> pb.User:
    return fill_user(pb.User(), user)


def fill_session(msg: pb.Session, s: model.SessionInfo) -> pb.Session:
    """Set ``msg`` from ``s`` in place: a page of 1000 costs a third less than building
    each message and appending (which copies it)."""
    msg.id = s.id
    msg.protocol = s.protocol
    msg.remote_host = s.remote_host
    msg.remote_port = s.remote_port
    msg.owner_id = s.owner_id
    users = msg.users
    for u in s.users:
        fill_user(users.add(), u)
    msg.started_at.FromNanoseconds(int(s.started_at * 1e9))
    msg.bytes_to_clients = s.bytes_to_clients
    msg.bytes_from_clients = s.bytes_from_clients
    msg.frames = s.frames
    msg.lag_ms = s.lag_ms
    msg.worker = s.worker
    msg.worker_pid = s.worker_pid
    msg.stale = s.stale
    return msg


def session_pb(s: model.SessionInfo) -> pb.Session:
    return fill_session(pb.Session(), s)


def instance_pb(i: model.InstanceInfo) -> pb.InstanceStatus:
    return pb.InstanceStatus(
        draining=i.draining,
        sessions=i.sessions,
        users=i.users,
        workers_ready=i.workers_ready,
        workers=i.workers,
        version=i.version,
        started_at=timestamp(i.started_at),
    )


def event_pb(event: model.Event) -> pb.Event:
    body = event.body
    out = pb.Event(sequence=event.sequence, time=timestamp(event.time))
    if isinstance(body, model.SessionStarted):
        out.session_started.session.CopyFrom(session_pb(body.session))
    elif isinstance(body, model.UserJoined):
        out.user_joined.session_id = body.session_id
        out.user_joined.user.CopyFrom(user_pb(body.user))
    elif isinstance(body, model.UserLeft):
        out.user_left.session_id = body.session_id
        out.user_left.user_id = body.user_id
    elif isinstance(body, model.SessionEnded):
        out.session_ended.CopyFrom(
            pb.SessionEnded(
                session_id=body.session_id,
                status=body.status,
                message=body.message,
                bytes_to_clients=body.bytes_to_clients,
                bytes_from_clients=body.bytes_from_clients,
            )
        )
    elif isinstance(body, model.RecordingFinished):
        out.recording_finished.CopyFrom(
            pb.RecordingFinished(session_id=body.session_id, path=body.path, size=body.size)
        )
    else:
        out.worker_restarted.CopyFrom(
            pb.WorkerRestarted(
                worker=body.worker,
                old_pid=body.old_pid,
                exit_status=body.exit_status,
                sessions_lost=body.sessions_lost,
            )
        )
    return out


def _page_key(s: model.SessionInfo) -> tuple[float, str]:
    return (s.started_at, s.id)


def encode_page_token(key: tuple[float, str]) -> str:
    """Opaque token: the sort key of the last session sent."""
    return base64.urlsafe_b64encode(f"{key[0]!r}|{key[1]}".encode()).decode("ascii")


def decode_page_token(token: str) -> tuple[float, str]:
    """Raises ValueError on a token we did not make."""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode()
        started, sep, sid = text.partition("|")
        if not sep:
            raise ValueError("no separator")
        return float(started), sid
    except (binascii.Error, UnicodeError) as exc:
        raise ValueError(str(exc)) from None


def _ttl(value: Duration, has: bool) -> float:
    if not has:
        return DEFAULT_TTL
    seconds = float(value.seconds + value.nanos / 1e9)
    if not 0 < seconds <= MAX_TTL:
        raise ValueError(f"ttl must be above 0 and at most {int(MAX_TTL)} s")
    return seconds


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, msg: str
) -> NoReturn:
    await context.abort(code, msg)
    raise AssertionError("abort returned")  # pragma: no cover


class ControlServicer(pb_grpc.ControlServicer):
    """guacr.v1.Control."""

    def __init__(
        self,
        backend: ControlBackend,
        on_drain_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.backend = backend
        self.on_drain_change = on_drain_change

    async def _call(self, context: grpc.aio.ServicerContext[Any, Any], coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except model.ControlError as exc:
            await _abort(context, _FAILURE_CODES[exc.failure], exc.message)

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSessionsResponse:
        size = request.page_size or DEFAULT_PAGE
        size = min(size, MAX_PAGE)
        after: tuple[float, str] | None = None
        if request.page_token:
            try:
                after = decode_page_token(request.page_token)
            except ValueError:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid page_token")
        sessions = await self._call(context, self.backend.list_sessions())
        matching = sorted(
            (s for s in sessions if s.matches(request.protocol, request.user, request.remote_host)),
            key=_page_key,
        )
        start = 0
        if after is not None:
            start = next((i for i, s in enumerate(matching) if _page_key(s) > after), len(matching))
        page = matching[start : start + size]
        response = pb.ListSessionsResponse(total_size=len(matching))
        out = response.sessions
        for n, s in enumerate(page):
            fill_session(out.add(), s)
            if n % 200 == 199:
                await asyncio.sleep(0)  # let accepts and routing through on big pages
        if start + size < len(matching):
            response.next_page_token = encode_page_token(_page_key(page[-1]))
        return response

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Session:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id is required")
        session = await self._call(context, self.backend.get_session(request.id))
        if session is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no session {request.id[:80]!r}")
        return session_pb(session)

    async def TerminateSession(
        self, request: pb.TerminateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TerminateSessionResponse:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id is required")
        status = request.status or int(Status.SESSION_CLOSED)
        if status not in Status._value2member_map_ or status == Status.SUCCESS:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"status {status} is not a Guacamole error status",
            )
        if len(request.reason) > MAX_REASON:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"reason longer than {MAX_REASON}"
            )
        reason = request.reason or DEFAULT_REASON
        told = await self._call(context, self.backend.terminate(request.id, reason, status))
        if told is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no session {request.id[:80]!r}")
        log.info("Session %s terminated over gRPC (status %d)", request.id[:80], status)
        return pb.TerminateSessionResponse(users=told)

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateSessionResponse:
        if not request.protocol or request.protocol.startswith("$"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "protocol is required")
        if len(request.parameters) > MAX_PARAMETERS or any(
            len(k) > MAX_VALUE or len(v) > MAX_VALUE for k, v in request.parameters.items()
        ):
            # Never echo the values: they hold credentials.
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "parameters too large")
        try:
            ttl = _ttl(request.ttl, request.HasField("ttl"))
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        created = await self._call(
            context,
            self.backend.create_session(request.protocol, dict(request.parameters), ttl),
        )
        log.info("Session %s prepared over gRPC (%s)", created.session_id, request.protocol[:64])
        return pb.CreateSessionResponse(
            token=created.token,
            session_id=created.session_id,
            expires_at=timestamp(created.expires_at),
        )

    async def ShareSession(
        self, request: pb.ShareSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ShareSessionResponse:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id is required")
        try:
            ttl = _ttl(request.ttl, request.HasField("ttl"))
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        shared = await self._call(
            context, self.backend.share_session(request.id, request.read_only, ttl)
        )
        return pb.ShareSessionResponse(token=shared.token, expires_at=timestamp(shared.expires_at))

    async def _set_draining(
        self, draining: bool, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InstanceStatus:
        before = self.backend.instance().draining
        await self._call(context, self.backend.set_draining(draining))
        if before != draining:
            log.info("%s over gRPC", "Draining" if draining else "Resumed")
        if self.on_drain_change is not None:
            await self.on_drain_change()
        return instance_pb(self.backend.instance())

    async def Drain(
        self, request: pb.DrainRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InstanceStatus:
        return await self._set_draining(True, context)

    async def Resume(
        self, request: pb.ResumeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InstanceStatus:
        return await self._set_draining(False, context)

    async def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InstanceStatus:
        return instance_pb(self.backend.instance())

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.Event]:
        # Subscribe before taking the snapshot so nothing falls between the two (a
        # session may then appear twice; its id tells).
        # The replay describes the state as of the last event numbered so far and
        # carries that number, so sequence numbers a client sees never go back.
        with self.backend.events.open() as sub:
            if request.replay_live:
                seq = self.backend.events.sequence
                sessions = await self._call(context, self.backend.list_sessions())
                for s in sorted(sessions, key=_page_key):
                    yield event_pb(model.Event(seq, s.started_at, model.SessionStarted(s)))
                    for u in s.users:
                        if not u.owner:
                            yield event_pb(
                                model.Event(seq, u.joined_at, model.UserJoined(s.id, u))
                            )
            while True:
                try:
                    event = await sub.next()
                except SubscriberTooSlow as exc:
                    await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
                yield event_pb(event)
