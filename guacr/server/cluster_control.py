"""gRPC control across instances: one :class:`ControlBackend` for the whole cluster.

:class:`ClusterBackend` wraps this instance's backend (guacr.control.plane) when a shared
registry is configured. A session this instance owns is answered by it, as before;
another instance's is found in the shared registry (guacr.server.redis_registry) and:

* ``GetSession`` and ``TerminateSession`` are asked of its owner over Redis itself: each
  instance takes requests from its own list (``guacr:q:<instance>``) and answers on a
  list named by the request (``guacr:r:<rid>``), so no extra port or credential is
  needed between instances (whoever may write the registry is trusted already);
* ``ShareSession`` mints the join token here (instances share ``token_key``, and the join
  is forwarded to the owner wherever it arrives);
* ``ListSessions`` lists this instance's sessions and asks every other instance owning
  sessions for its own list at once (their remote host, frames, lag, worker, as they
  are now); an instance that does not answer within :data:`LIST_TIMEOUT` is listed as
  it last published itself in the registry (at most a third of a lease old, without
  frames, lag or worker pid), marked ``stale``, and the log says so.

An owner that does not answer within :data:`REQUEST_TIMEOUT` makes the other calls fail
with ``UNAVAILABLE``, as does a registry that cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from guacr.control import model
from guacr.control.backend import ControlBackend
from guacr.server.redis_registry import PREFIX, Owner, RedisRegistry, RegistryDown, connect

log = logging.getLogger("guacr.control")

QUEUE = PREFIX + "q:"
REPLY = PREFIX + "r:"
REQUEST_TIMEOUT = 5.0
LIST_TIMEOUT = 1.0  # ListSessions waits this long for other instances' own lists
POLL = 1.0  # seconds one wait for a request lasts (so a stop is noticed)
MAX_REASON = 1024


def session_to_wire(info: model.SessionInfo) -> dict[str, Any]:
    return dataclasses.asdict(info)


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def session_from_wire(data: Mapping[str, Any]) -> model.SessionInfo:
    users = [model.UserInfo(**_known(model.UserInfo, u)) for u in data.get("users", [])]
    fields = _known(model.SessionInfo, data)
    fields["users"] = users
    return model.SessionInfo(**fields)


def _split(remote: str) -> tuple[str, int]:
    host, sep, port = remote.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return remote, 0


def session_from_record(conn_id: str, record: Mapping[str, Any]) -> model.SessionInfo:
    """What another instance last published about one of its sessions."""
    users = []
    for user_id, name, remote, owner, since, door in record.get("u", []):
        address, port = _split(str(remote))
        users.append(
            model.UserInfo(
                id=str(user_id),
                name=str(name),
                address=address,
                port=port,
                owner=bool(owner),
                joined_at=float(since),
                door=str(door),
            )
        )
    owner_id = str(record.get("o", ""))
    return model.SessionInfo(
        id=conn_id,
        protocol=str(record.get("p", "")),
        owner_id=owner_id if any(u.id == owner_id for u in users) else "",
        users=users,
        started_at=float(record.get("s", 0.0)),
        bytes_to_clients=int(record.get("bo", 0)),
        bytes_from_clients=int(record.get("bi", 0)),
        worker=int(record.get("w", 0)),
        stale=True,
    )


class ClusterBackend:
    """This instance's :class:`ControlBackend`, reaching other instances' sessions."""

    def __init__(self, inner: ControlBackend, registry: RedisRegistry) -> None:
        self.inner = inner
        self.registry = registry
        self.events = inner.events
        # Blocking waits (BLPOP) need a client whose socket timeout outlasts them.
        self.waiter = connect(registry.url, socket_timeout=REQUEST_TIMEOUT + 5)
        self._tasks: set[asyncio.Task[None]] = set()

    def __getattr__(self, name: str) -> Any:
        """Everything else (the plane's cache hooks, ``mint``) is the inner backend's."""
        return getattr(self.inner, name)

    # ControlBackend -------------------------------------------------------------------
    async def list_sessions(self) -> Sequence[model.SessionInfo]:
        local = list(await self.inner.list_sessions())
        try:
            others = await self.registry.others()
        except RegistryDown:
            return local  # logged by the registry; this instance's own still listed
        by_instance: dict[str, list[Owner]] = {}
        for owner in others:
            by_instance.setdefault(owner.instance, []).append(owner)
        answers = await asyncio.gather(*(self._list_of(o[0]) for o in by_instance.values()))
        seen = {s.id for s in local}
        for published, answer in zip(by_instance.values(), answers, strict=True):
            if answer is None:  # as it last published itself
                answer = []
                for owner in published:
                    conn_id = str(owner.record.get("id", ""))
                    with contextlib.suppress(ValueError, TypeError):
                        answer.append(session_from_record(conn_id, owner.record))
            for info in answer:
                if info.id and info.id not in seen:
                    seen.add(info.id)
                    local.append(info)
        return local

    async def _list_of(self, owner: Owner) -> list[model.SessionInfo] | None:
        """``owner``'s own list of its sessions, or None if it does not answer in time."""
        try:
            result = await self.ask(owner, "list_sessions", id="", timeout=LIST_TIMEOUT)
            if not isinstance(result, list):
                raise TypeError("not a list")
            return [session_from_wire(item) for item in result]
        except (model.ControlError, ValueError, TypeError) as exc:
            reason = exc.message if isinstance(exc, model.ControlError) else str(exc)
            log.info(
                "ListSessions: instance %s at %s: %s; listing its sessions as it last "
                "published them",
                owner.instance[:12], owner.address, reason,
            )  # fmt: skip
            return None

    async def get_session(self, session_id: str) -> model.SessionInfo | None:
        info = await self.inner.get_session(session_id)
        if info is not None:
            return info
        owner = await self._owner(session_id)
        if owner is None:
            return None
        result = await self.ask(owner, "get_session", id=session_id)
        return session_from_wire(result) if isinstance(result, dict) else None

    async def terminate(self, session_id: str, reason: str, status: int) -> int | None:
        told = await self.inner.terminate(session_id, reason, status)
        if told is not None:
            return told
        owner = await self._owner(session_id)
        if owner is None:
            return None
        result = await self.ask(
            owner, "terminate", id=session_id, reason=reason[:MAX_REASON], status=int(status)
        )
        return int(result) if isinstance(result, int) else None

    async def create_session(
        self, protocol: str, parameters: Mapping[str, str], ttl: float
    ) -> model.CreatedSession:
        return await self.inner.create_session(protocol, parameters, ttl)

    async def share_session(
        self, session_id: str, read_only: bool, ttl: float
    ) -> model.SharedSession:
        try:
            return await self.inner.share_session(session_id, read_only, ttl)
        except model.ControlError as exc:
            if exc.failure is not model.Failure.NOT_FOUND:
                raise
            if await self._owner(session_id) is None:
                raise
        mint = getattr(self.inner, "mint", None)
        if mint is None:
            raise model.ControlError(
                model.Failure.FAILED_PRECONDITION,
                "ShareSession needs the WebSocket door (websocket_bind_port, token_key)",
            )
        token = mint(join=session_id, read_only=read_only, ttl=ttl)
        return model.SharedSession(token, time.time() + ttl)

    async def set_draining(self, draining: bool) -> None:
        await self.inner.set_draining(draining)

    def instance(self) -> model.InstanceInfo:
        return self.inner.instance()

    # Between instances ----------------------------------------------------------------
    async def _owner(self, session_id: str) -> Owner | None:
        """Another instance owning ``session_id`` (None: no one does)."""
        try:
            owner = await self.registry.owner(session_id)
        except RegistryDown:
            raise model.ControlError(
                model.Failure.UNAVAILABLE, "the shared session registry is unreachable"
            ) from None
        if owner is None or owner.instance == self.registry.instance:
            return None
        return owner

    async def ask(
        self, owner: Owner, op: str, timeout: float = REQUEST_TIMEOUT, **fields: Any
    ) -> Any:
        """Send one request to ``owner`` and wait (up to ``timeout`` s) for its answer."""
        rid = uuid.uuid4().hex
        queue = QUEUE + owner.instance
        request = json.dumps({"rid": rid, "op": op, **fields})
        try:
            async with self.registry.client.pipeline(transaction=False) as pipe:
                pipe.rpush(queue, request)
                pipe.pexpire(queue, int(self.registry.lease * 1000))
                await pipe.execute()
            got = await self.waiter.blpop([REPLY + rid], timeout=timeout)
        except (RedisError, OSError) as exc:
            raise model.ControlError(
                model.Failure.UNAVAILABLE, f"the shared session registry failed: {exc}"
            ) from None
        if got is None:
            raise model.ControlError(
                model.Failure.UNAVAILABLE,
                f"instance {owner.instance[:12]} at {owner.address} did not answer",
            )
        body = json.loads(got[1])
        if "error" in body:
            raise model.ControlError(model.Failure(body.get("failure")), str(body["error"]))
        return body.get("result")

    async def serve(self) -> None:
        """Answer other instances' requests about this instance's sessions, forever."""
        queue = QUEUE + self.registry.instance
        while True:
            try:
                got = await self.waiter.blpop([queue], timeout=POLL)
            except (RedisError, OSError):
                await asyncio.sleep(POLL)  # the registry logs the outage
                continue
            if got is None:
                continue
            task = asyncio.get_running_loop().create_task(self._answer(str(got[1])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, raw: str) -> None:
        try:
            request = json.loads(raw)
            rid, op, conn_id = str(request["rid"]), request["op"], str(request["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("Malformed control request from another instance")
            return
        body: dict[str, Any]
        try:
            if op == "list_sessions":
                listed = await self.inner.list_sessions()
                body = {"result": [session_to_wire(info) for info in listed]}
            elif op == "get_session":
                info = await self.inner.get_session(conn_id)
                body = {"result": session_to_wire(info) if info is not None else None}
            elif op == "terminate":
                reason = str(request.get("reason", ""))[:MAX_REASON]
                told = await self.inner.terminate(conn_id, reason, int(request["status"]))
                body = {"result": told}
            else:
                body = {"error": f"unknown request {str(op)[:32]!r}", "failure": "invalid"}
        except model.ControlError as exc:
            body = {"error": exc.message, "failure": exc.failure.value}
        except (ValueError, TypeError, KeyError) as exc:
            body = {"error": f"bad request: {exc}", "failure": "invalid"}
        with contextlib.suppress(RedisError, OSError):
            async with self.registry.client.pipeline(transaction=False) as pipe:
                pipe.rpush(REPLY + rid, json.dumps(body))
                pipe.pexpire(REPLY + rid, int(REQUEST_TIMEOUT * 2000))
                await pipe.execute()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(RedisError, OSError):
            await self.waiter.aclose()
