"""Per-packet work guacr's SSH connections leave out (issue 16: every keystroke is a
packet): asyncssh's empty SSH_MSG_IGNORE before each packet is not sent with an AEAD
cipher (AES-GCM, chacha20-poly1305) but still is with CTR, and packets are not formatted
for a log that is off. Against the test OpenSSH server, through
:func:`guacr.services.ssh.connect`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import asyncssh
import pytest
from servers import SSHServer

from guacr.services import ssh

LOG = logging.LoggerAdapter(logging.getLogger("test.ssh_packets"), {})


@pytest.fixture(
    scope="module", params=["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr"]
)
def cipher_sshd(request: pytest.FixtureRequest) -> Iterator[tuple[SSHServer, str]]:
    """An sshd that allows only one cipher."""
    with SSHServer(extra_config=[f"Ciphers {request.param}"]) as server:
        yield server, request.param


async def _writes_per_channel_write(server: SSHServer) -> tuple[str, list[int]]:
    """The cipher, and how many socket writes each of 5 channel writes took."""
    conn = await ssh.connect(
        server.host, server.port, server.username, password=server.password, key=None,
        host_key=None, timeout=10, alive_interval=0, params=None, log=LOG,
    )  # fmt: skip
    try:
        chan, _session = await conn.create_session(asyncssh.SSHClientSession, "cat", encoding=None)
        await asyncio.sleep(0.2)  # window adjustments and the like settle
        sends = 0
        send = conn._send

        def counting(data: bytes) -> None:
            nonlocal sends
            sends += 1
            send(data)

        conn._send = counting  # type: ignore[method-assign]
        counts = []
        for _ in range(5):
            before = sends
            chan.write(b"x")
            counts.append(sends - before)
        chan.close()
        return str(conn.get_extra_info("send_cipher")), counts
    finally:
        conn.close()
        await conn.wait_closed()


async def test_no_ignore_packet_before_each_packet_with_an_aead_cipher(
    cipher_sshd: tuple[SSHServer, str],
) -> None:
    server, cipher = cipher_sshd
    used, counts = await _writes_per_channel_write(server)
    assert used == cipher
    if cipher.endswith("-ctr"):
        assert counts == [2] * 5  # asyncssh's CBC/CTR countermeasure stays
    else:
        assert counts == [1] * 5  # one packet, one write per keystroke


async def test_packets_are_not_formatted_for_a_log_that_is_off(sshd: SSHServer) -> None:
    conn = await ssh.connect(
        sshd.host, sshd.port, sshd.username, password=sshd.password, key=None,
        host_key=None, timeout=10, alive_interval=0, params=None, log=LOG,
    )  # fmt: skip
    try:
        assert conn.log_sent_packet is ssh._no_log
        assert conn.log_received_packet is ssh._no_log
        result = await conn.run("echo still-ok", check=True, timeout=10)
        assert result.stdout == "still-ok\n"
    finally:
        conn.close()
        await conn.wait_closed()


def test_packet_logging_kept_when_asyncssh_debug_level_3() -> None:
    class Obj:
        pass

    quiet, loud = Obj(), Obj()
    ssh.quiet_packet_log(quiet)
    assert quiet.log_sent_packet is ssh._no_log  # type: ignore[attr-defined]
    asyncssh.set_debug_level(3)
    try:
        ssh.quiet_packet_log(loud)
    finally:
        asyncssh.set_debug_level(1)
    assert not hasattr(loud, "log_sent_packet")
