"""Self-tests of the real-server test infrastructure (tests/servers.py).

Every check here talks to the server the way a client would (ssh, raw telnet, RFB), so a
broken helper fails here first instead of as a confusing handler-test failure.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from servers import (
    SSHServer,
    TelnetServer,
    TigerVNCServer,
    X11VNCServer,
    count_colours,
    free_port,
    pid_alive,
    remove_orphan_shm,
    wait_port,
)

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "NumberOfPasswordPrompts=1",
]  # fmt: skip


def _ssh(
    server: SSHServer,
    *opts: str,
    password: str | None = None,
    passphrase: str | None = None,
    command: str = "echo ok-$((6*7))",
) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh",
        "-p",
        str(server.port),
        *SSH_OPTS,
        *opts,
        f"{server.username}@{server.host}",
        command,
    ]
    if password is not None:
        argv = ["sshpass", "-p", password, *argv]
    elif passphrase is not None:
        argv = ["sshpass", "-P", "passphrase", "-p", passphrase, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


# ------------------------------------------------------------------------------ SSH


def test_ssh_password_login(sshd: SSHServer) -> None:
    opts = ("-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    ok = _ssh(sshd, *opts, password=sshd.password)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok-42"
    bad = _ssh(sshd, *opts, password="wrong")
    assert bad.returncode != 0
    assert "ok-42" not in bad.stdout


def test_ssh_keyboard_interactive_login(sshd: SSHServer) -> None:
    opts = ("-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=keyboard-interactive")
    ok = _ssh(sshd, *opts, password=sshd.password)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok-42"


@pytest.mark.parametrize("key", ["ed25519", "rsa", "rsa_openssh", "ecdsa"])
def test_ssh_key_login(sshd: SSHServer, key: str) -> None:
    path = sshd.keys[key]
    ok = _ssh(
        sshd,
        "-i",
        str(path),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "PreferredAuthentications=publickey",
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok-42"
    if key == "rsa":
        assert path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    else:
        assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_ssh_unlisted_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    bad = _ssh(
        sshd,
        "-i",
        str(stranger),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "PreferredAuthentications=publickey",
    )
    assert bad.returncode != 0


def test_ssh_passphrase_key(sshd: SSHServer) -> None:
    path = sshd.keys["ed25519_pass"]
    opts = ("-i", str(path), "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey")
    ok = _ssh(sshd, *opts, passphrase=sshd.passphrase)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok-42"
    with pytest.raises(asyncssh.KeyEncryptionError):
        asyncssh.read_private_key(path, "not-the-passphrase")
    with pytest.raises(asyncssh.KeyImportError):
        asyncssh.read_private_key(path)  # encrypted: unusable without the passphrase


def test_ssh_host_key_verification(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line + "\n")
    argv = ["sshpass", "-p", sshd.password, "ssh", "-p", str(sshd.port),
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "PubkeyAuthentication=no",
            f"{sshd.username}@{sshd.host}", "true"]  # fmt: skip
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    # Another ed25519 key for the same host must be rejected ("host key has changed").
    other = sshd.public_key("ed25519")
    known.write_text(f"[{sshd.host}]:{sshd.port} {other}\n")
    changed = subprocess.run(argv, capture_output=True, timeout=30)
    assert changed.returncode != 0
    assert b"HOST IDENTIFICATION HAS CHANGED" in changed.stderr


async def test_ssh_asyncssh_sftp_and_pty(sshd: SSHServer) -> None:
    """The library guacr uses: key + host-key check, a PTY shell prompt and SFTP."""
    key = asyncssh.read_private_key(sshd.keys["ed25519_pass"], sshd.passphrase)
    known = asyncssh.import_known_hosts(sshd.known_hosts_line + "\n")
    async with asyncssh.connect(
        sshd.host, sshd.port, username=sshd.username, client_keys=[key], known_hosts=known
    ) as conn:
        async with conn.start_sftp_client() as sftp:
            assert ".bashrc" in await sftp.listdir(".")
        proc = await conn.create_process(term_type="xterm", term_size=(80, 24))
        seen = await _read_until(proc.stdout, "guest@test:~$ ")
        assert "guest@test:~$ " in seen
        proc.stdin.write("echo $((6*7))-done\n")
        assert "42-done" in await _read_until(proc.stdout, "42-done")
        proc.close()


async def _read_until(stream: asyncssh.SSHReader[str], marker: str, timeout: float = 10.0) -> str:
    import asyncio

    seen = ""
    async with asyncio.timeout(timeout):
        while marker not in seen:
            chunk = await stream.read(4096)
            if not chunk:
                break
            seen += chunk
    return seen


# --------------------------------------------------------------------------- Telnet

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA = 1, 3


class _MiniTelnet:
    """Just enough telnet to log in: accept ECHO/SGA from the server, refuse everything else."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.text = b""

    def close(self) -> None:
        self.sock.close()

    def _feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            b = data[i]
            if b != IAC:
                self.text += bytes([b])
                i += 1
                continue
            cmd = data[i + 1] if i + 1 < len(data) else None
            if cmd in (DO, DONT, WILL, WONT) and i + 2 < len(data):
                opt = data[i + 2]
                if cmd == DO:
                    self.sock.sendall(bytes([IAC, WONT, opt]))
                elif cmd == WILL:
                    self.sock.sendall(bytes([IAC, DO if opt in (ECHO, SGA) else DONT, opt]))
                i += 3
            elif cmd == SB:
                end = data.find(bytes([IAC, SE]), i)
                i = len(data) if end < 0 else end + 2
            else:
                i += 2

    def expect(self, marker: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{marker!r} not seen; got {self.text[-300:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(f"closed before {marker!r}; got {self.text[-300:]!r}")
            self._feed(chunk)
        seen, self.text = self.text, self.text[self.text.index(marker) + len(marker) :]
        return seen

    def send_line(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")


def test_telnet_login_reaches_prompt(telnetd: TelnetServer) -> None:
    t = _MiniTelnet(telnetd.host, telnetd.port)
    try:
        t.expect(b"login: ")
        t.send_line(telnetd.username)
        t.expect(b"Password:")
        t.send_line(telnetd.password)
        t.expect(b"guest@test:~$ ")
        t.send_line("echo $((6*7))-done")
        t.expect(b"42-done")
    finally:
        t.close()


def test_telnet_wrong_password(telnetd: TelnetServer) -> None:
    t = _MiniTelnet(telnetd.host, telnetd.port)
    try:
        t.expect(b"login: ")
        t.send_line(telnetd.username)
        t.expect(b"Password:")
        t.send_line("wrong")
        t.expect(b"Login incorrect", timeout=15)
    finally:
        t.close()


def test_stop_kills_connection_children() -> None:
    """stop() must also kill per-connection processes that left the process group."""
    server = TelnetServer().start()
    t = _MiniTelnet(server.host, server.port)
    try:
        t.expect(b"login: ")
        t.send_line(server.username)
        t.expect(b"Password:")
        t.send_line(server.password)
        t.expect(b"guest@test:~$ ")
        t.send_line("echo $$")
        shell_pid = int(t.expect(b"guest@test:~$ ").split()[-2])
        assert pid_alive(shell_pid)
        port = server.port
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert not pid_alive(shell_pid)
        with pytest.raises(TimeoutError):
            wait_port(server.host, port, timeout=0.2)
    finally:
        t.close()
        server.stop()


# ------------------------------------------------------------------------------ VNC


def _recvn(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {data!r}")
        data += chunk
    return data


def _rfb_security_types(host: str, port: int) -> tuple[bytes, list[int], socket.socket]:
    sock = socket.create_connection((host, port), timeout=10)
    version = _recvn(sock, 12)
    sock.sendall(b"RFB 003.008\n")
    count = _recvn(sock, 1)[0]
    return version, list(_recvn(sock, count)), sock


def _vnc_auth(sock: socket.socket, password: str) -> int:
    """Answer the VncAuth DES challenge; return the SecurityResult (0 = OK)."""
    challenge = _recvn(sock, 16)
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode()[:8].ljust(8, b"\0"))
    enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    sock.sendall(enc.update(challenge) + enc.finalize())
    result: int = struct.unpack(">I", _recvn(sock, 4))[0]
    return result


def _server_init(sock: socket.socket) -> tuple[int, int, str]:
    sock.sendall(b"\x01")  # ClientInit: shared
    width, height = struct.unpack(">HH", _recvn(sock, 4))
    _recvn(sock, 16)  # pixel format
    (name_len,) = struct.unpack(">I", _recvn(sock, 4))
    return width, height, _recvn(sock, name_len).decode()


@pytest.mark.parametrize("server_fixture", ["tigervnc", "x11vnc"])
def test_vnc_auth_and_screen(server_fixture: str, request: pytest.FixtureRequest) -> None:
    server: TigerVNCServer | X11VNCServer = request.getfixturevalue(server_fixture)
    version, types, sock = _rfb_security_types(server.host, server.port)
    with sock:
        assert version in (b"RFB 003.008\n", b"RFB 003.007\n")
        assert 2 in types  # VncAuth
        sock.sendall(b"\x02")
        assert _vnc_auth(sock, server.password) == 0
        width, height, _name = _server_init(sock)
        assert (width, height) == (server.width, server.height)
    _, _, sock = _rfb_security_types(server.host, server.port)
    with sock:
        sock.sendall(b"\x02")
        assert _vnc_auth(sock, "badpass") != 0
    shot = server.grab()
    assert shot.size == (server.width, server.height)
    assert count_colours(shot) > 16, "desktop should show a coloured root and an xterm"
    geometry = server.run_x(["xdotool", "getdisplaygeometry"], check=True).stdout.split()
    assert geometry == [str(server.width).encode(), str(server.height).encode()]


def test_tigervnc_security_none() -> None:
    with TigerVNCServer(security="None", geometry="800x600") as server:
        _, types, sock = _rfb_security_types(server.host, server.port)
        with sock:
            assert types == [1]
            sock.sendall(b"\x01")
            assert struct.unpack(">I", _recvn(sock, 4))[0] == 0
            assert _server_init(sock)[:2] == (800, 600)


def _vencrypt_subtypes(sock: socket.socket) -> list[int]:
    sock.sendall(b"\x13")  # VeNCrypt (19)
    assert _recvn(sock, 2) == b"\x00\x02"
    sock.sendall(b"\x00\x02")
    assert _recvn(sock, 1) == b"\x00"
    count = _recvn(sock, 1)[0]
    return list(struct.unpack(f">{count}I", _recvn(sock, 4 * count)))


TLS_VNC, TLS_PLAIN, X509_VNC, X509_PLAIN = 258, 259, 261, 262


@pytest.mark.parametrize("subtype", [TLS_VNC, TLS_PLAIN, X509_VNC, X509_PLAIN])
def test_tigervnc_vencrypt(tigervnc_vencrypt: TigerVNCServer, subtype: int) -> None:
    server = tigervnc_vencrypt
    _, types, raw = _rfb_security_types(server.host, server.port)
    assert types == [19]
    assert _vencrypt_subtypes(raw) == [TLS_VNC, TLS_PLAIN, X509_VNC, X509_PLAIN]
    raw.sendall(struct.pack(">I", subtype))
    assert _recvn(raw, 1) == b"\x01"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if subtype in (TLS_VNC, TLS_PLAIN):
        # Anonymous (EC)DH: OpenSSL only allows it up to TLS 1.2 at security level 0.
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("aNULL:@SECLEVEL=0")
    else:
        assert server.x509_cert is not None
        ctx.load_verify_locations(server.x509_cert)
    with ctx.wrap_socket(raw) as sock:
        if subtype in (TLS_VNC, X509_VNC):
            assert _vnc_auth(sock, server.password) == 0
        else:
            user, pw = server.plain_username.encode(), server.plain_password.encode()
            sock.sendall(struct.pack(">II", len(user), len(pw)) + user + pw)
            assert struct.unpack(">I", _recvn(sock, 4))[0] == 0
        assert _server_init(sock)[:2] == (server.width, server.height)


def test_free_port_and_wait_port() -> None:
    port = free_port()
    with pytest.raises(TimeoutError):
        wait_port("127.0.0.1", port, timeout=0.1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        wait_port("127.0.0.1", port, timeout=2)


def test_xterm_respawns_after_exit() -> None:
    def xterm_pids(server: TigerVNCServer) -> set[bytes]:
        # Window ids get reused by the next client, so compare the xterm processes instead.
        windows = server.run_x(["xdotool", "search", "--class", "XTerm"]).stdout.decode().split()
        return {server.run_x(["xdotool", "getwindowpid", w]).stdout.strip() for w in windows}

    with TigerVNCServer(security="None") as server:
        first = xterm_pids(server)
        assert len(first) == 1
        # No window manager: focus follows the pointer, so point at the xterm first.
        server.run_x(["xdotool", "mousemove", "200", "200"], check=True)
        server.run_x(["xdotool", "type", "--delay", "20", "exit\n"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = xterm_pids(server)
            if now and not now & first and b"" not in now:
                break
            time.sleep(0.1)
        else:
            pytest.fail("xterm was not respawned after `exit`")
        server.wait_xterm()
        assert count_colours(server.grab()) > 16


_SHM_HOLDER = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(0, 4096, 0o600 | 0o1000)  # IPC_PRIVATE, IPC_CREAT
assert shmid >= 0 and libc.shmat(shmid, None, 0) not in (None, ctypes.c_void_p(-1).value)
print(shmid, flush=True)
time.sleep(60)
"""


def _shm_ids() -> set[int]:
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(r.split()[1]) for r in rows}


def test_remove_orphan_shm_frees_a_segment_still_attached() -> None:
    """A killed x11vnc's MIT-SHM segments may still be attached by the X server for a
    moment (it detaches once it sees the client gone): they are marked, and the kernel
    frees them at the last detach, instead of leaking (34 per x11vnc, up to shmmni)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _SHM_HOLDER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        shmid = int(holder.stdout.readline())
        assert shmid in _shm_ids()
        remove_orphan_shm([holder.pid])  # still attached by its creator here
        assert shmid in _shm_ids()  # only marked: the holder still uses it
    finally:
        holder.kill()
        holder.wait(5)
    deadline = time.monotonic() + 5
    while shmid in _shm_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shmid not in _shm_ids()
