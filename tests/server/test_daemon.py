"""The real guacr daemon over TCP, driven as a Guacamole client would drive guacd.

Uses the test-only ``echo`` handler (tests/echo_handler.py), which reports the worker
pid serving a connection and echoes input as ``name`` instructions.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guacr_process import Client, Guacr, assert_no_traceback, run_guacr

from echo_handler import EchoHandler

from guacr.protocol.instruction import encode

N_ARGS = len(EchoHandler.PARAMS)


@pytest.fixture(scope="module")
def guacr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("daemon"), workers=2) as g:
        yield g


def names_until(c: Client, marker: str, timeout: float = 5.0) -> list[str]:
    """Collect ``name`` texts until ``marker`` arrives (other opcodes skipped)."""
    names: list[str] = []
    deadline = time.monotonic() + timeout
    while not names or names[-1] != marker:
        ins = c.read(max(0.01, deadline - time.monotonic()))
        assert ins is not None, f"EOF before {marker!r}; got {names}"
        if ins[0] == "name":
            names.append(ins[1])
    return names


def owner_pid(c: Client) -> int:
    ins = c.expect("name", skip=("sync", "nop", "size"))
    assert ins[1].startswith("joined pid=")
    return int(ins[1].split()[1].split("=")[1])


def test_full_handshake(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.send("select", "echo")
        args = c.expect("args")
        assert args[:7] == ("args", "VERSION_1_5_0", "hostname", "port", "mode", "read-only",
                            "password")  # fmt: skip
        assert args[7:] == tuple(EchoHandler.arg_names()[5:])
        c.send("size", 1024, 768, 96)
        c.send("image", "image/png")
        c.send("connect", "VERSION_1_5_0", "h", "", "", "", "secret", *[""] * (len(args) - 7))
        ready = c.expect("ready")
        assert ready[1].startswith("$") and len(ready[1]) == 37
        assert owner_pid(c) in guacr.worker_pids()
        assert c.expect("size") == ("size", "0", "64", "48")
        c.expect("sync")
        c.send("key", 65, 1)
        assert names_until(c, "key 65 1") == ["key 65 1"]
        c.send("disconnect")
        assert c.read_until_eof() == [("disconnect",)]  # echoed, then closed promptly
    assert "secret" not in guacr.log()


def test_handshake_pipelined_in_one_write(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.send_raw(
            encode("select", "echo")
            + encode("size", 800, 600)
            + encode("audio")
            + encode("video")
            + encode("image", "image/png")
            + encode("bogus-opcode", "ignored")
            + encode("connect", "VERSION_1_5_0", "h", *[""] * (N_ARGS - 1))
            + encode("key", 97, 1)
        )
        assert c.expect("args")[1] == "VERSION_1_5_0"
        assert c.expect("ready")[1].startswith("$")
        names = names_until(c, "key 97 1")
        assert names[0].startswith("joined pid=") and names[1:] == ["key 97 1"]


def test_join_unknown_id_gets_516(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.send("select", "$00000000-0000-4000-8000-000000000000")
        assert c.read_until_eof() == [("error", "No such connection.", "516"), ("disconnect",)]


def test_unknown_protocol_gets_an_error_not_a_stall(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.send("select", "nosuchprotocol")
        out = c.read_until_eof(5)
        assert out[0][0] == "error" and out[0][2] == "256" and out[-1] == ("disconnect",)


def test_joins_reach_the_owning_worker(guacr: Guacr) -> None:
    owners: list[tuple[Client, str, int]] = []
    try:
        for _ in range(6):  # enough to land on both workers
            c = guacr.client()
            cid = c.handshake("echo", {"hostname": "h"}, name="owner")
            owners.append((c, cid, owner_pid(c)))
        assert len({pid for _, _, pid in owners}) == 2, "connections were not spread"
        for c, cid, pid in owners:
            with guacr.client() as j:
                assert j.handshake(cid, {"read-only": ""}, name="bob") == cid
                assert owner_pid(j) == pid
                # the owner is told (protocol 1.5.0) ...
                msg = c.expect("msg")
                assert msg[1] == "1" and msg[2].startswith("@") and msg[3] == "bob"
                # ... and input from either user reaches the shared handler
                j.send("key", 66, 1)
                assert names_until(c, "key 66 1")[-1] == "key 66 1"
                assert names_until(j, "key 66 1")[-1] == "key 66 1"
            assert c.expect("msg")[1] == "2"
    finally:
        for c, _, _ in owners:
            c.close()


def test_read_only_joiner_input_is_ignored(guacr: Guacr) -> None:
    with guacr.client() as owner, guacr.client() as viewer:
        cid = owner.handshake("echo", {})
        viewer.handshake(cid, {"read-only": "true"})
        viewer.send("key", 1, 1)
        viewer.send("mouse", 1, 2, 1)
        viewer.send("clipboard", 5, "text/plain")
        assert viewer.expect("ack", skip=("sync", "nop", "size", "name")) == (
            "ack",
            "5",
            "Clipboard unsupported",
            "256",
        )
        owner.send("key", 2, 1)  # a marker: the owner's key arrives, the viewer's did not
        names = names_until(viewer, "key 2 1")
        assert "key 1 1" not in names and not any(n.startswith("mouse") for n in names)
        assert "key 1 1" not in names_until(owner, "key 2 1")


def test_streams(guacr: Guacr) -> None:
    import base64

    with guacr.client() as c:
        c.handshake("echo", {})
        c.send("blob", 9, "aGk=")
        assert c.expect("ack") == ("ack", "9", "Invalid stream index", "768")
        c.send("end", 600)
        assert c.expect("ack") == ("ack", "600", "Invalid stream index", "768")
        c.send("clipboard", 2, "text/plain")
        c.send("blob", 2, base64.b64encode(b"hello ").decode())
        c.send("blob", 2, base64.b64encode("w\u00f6rld".encode()).decode())
        c.send("end", 2)
        assert names_until(c, "clipboard text/plain hello w\u00f6rld")
        c.send("argv", 4, "text/plain", "font-size")
        assert c.expect("ack") == ("ack", "4", "Ready for updated parameter.", "0")
        c.send("blob", 4, base64.b64encode(b"14").decode())
        c.send("end", 4)
        assert names_until(c, "argv font-size=14")
        c.send("argv", 6, "text/plain", "hostname")
        assert c.expect("ack") == ("ack", "6", "Not allowed.", "771")
        c.send("audio", 8, "audio/L16")
        assert c.expect("ack") == ("ack", "8", "Audio input unsupported", "256")
        c.send("file", 10, "text/plain", "a.txt")
        assert c.expect("ack") == ("ack", "10", "OK", "0")
        c.send("blob", 10, base64.b64encode(b"x" * 100).decode())
        assert c.expect("ack") == ("ack", "10", "OK", "0")
        c.send("end", 10)
        assert names_until(c, "upload 100")


@pytest.mark.parametrize(
    "bad,status",
    [
        (b"hello world;", "768"),  # malformed
        (b"9000." + b"a" * 9000 + b";", "781"),  # element over 8192 code points
        (encode("key", *["1"] * 200), "781"),  # over 128 elements
        (encode("key", "\u72ac" * 8000, "\u72ac" * 8000), "781"),  # over 32 KiB
        (b"4.sync,12.999999999999;", "768"),  # sync from the future
    ],
)
def test_bad_input_gets_error_and_close_and_spares_neighbours(
    guacr: Guacr, bad: bytes, status: str
) -> None:
    with guacr.client() as victim:
        cid = victim.handshake("echo", {})
        pid = owner_pid(victim)
        # a neighbour on the same worker (joined to the same connection, so same process)
        with guacr.client() as other_owner, guacr.client() as neighbour:
            neighbour.handshake(cid, {})
            assert owner_pid(neighbour) == pid
            other_owner.handshake("echo", {})
            with guacr.client() as bad_client:
                bad_client.handshake(cid, {})
                bad_client.send_raw(bad)
                out = bad_client.read_until_eof(5)
                errors = [i for i in out if i[0] == "error"]
                assert errors and errors[0][2] == status, out
                assert out[-1] == ("disconnect",)
            neighbour.send("key", 77, 1)
            assert names_until(neighbour, "key 77 1")[-1] == "key 77 1"
            other_owner.send("key", 78, 1)
            assert names_until(other_owner, "key 78 1")[-1] == "key 78 1"


def test_bad_select_closes(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.send_raw(b"garbage!")
        out = c.read_until_eof(5)
        assert out[0][0] == "error" and out[0][2] == "768"
    with guacr.client() as c:
        c.send("connect", "x")
        assert c.read_until_eof(5)[0][0] == "error"
    with guacr.client() as c:
        c.send("select", "a", "b")
        assert c.read_until_eof(5)[0][0] == "error"


def test_wrong_value_count_and_missing_image_get_errors(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.send("select", "echo")
        c.expect("args")
        c.send("image", "image/png")
        c.send("connect", "VERSION_1_5_0", "only-one")
        out = c.read_until_eof(5)
        assert out[0][0] == "error" and out[0][2] == "768" and "number of arguments" in out[0][1]
    with guacr.client() as c:
        c.send("select", "echo")
        c.expect("args")
        c.send("connect", "VERSION_1_5_0", *[""] * N_ARGS)
        out = c.read_until_eof(5)
        assert out[0][0] == "error" and "image" in out[0][1]


def test_handler_errors_reach_the_client(guacr: Guacr) -> None:
    with guacr.client() as c:
        c.handshake("echo", {"mode": "deny"})
        out = c.read_until_eof(5)
        assert ("error", "Access denied.", "769") in out and out[-1] == ("disconnect",)
    with guacr.client() as c:
        c.handshake("echo", {"mode": "crash"})
        out = c.read_until_eof(5)
        assert next(i for i in out if i[0] == "error")[2] == "512"
    with guacr.client() as c:
        c.handshake("echo", {"mode": "finish"})
        assert c.read_until_eof(5)[-1] == ("disconnect",)


def wait_log(g: Guacr, text: str, timeout: float = 60.0) -> None:
    g.wait_log(text, timeout)


def test_connections_are_removed_however_they_end(guacr: Guacr) -> None:
    """Handler ends by itself, by error, or the last user leaves: always cleaned up."""
    for mode, leave in (("finish", False), ("deny", False), ("", True)):
        with guacr.client() as c:
            cid = c.handshake("echo", {"mode": mode})
            if leave:
                c.send("disconnect")
            c.read_until_eof(5)
        wait_log(guacr, f"Connection {cid} removed.")
        with guacr.client() as j:  # and the id is no longer joinable
            j.send("select", cid)
            assert j.read_until_eof(5)[0] == ("error", "No such connection.", "516")


def test_silence_gives_nop_then_776_and_handshake_times_out(guacr: Guacr) -> None:
    with guacr.client(timeout=30) as silent, guacr.client(timeout=30) as stalled:
        silent.handshake("echo", {})
        stalled.send("select", "echo")  # never finishes the handshake
        start = time.monotonic()
        out = silent.read_until_eof(25)
        elapsed = time.monotonic() - start
        opcodes = [i[0] for i in out]
        assert "nop" in opcodes
        assert out[-2] == ("error", "User is not responding.", "776")
        assert out[-1] == ("disconnect",)
        assert 14 <= elapsed <= 20
        stalled_out = stalled.read_until_eof(10)
        assert stalled_out[-2][0] == "error" and stalled_out[-2][2] == "776"


def test_200_concurrent_handshakes(guacr: Guacr) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    clients: list[Client] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            c = Client(guacr.port, 30)
            cid = c.handshake("echo", {})
            with lock:
                results.append(cid)
                clients.append(c)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors[:3]
        assert len(set(results)) == 200
    finally:
        for c in clients:
            c.close()


def test_killed_worker_only_ends_its_own_connections(tmp_path: Path) -> None:
    with run_guacr(tmp_path, workers=2) as g:
        conns: dict[int, list[Client]] = {}
        for _ in range(6):
            c = g.client()
            c.handshake("echo", {})
            conns.setdefault(owner_pid(c), []).append(c)
        assert len(conns) == 2
        victim, survivor = sorted(conns)
        os.kill(victim, signal.SIGKILL)
        for c in conns[victim]:
            c.read_until_eof(10)  # closed
        for i, c in enumerate(conns[survivor]):
            c.send("key", 100 + i, 1)
            assert names_until(c, f"key {100 + i} 1")[-1] == f"key {100 + i} 1"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # reaped and replaced
            pids = g.worker_pids()
            if len(pids) == 2 and victim not in pids:
                break
            time.sleep(0.1)
        assert len(g.worker_pids()) == 2 and victim not in g.worker_pids()
        # New connections work. Kept open, six of them fill the empty new worker up to
        # the survivor's load of three, after which least-loaded placement uses both.
        new_pids = set()
        fresh = [g.client() for _ in range(6)]
        for c in fresh:
            c.handshake("echo", {})
            new_pids.add(owner_pid(c))
            c.send("key", 1, 1)
            assert names_until(c, "key 1 1") == ["key 1 1"]
        assert new_pids == set(g.worker_pids())
        for c in fresh:
            c.close()
        assert "exited with status -9" in g.log()
        for cs in conns.values():
            for c in cs:
                c.close()


def test_client_that_stops_reading_is_dropped_alone(tmp_path: Path) -> None:
    env = {"GUACR_MAX_WRITE_BUFFER": str(4 << 20)}
    with run_guacr(tmp_path, workers=1, env=env) as g, g.client() as neighbour:
        with g.client() as sleeper:
            neighbour.handshake("echo", {})
            sleeper.handshake("echo", {"mode": "flood"})  # then never reads
            wait_log(g, "is not reading")
        # the worker is fine and the neighbour is served
        neighbour.send("key", 5, 1)
        assert names_until(neighbour, "key 5 1")[-1] == "key 5 1"
        assert g.worker_pids()
        assert_no_traceback(g.log())


def test_hung_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    with run_guacr(tmp_path, workers=2, env={"GUACR_WORKER_HANG_TIMEOUT": "3"}) as g:
        with g.client() as hung_owner:
            hung_owner.handshake("echo", {"mode": "hang"})
            victim = owner_pid(hung_owner)  # announced before run() blocks the loop
            wait_log(g, "has not answered")
            hung_owner.read_until_eof(10)  # its session ends with the worker
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = g.worker_pids()
            if len(pids) == 2 and victim not in pids:
                break
            time.sleep(0.1)
        assert victim not in g.worker_pids() and len(g.worker_pids()) == 2
        with g.client() as c:  # service goes on
            c.handshake("echo", {})
            c.send("key", 9, 1)
            assert names_until(c, "key 9 1")[-1] == "key 9 1"


def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    with run_guacr(tmp_path, workers=2) as g:
        c = g.client()
        c.handshake("echo", {})
        pids = g.worker_pids()
        start = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        out = c.read_until_eof(10)
        assert ("error", "Server is shutting down.", "513") in out
        assert g.proc.wait(15) == 0
        assert time.monotonic() - start < 10
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", g.port), timeout=1)


def test_worker_failing_at_boot_is_not_restart_looped(tmp_path: Path) -> None:
    boot_fail = {"GUACR_TEST_WORKER_BOOT_FAIL": "1"}
    with (
        pytest.raises(RuntimeError, match="exited early") as info,
        run_guacr(tmp_path, workers=2, env=boot_fail),
    ):
        pass
    text = str(info.value)
    assert "not restarting it" in text and "No worker can start" in text
    assert text.count("before it was ready") == 6  # 3 tries per slot, then given up
