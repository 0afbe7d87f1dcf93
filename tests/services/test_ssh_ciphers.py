"""Which ciphers guacr's SSH connections offer, and that servers allowing only the
less preferred ones still connect (issue 16: AES-GCM is ~7x cheaper per keystroke than
asyncssh's chacha20-poly1305, which it runs in Python).

The order is read from the KEXINIT a real :func:`guacr.services.ssh.connect` sends to a
loopback socket; the rest runs against the test OpenSSH server."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterator

import pytest
from servers import SSHServer

from guacr.errors import GuacrError
from guacr.services import ssh

LOG = logging.LoggerAdapter(logging.getLogger("test.ssh_ciphers"), {})
PREFERRED = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
# asyncssh 2.x's own default list, which must all stay offered after the preferred ones.
FALLBACK = ["chacha20-poly1305@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"]


def _name_lists(payload: bytes, count: int) -> list[list[str]]:
    """The first ``count`` name-lists of a KEXINIT payload (RFC 4253 7.1)."""
    assert payload[0] == 20, "not a KEXINIT"
    pos = 17  # message number + 16-byte cookie
    lists = []
    for _ in range(count):
        (size,) = struct.unpack_from(">I", payload, pos)
        pos += 4
        lists.append(payload[pos : pos + size].decode("ascii").split(","))
        pos += size
    return lists


async def _offered_ciphers() -> tuple[list[str], list[str]]:
    """Both directions' cipher lists from the KEXINIT guacr sends to a fake server."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-CipherProbe\r\n")
        await reader.readline()  # the client's version line
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        packet = await reader.readexactly(length)
        got.set_result(packet[1 : length - packet[0]])  # strip padding length + padding
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(GuacrError):  # the probe hangs up after the KEXINIT
            await ssh.connect(
                "127.0.0.1", port, "guest", password="guest", key=None, host_key=None,
                timeout=5, alive_interval=0, params=None, log=LOG,
            )  # fmt: skip
        payload = await asyncio.wait_for(got, 5)
    finally:
        server.close()
        await server.wait_closed()
    _kex, _host_key, c2s, s2c = _name_lists(payload, 4)
    return c2s, s2c


async def test_aes_gcm_offered_first_then_asyncssh_defaults() -> None:
    c2s, s2c = await _offered_ciphers()
    assert c2s == PREFERRED + FALLBACK
    assert s2c == c2s


async def _session_cipher(server: SSHServer) -> str:
    conn = await ssh.connect(
        server.host, server.port, server.username, password=server.password, key=None,
        host_key=None, timeout=10, alive_interval=0, params=None, log=LOG,
    )  # fmt: skip
    try:
        result = await conn.run("echo cipher-ok", check=True, timeout=10)
        assert result.stdout == "cipher-ok\n"
        assert conn.get_extra_info("recv_cipher") == conn.get_extra_info("send_cipher")
        return str(conn.get_extra_info("send_cipher"))
    finally:
        conn.close()
        await conn.wait_closed()


async def test_openssh_negotiates_aes128_gcm(sshd: SSHServer) -> None:
    assert await _session_cipher(sshd) == "aes128-gcm@openssh.com"


@pytest.fixture(scope="module", params=["chacha20-poly1305@openssh.com", "aes128-ctr"])
def restricted_sshd(request: pytest.FixtureRequest) -> Iterator[tuple[SSHServer, str]]:
    """An sshd that allows only one of the fallback ciphers."""
    with SSHServer(extra_config=[f"Ciphers {request.param}"]) as server:
        yield server, request.param


async def test_server_with_only_a_fallback_cipher_connects(
    restricted_sshd: tuple[SSHServer, str],
) -> None:
    server, cipher = restricted_sshd
    assert await _session_cipher(server) == cipher
