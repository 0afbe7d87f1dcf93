"""guacr.v1.Control through a real grpc.aio client, over an in-memory backend."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control.conftest import AUTH
from control.fake_backend import FakeBackend
from guacr.control.server import ControlServer
from guacr.control.v1 import control_pb2 as pb
from guacr.control.v1 import control_pb2_grpc


async def test_list_filters_and_pages(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    for i in range(5):
        backend.add(f"$s{i}", protocol="ssh" if i % 2 == 0 else "vnc", host=f"h{i % 2}",
                    users=2, started=1000.0 + i)
    resp = await stub.ListSessions(pb.ListSessionsRequest(), metadata=AUTH)
    assert [s.id for s in resp.sessions] == ["$s0", "$s1", "$s2", "$s3", "$s4"]
    assert resp.total_size == 5 and resp.next_page_token == ""
    first = resp.sessions[0]
    assert first.protocol == "ssh" and first.remote_host == "h0" and first.remote_port == 22
    assert first.owner_id == "@s0-0" and [u.owner for u in first.users] == [True, False]
    assert first.users[1].address == "127.0.0.1" and first.users[1].port == 40001
    assert first.started_at.seconds == 1000 and first.worker_pid == 4242

    resp = await stub.ListSessions(pb.ListSessionsRequest(protocol="vnc"), metadata=AUTH)
    assert [s.id for s in resp.sessions] == ["$s1", "$s3"]
    resp = await stub.ListSessions(pb.ListSessionsRequest(remote_host="h0"), metadata=AUTH)
    assert [s.id for s in resp.sessions] == ["$s0", "$s2", "$s4"]
    resp = await stub.ListSessions(pb.ListSessionsRequest(user="@s3-1"), metadata=AUTH)
    assert [s.id for s in resp.sessions] == ["$s3"]
    resp = await stub.ListSessions(pb.ListSessionsRequest(user="user1", protocol="ssh"), metadata=AUTH)
    assert [s.id for s in resp.sessions] == ["$s0", "$s2", "$s4"]

    seen, token = [], ""
    while True:
        page = await stub.ListSessions(pb.ListSessionsRequest(page_size=2, page_token=token), metadata=AUTH)
        assert page.total_size == 5 and len(page.sessions) <= 2
        seen += [s.id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["$s0", "$s1", "$s2", "$s3", "$s4"]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListSessions(pb.ListSessionsRequest(page_token="garbage!"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_page_size_is_capped(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    for i in range(1005):
        backend.add(f"$x{i:04d}", started=float(i))
    resp = await stub.ListSessions(pb.ListSessionsRequest(page_size=5000), metadata=AUTH)
    assert len(resp.sessions) == 1000 and resp.next_page_token
    rest = await stub.ListSessions(pb.ListSessionsRequest(page_size=5000, page_token=resp.next_page_token), metadata=AUTH)
    assert [s.id for s in rest.sessions] == [f"$x{i:04d}" for i in range(1000, 1005)]


async def test_get_session(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    backend.add("$a", users=3)
    s = await stub.GetSession(pb.GetSessionRequest(id="$a"), metadata=AUTH)
    assert s.id == "$a" and len(s.users) == 3 and s.users[2].read_only and not s.users[1].read_only
    assert s.bytes_to_clients == 1000 and s.frames == 5 and s.lag_ms == 3
    for bad, code in (("$nope", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetSession(pb.GetSessionRequest(id=bad), metadata=AUTH)
        assert err.value.code() == code


async def test_terminate(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    backend.add("$a", users=2)
    backend.add("$b")
    r = await stub.TerminateSession(pb.TerminateSessionRequest(id="$a", reason="Maintenance"), metadata=AUTH)
    assert r.users == 2
    await stub.TerminateSession(pb.TerminateSessionRequest(id="$b", status=0x0301), metadata=AUTH)
    assert backend.terminated == [("$a", "Maintenance", 0x020B), ("$b", "Session terminated.", 0x0301)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.TerminateSession(pb.TerminateSessionRequest(id="$a"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    backend.add("$c")
    for status in (1, 0x9999):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.TerminateSession(pb.TerminateSessionRequest(id="$c", status=status), metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.TerminateSession(pb.TerminateSessionRequest(id="$c", reason="x" * 2000), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "$c" in backend.sessions


async def test_create_and_share(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    r = await stub.CreateSession(
        pb.CreateSessionRequest(protocol="ssh", parameters={"hostname": "h", "password": "pw"},
                                ttl=Duration(seconds=30)), metadata=AUTH)
    assert r.token == "tok-ssh" and r.session_id == "$new" and r.expires_at.seconds > 0
    assert backend.created == [("ssh", {"hostname": "h", "password": "pw"}, 30.0)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateSession(pb.CreateSessionRequest(protocol="nope"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateSession(pb.CreateSessionRequest(protocol="ssh", ttl=Duration(seconds=-1)), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert backend.created[1:] == []  # the default ttl is 60 s when unset
    await stub.CreateSession(pb.CreateSessionRequest(protocol="ssh"), metadata=AUTH)
    assert backend.created[1][2] == 60.0

    backend.add("$a")
    shared = await stub.ShareSession(pb.ShareSessionRequest(id="$a", read_only=True), metadata=AUTH)
    assert shared.token == "join-$a-1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ShareSession(pb.ShareSessionRequest(id="$zz"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_drain_resume_and_health(backend: FakeBackend, control: ControlServer,
                                       channel: grpc.aio.Channel) -> None:
    stub = control_pb2_grpc.ControlStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == serving
    st = await stub.Drain(pb.DrainRequest(), metadata=AUTH)
    assert st.draining and backend.draining
    for service in ("", "guacr.v1.Control"):
        assert (await health.Check(health_pb2.HealthCheckRequest(service=service))).status == not_serving
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateSession(pb.CreateSessionRequest(protocol="ssh"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    st = await stub.Resume(pb.ResumeRequest(), metadata=AUTH)
    assert not st.draining
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == serving
    st = await stub.GetStatus(pb.GetStatusRequest(), metadata=AUTH)
    assert st.workers_ready == 2 and st.version == "test"
    # No worker ready: health follows within its poll interval.
    backend.workers_ready = 0
    watch = health.Watch(health_pb2.HealthCheckRequest(service="guacr.v1.Control"))
    statuses = []
    async with asyncio.timeout(30):  # generous: a loaded machine
        async for r in watch:
            statuses.append(r.status)
            if r.status == not_serving:
                break
    assert statuses[-1] == not_serving
    watch.cancel()


async def test_watch_events_in_order(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    backend.add("$old", users=2)
    call = stub.WatchEvents(pb.WatchEventsRequest(replay_live=True), metadata=AUTH)
    replay = [await call.read(), await call.read()]
    assert replay[0].WhichOneof("kind") == "session_started"
    assert replay[0].session_started.session.id == "$old"
    assert replay[1].WhichOneof("kind") == "user_joined" and replay[1].user_joined.user.id == "@old-1"
    assert backend.events.subscribers == 1
    from guacr.control import model
    backend.add("$n")
    backend.events.publish(model.UserJoined("$n", model.UserInfo(id="@j", read_only=True)))
    backend.events.publish(model.UserLeft("$n", "@j"))
    backend.events.publish(model.RecordingFinished("$n", "/tmp/rec", 12))
    await stub.TerminateSession(pb.TerminateSessionRequest(id="$n", reason="bye"), metadata=AUTH)
    backend.events.publish(model.WorkerRestarted(1, 99, -9, 3))
    got = [await call.read() for _ in range(6)]
    assert [e.WhichOneof("kind") for e in got] == [
        "session_started", "user_joined", "user_left", "recording_finished", "session_ended",
        "worker_restarted",
    ]
    seqs = [e.sequence for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    # The replay is the state as of the last event before it: never a number back.
    assert replay[0].sequence == replay[1].sequence == seqs[0] - 1
    assert got[1].user_joined.user.read_only and got[3].recording_finished.size == 12
    assert got[4].session_ended.message == "bye" and got[4].session_ended.status == 0x020B
    assert got[5].worker_restarted.exit_status == -9 and got[5].worker_restarted.sessions_lost == 3
    call.cancel()
    async with asyncio.timeout(30):  # the server sees the cancel a moment later
        while backend.events.subscribers:
            await asyncio.sleep(0.01)


async def test_slow_watcher_is_cut_off(backend: FakeBackend, stub: control_pb2_grpc.ControlStub) -> None:
    from guacr.control import model
    backend.events.limit = 50
    call = stub.WatchEvents(pb.WatchEventsRequest(), metadata=AUTH)
    async with asyncio.timeout(30):  # generous: a loaded machine
        while backend.events.subscribers == 0:
            await asyncio.sleep(0.01)
    for i in range(200):  # published synchronously: the stream cannot keep up
        backend.events.publish(model.UserLeft("$x", f"@{i}"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(30):  # generous: a loaded machine
            async for _ in call:
                pass
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
