"""Control-channel messages: typed, checked on receipt, requests matched to replies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket

import pytest

from guacr.server import channel


def test_every_message_round_trips_with_a_descriptor() -> None:
    a, b = channel.pair()
    r, w = os.pipe()
    try:
        for cls in channel.MESSAGES.values():
            msg = cls()
            channel.send(a, msg, [r])
            got, fds = channel.recv(b)
            assert got == msg and type(got) is cls
            assert len(fds) == 1
            os.close(fds[0])
        handoff = channel.Handoff("@u", "ssh", channel.pack_bytes(b"\x00rest"), "tls", "10.0.0.1")
        channel.send(a, handoff)
        got, fds = channel.recv(b)
        assert got == handoff and fds == []
        assert isinstance(got, channel.Handoff)
        assert channel.unpack_bytes(got.pending) == b"\x00rest"
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    "packet",
    [
        b"not json",
        b'["nosuch", {}]',
        b'["ping", {"extra": 1}]',
        b'["handoff", {"user": "@u"}]',  # missing fields
        json.dumps(
            ["spawned", {"slot": "0", "pid": 5}]  # a string where an int belongs
        ).encode(),
        json.dumps(["spawned", {"slot": True, "pid": 5}]).encode(),
    ],
)
def test_malformed_packets_are_rejected_and_descriptors_closed(packet: bytes) -> None:
    a, b = channel.pair()
    r, w = os.pipe()
    try:
        socket.send_fds(a, [packet], [r])
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(ValueError):
            channel.recv(b)
        assert len(os.listdir("/proc/self/fd")) == before  # the passed fd was closed
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_closed_peer_reads_as_none() -> None:
    a, b = channel.pair()
    a.close()
    assert channel.recv(b) == (None, [])
    b.close()


async def test_requests_are_matched_to_replies_by_id() -> None:
    requests = channel.Requests()
    first, second = channel.ListUsers(connection="$a"), channel.Terminate(connection="$b")
    f1, f2 = requests.prepare(first), requests.prepare(second)
    assert first.rid != second.rid
    requests.resolve(channel.Reply(rid=second.rid, ok=True, result={"n": 2}))
    requests.resolve(channel.Reply(rid=999))  # unknown: ignored
    assert (await f2).result == {"n": 2}
    assert not f1.done()
    requests.fail_all("gone")
    reply = await asyncio.wait_for(f1, 1)
    assert not reply.ok and reply.error == "gone"


def test_messages_are_dataclasses_with_unique_opcodes() -> None:
    ops = [cls.op for cls in channel.MESSAGES.values()]
    assert len(ops) == len(set(ops)) and all(ops)
    assert all(dataclasses.is_dataclass(cls) for cls in channel.MESSAGES.values())
