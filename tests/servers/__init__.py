"""Real SSH, Telnet and VNC servers on 127.0.0.1 for guacr's protocol tests.

The handlers must be tested against the servers users really run, not mocks, so these
helpers start OpenSSH, inetutils telnetd (behind socat) and two VNC servers (TigerVNC and
Xvfb + x11vnc) in a scratch directory on free loopback ports. Each server is an object
with ``start()`` / ``stop()`` that is also a context manager; ``start()`` returns only when
the server really answers (port open plus a protocol check), and ``stop()`` kills every
process the server spawned, by PID, including per-connection children that left the
process group (sshd sessions, telnet logins).

Debian packages and the ``guest`` account come from ``scripts/install-test-deps.sh``
(one package list per server in ``scripts/test-deps/``). This package is the one place
test servers are started: the SSH, Telnet and VNC servers live here; each server added
later gets a module of its own beside this file (``servers/xrdp.py``, ``servers/mariadb.py``
...) built on ``_Server``, with its packages in its own ``scripts/test-deps/<name>.list``,
so work on different servers never edits the same lines.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
from PIL import Image

HOST = "127.0.0.1"
TEST_USER = "guest"
TEST_PASSWORD = "guest"
KEY_PASSPHRASE = "secret-pass"
XTERM_FONT = "DejaVu Sans Mono"
XTERM_FONT_SIZE = 14
ROOT_COLOUR = "#2f5f8f"

# Scratch space. sshd's StrictModes rejects an AuthorizedKeysFile below a world-writable
# directory such as /tmp, so as root (always, in CI) we use a root-owned 0755 tree in /run.
if os.geteuid() == 0:
    SCRATCH_ROOT = Path("/run/guacr-tests")
else:
    SCRATCH_ROOT = Path(tempfile.gettempdir()) / f"guacr-tests-{os.geteuid()}"


# --------------------------------------------------------------------------- ports


_given_ports: set[int] = set()


def free_port() -> int:
    """Return a loopback TCP port that is free right now (the caller binds it soon),
    never one handed out before in this test process: two calls in a row (a daemon's
    port and its metrics port, before either binds) must not get the same one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts a TCP connection; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{host}:{port} did not accept within {timeout}s") from None
            time.sleep(0.02)


def wait_listening(port: int, timeout: float = 60.0) -> None:
    """Block until something listens on loopback TCP ``port``, without connecting (the
    first connection may be the one that matters: a reverse VNC connection)."""
    want = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while True:
        with open("/proc/net/tcp") as f:
            if any(
                fields[1] == want and fields[3] == "0A"  # local address, state LISTEN
                for fields in (line.split() for line in f.readlines()[1:])
            ):
                return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
        time.sleep(0.02)


def read_greeting(host: str, port: int, nbytes: int, timeout: float = 5.0) -> bytes:
    """Connect and read up to ``nbytes`` the server sends first (SSH/RFB banners, IAC)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < nbytes and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(nbytes - len(data))
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data


def _wait_greeting(
    host: str, port: int, prefix: bytes, timeout: float, alive: subprocess.Popen[bytes]
) -> None:
    """Poll until the server's first bytes start with ``prefix`` (a protocol-level check)."""
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        if alive.poll() is not None:
            raise ServerError(f"server exited with {alive.returncode} before answering")
        try:
            last = read_greeting(host, port, len(prefix), timeout=2.0)
            if last.startswith(prefix):
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{host}:{port} did not send {prefix!r} within {timeout}s (got {last!r})")


# ------------------------------------------------------------------- process trees


class ServerError(RuntimeError):
    """A test server failed to start; the message includes the end of its log."""


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, starttime) of ``pid`` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) for every live process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st is not None and st[0] != "Z":
                table[int(entry.name)] = (st[1], st[2])
    return table


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie awaiting its reaper counts as dead)."""
    st = _proc_stat(pid)
    return st is not None and st[0] != "Z"


def kill_tree(roots: Iterable[int], timeout: float = 1.0) -> None:
    """SIGTERM the given processes, their process groups and all descendants; SIGKILL the rest.

    Interactive shells ignore SIGTERM, hence the short grace period before SIGKILL.

    The tree is snapshotted first: once a parent dies its children are re-parented to init
    and could no longer be found.
    """
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    roots = [r for r in roots if r > 1]
    victims: set[int] = set()
    todo = [r for r in roots if r in table]
    todo += [pid for pid, (_, pgid) in table.items() if pgid in roots]
    while todo:
        pid = todo.pop()
        if pid in victims or pid == os.getpid():
            continue
        victims.add(pid)
        todo.extend(children.get(pid, ()))
    killed = set(victims)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Reap our own children so they don't linger as zombies.
            for pid in victims:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            victims = {p for p in victims if pid_alive(p)}
            if not victims:
                break
            time.sleep(0.02)
        if not victims:
            break
    remove_orphan_shm(killed)


def remove_orphan_shm(pids: Iterable[int]) -> None:
    """Remove the SysV shared-memory segments that ``pids`` (killed) created. x11vnc
    killed in a test leaves its MIT-SHM segments behind: a machine that ran the suite
    many times reached the kernel's 4096 (``shmmni``) and x11vnc then failed with
    "shmget(fullscreen) failed". A segment still attached (an X server slow to exit
    under load) is only marked: the kernel frees it when the last process detaches."""
    pids = set(pids)
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return
    shmctl = None
    for row in rows:
        fields = row.split()  # key shmid perms size cpid lpid nattch ...
        if len(fields) < 7 or int(fields[4]) not in pids:
            continue
        if shmctl is None:
            import ctypes

            shmctl = ctypes.CDLL(None, use_errno=True).shmctl
        shmctl(int(fields[1]), 0, None)  # IPC_RMID


def _starttime(pid: int) -> int | None:
    st = _proc_stat(pid)
    return None if st is None else st[3]


def reap_orphans() -> None:
    """Kill servers left behind by earlier test runs that died without cleaning up.

    Each scratch directory records its owner (pid + start time, so a reused pid is not
    mistaken for the owner) and its server processes.
    """
    if not SCRATCH_ROOT.is_dir():
        return
    for d in SCRATCH_ROOT.iterdir():
        try:
            owner_pid, owner_start = map(int, (d / "owner").read_text().split())
        except (OSError, ValueError):
            continue
        if _starttime(owner_pid) == owner_start:
            continue  # its owner is still running
        roots = []
        with contextlib.suppress(OSError):
            for line in (d / "procs").read_text().splitlines():
                pid, start = map(int, line.split())
                if _starttime(pid) == start:
                    roots.append(pid)
        kill_tree(roots)
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------ base class


class _Server:
    """Scratch directory, process bookkeeping and context-manager plumbing."""

    kind = "server"
    host = HOST
    port = 0

    def __init__(self) -> None:
        self.dir: Path = Path()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pid(self) -> int:
        """PID of the main server process."""
        return self.procs[0].pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} pids={self.pids}>"

    def start(self) -> Self:
        reap_orphans()
        SCRATCH_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-", dir=SCRATCH_ROOT))
        # 0755: guest must reach authorized_keys; secrets inside stay 0600.
        self.dir.chmod(0o755)
        (self.dir / "owner").write_text(f"{os.getpid()} {_starttime(os.getpid())}\n")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Kill every process of this server (idempotent) and remove the scratch dir."""
        kill_tree([p.pid for p in self.procs])
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=1)
        self.procs.clear()
        if self.dir != Path() and not os.environ.get("GUACR_KEEP_TEST_SCRATCH"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, name: str | None = None) -> str:
        """Text of a server log in the scratch dir (for assertions and failure messages)."""
        path = self.dir / (name or f"{self.kind}.log")
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def _spawn(
        self,
        argv: Sequence[str],
        log_name: str,
        *,
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
        as_user: str | None = None,
        cwd: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session, output appended to a scratch log file."""
        uid = gid = None
        groups: list[int] | None = None
        if as_user is not None and os.geteuid() == 0:
            pw = pwd.getpwnam(as_user)
            uid, gid, groups = pw.pw_uid, pw.pw_gid, []
        with open(self.dir / log_name, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
                env=env,
                cwd=cwd,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        self.procs.append(proc)
        with open(self.dir / "procs", "a") as f:
            f.write(f"{proc.pid} {_starttime(proc.pid) or 0}\n")
        return proc

    def _fail(self, what: str, log_name: str | None = None) -> ServerError:
        tail = "\n".join(self.log(log_name).splitlines()[-15:])
        return ServerError(f"{type(self).__name__}: {what}\n--- log tail ---\n{tail}")


# ------------------------------------------------------------------------------ SSH


CLIENT_KEYS = ("ed25519", "rsa", "rsa_openssh", "ecdsa", "ed25519_pass")


class SSHServer(_Server):
    """OpenSSH sshd with its own config, host keys and client keys for ``guest``.

    ``keys`` maps a key name to a private key file whose public half is in the server's
    authorized_keys: ``ed25519`` (OpenSSH format), ``rsa`` (3072-bit PEM, the format old
    libssh2 wants), ``rsa_openssh``, ``ecdsa`` and ``ed25519_pass`` (encrypted with
    ``passphrase``). ``host_key`` is the server's ed25519 host key as ``"ssh-ed25519 AAAA.."``
    and ``known_hosts_line`` the matching known_hosts entry for host-key verification tests.
    ``extra_config`` lines are appended to sshd_config (e.g. ``PubkeyAcceptedAlgorithms
    +ssh-rsa`` to allow SHA-1 RSA signatures). ``certificates["ed25519_cert"]`` is an
    OpenSSH user certificate for ``guest`` signed by an ed25519 CA the server trusts
    (``TrustedUserCAKeys``) for the key ``keys["ed25519_cert"]``, which is not in
    authorized_keys: only certificate authentication lets it in.
    """

    kind = "sshd"

    def __init__(self, extra_config: Sequence[str] = ()) -> None:
        super().__init__()
        self.username = TEST_USER
        self.password = TEST_PASSWORD
        self.passphrase = KEY_PASSPHRASE
        self.keys: dict[str, Path] = {}
        self.certificates: dict[str, Path] = {}
        self.host_keys: dict[str, str] = {}
        self.extra_config = list(extra_config)

    @property
    def host_key(self) -> str:
        return self.host_keys["ed25519"]

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key}"

    def public_key(self, name: str) -> str:
        """The ``"type base64"`` public half of client key ``name`` (see ``keys``)."""
        return " ".join(self.keys[name].with_suffix(".pub").read_text().split()[:2])

    def _keygen(self) -> None:
        """Generate host and client keys concurrently (RSA-3072 dominates the time)."""
        jobs: dict[str, list[str]] = {
            "ssh_host_ed25519_key": ["-t", "ed25519"],
            "ssh_host_rsa_key": ["-t", "rsa", "-b", "3072"],
            "ed25519": ["-t", "ed25519"],
            "rsa": ["-t", "rsa", "-b", "3072", "-m", "PEM"],
            "rsa_openssh": ["-t", "rsa", "-b", "3072"],
            "ecdsa": ["-t", "ecdsa", "-b", "256"],
            "ed25519_pass": ["-t", "ed25519", "-N", self.passphrase],
            "user_ca": ["-t", "ed25519"],
            "ed25519_cert": ["-t", "ed25519"],
        }
        procs = []
        for name, args in jobs.items():
            argv = [
                "ssh-keygen",
                "-q",
                *args,
                "-C",
                f"guacr-test-{name}",
                "-f",
                str(self.dir / name),
            ]
            if "-N" not in args:
                argv += ["-N", ""]
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for p in procs:
            _, err = p.communicate(timeout=60)
            if p.returncode:
                raise ServerError(f"ssh-keygen failed: {err.decode(errors='replace')}")
        for name in ("ed25519", "rsa"):
            pub = (self.dir / f"ssh_host_{name}_key.pub").read_text().split()
            self.host_keys[name] = f"{pub[0]} {pub[1]}"
        self.keys = {name: self.dir / name for name in (*CLIENT_KEYS, "ed25519_cert")}
        sign = ["ssh-keygen", "-q", "-s", str(self.dir / "user_ca"), "-I", "guacr-test"]
        sign += ["-n", self.username, "-V", "-5m:+1d", str(self.dir / "ed25519_cert.pub")]
        signed = subprocess.run(sign, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if signed.returncode:
            raise ServerError(f"ssh-keygen -s failed: {signed.stderr.decode(errors='replace')}")
        self.certificates["ed25519_cert"] = self.dir / "ed25519_cert-cert.pub"
        authorized = "".join((self.dir / f"{name}.pub").read_text() for name in CLIENT_KEYS)
        auth_file = self.dir / "authorized_keys"
        auth_file.write_text(authorized)
        auth_file.chmod(0o644)

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.dir / 'ssh_host_ed25519_key'}",
            f"HostKey {self.dir / 'ssh_host_rsa_key'}",
            "PidFile none",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication yes",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            f"TrustedUserCAKeys {self.dir / 'user_ca.pub'}",
            "UsePAM yes",
            "UseDNS no",
            f"AllowUsers {self.username}",
            "PermitRootLogin no",
            "Subsystem sftp internal-sftp",
            "MaxStartups 300:30:600",
            "MaxSessions 300",
            "MaxAuthTries 10",
            "PrintMotd no",
            "AcceptEnv LANG LC_* TZ",
            "LogLevel VERBOSE",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def _start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._keygen()
        config = self.dir / "sshd_config"
        for _attempt in range(3):
            self.port = free_port()
            config.write_text(self._config())
            check = subprocess.run(
                ["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, timeout=30
            )
            if check.returncode:
                raise ServerError(f"sshd -t rejected the config: {check.stderr.decode()}")
            proc = self._spawn(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], "sshd.log")
            try:
                _wait_greeting(self.host, self.port, b"SSH-2.0-", 15.0, proc)
                return
            except (ServerError, TimeoutError):
                if "Address already in use" not in self.log():
                    raise self._fail("sshd did not start") from None
                kill_tree([proc.pid])
                self.procs.remove(proc)
        raise self._fail("no free port for sshd after 3 attempts")


# --------------------------------------------------------------------------- Telnet


class TelnetServer(_Server):
    """inetutils telnetd behind socat, one telnetd per connection, /bin/login as guest.

    telnetd is inetd-style (the socket is its stdin/stdout); socat's ``nofork`` hands it
    the TCP socket directly, as inetd would, so ``getpeername()`` works.
    """

    kind = "telnetd"

    def __init__(self) -> None:
        super().__init__()
        self.username = TEST_USER
        self.password = TEST_PASSWORD

    def _start(self) -> None:
        for _attempt in range(3):
            self.port = free_port()
            proc = self._spawn(
                [
                    "socat",
                    f"TCP-LISTEN:{self.port},bind={self.host},reuseaddr,fork",
                    "EXEC:/usr/sbin/telnetd -h,nofork",
                ],
                "telnetd.log",
            )
            try:
                # telnetd opens with option negotiation: the first byte is IAC (255).
                _wait_greeting(self.host, self.port, b"\xff", 10.0, proc)
                return
            except (ServerError, TimeoutError):
                if "Address already in use" not in self.log():
                    raise self._fail("socat/telnetd did not start") from None
                kill_tree([proc.pid])
                self.procs.remove(proc)
        raise self._fail("no free port for socat after 3 attempts")


# ------------------------------------------------------------------------------ VNC


def parse_xwd(data: bytes) -> Image.Image:
    """Decode an ``xwd`` dump of a TrueColor screen (16/24/32 bpp) into an RGB image.

    Pillow has no XWD reader; the format is a big-endian header, a colour table and raw
    ZPixmap rows, so a few lines of numpy do it.
    """
    hdr = np.frombuffer(data, dtype=">u4", count=25)
    header_size, version, fmt, _depth, width, height = (int(v) for v in hdr[:6])
    byte_order, bpp, bytes_per_line = int(hdr[7]), int(hdr[11]), int(hdr[12])
    masks = [int(m) for m in hdr[14:17]]
    ncolors = int(hdr[19])
    if version != 7 or fmt != 2 or bpp not in (16, 32):
        raise ValueError(f"unsupported xwd image (version {version}, format {fmt}, {bpp} bpp)")
    offset = header_size + 12 * ncolors
    endian = ">" if byte_order == 1 else "<"
    dtype = np.dtype(f"{endian}u{bpp // 8}")
    rows = np.frombuffer(
        data, dtype=dtype, count=height * bytes_per_line // dtype.itemsize, offset=offset
    )
    pixels = rows.reshape(height, -1)[:, :width].astype(np.uint32)
    channels = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        value = (pixels & mask) >> shift
        top = mask >> shift
        channels.append((value * 255 // top).astype(np.uint8))
    return Image.fromarray(np.dstack(channels), "RGB")


def count_colours(img: Image.Image) -> int:
    """Number of distinct RGB colours (a flat desktop has 1, xterm text dozens)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint32)
    packed = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    return len(np.unique(packed))


DISPLAY_BASE = 40  # X displays :40..:139 are ours
DISPLAY_SPAN = 100


def _clean_stale_x_locks() -> None:
    """Remove /tmp/.X<N>-lock files (and sockets) whose server process is dead.

    A SIGKILLed X server leaves them behind and the display number is then refused.
    """
    for lock in Path("/tmp").glob(".X*-lock"):
        try:
            pid = int(lock.read_text().strip())
        except (OSError, ValueError):
            continue
        if not pid_alive(pid):
            num = lock.name[2:-5]
            with contextlib.suppress(OSError):
                lock.unlink()
                Path(f"/tmp/.X11-unix/X{num}").unlink(missing_ok=True)


def _vnc_password_file(path: Path, password: str) -> None:
    """Write a VNC password file (DES-obfuscated, first 8 chars) with tigervncpasswd."""
    out = subprocess.run(
        ["tigervncpasswd", "-f"],
        input=f"{password}\n".encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    path.write_bytes(out)
    path.chmod(0o600)


class _XDesktop(_Server):
    """An X server whose screen shows a coloured root and an xterm, exported over VNC."""

    def __init__(self, geometry: str, password: str) -> None:
        super().__init__()
        self.geometry = geometry
        self.password = password
        self.display = ""

    @property
    def width(self) -> int:
        return int(self.geometry.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.geometry.split("x")[1])

    def x_env(self) -> dict[str, str]:
        """Clean environment for X clients on this display."""
        return {
            "DISPLAY": self.display,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
        }

    def run_x(
        self,
        cmd: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = 30.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run an X client (xdotool, xrandr, xwd, xclip...) against this display."""
        return subprocess.run(
            list(cmd),
            input=input,
            env=self.x_env(),
            capture_output=True,
            timeout=timeout,
            check=check,
        )

    def grab(self) -> Image.Image:
        """The X server's own view of the whole screen (to compare with what VNC shows)."""
        return parse_xwd(self.run_x(["xwd", "-root", "-silent"], check=True).stdout)

    def _start_x(self, argv: Sequence[str], log_name: str) -> subprocess.Popen[bytes]:
        """Start an X server on a free display and return once it accepts clients.

        Displays come from a high range so hand-started servers on :0/:1 (as in most
        how-tos) don't collide with ours; -displayfd tells us when the server is ready.
        """
        _clean_stale_x_locks()
        x11_dir = Path("/tmp/.X11-unix")
        x11_dir.mkdir(exist_ok=True)
        with contextlib.suppress(PermissionError):
            x11_dir.chmod(0o1777)
        first = DISPLAY_BASE + secrets.randbelow(DISPLAY_SPAN)
        tried = 0
        for n in range(DISPLAY_SPAN):
            num = DISPLAY_BASE + (first - DISPLAY_BASE + n) % DISPLAY_SPAN
            if Path(f"/tmp/.X{num}-lock").exists() or Path(f"/tmp/.X11-unix/X{num}").exists():
                continue
            proc = self._spawn_x([*argv[:1], f":{num}", *argv[1:]], log_name)
            if proc is not None:
                self.display = f":{num}"
                return proc
            tried += 1
            if tried >= 5:
                break
        raise self._fail("X server did not start on any free display", log_name)

    def _spawn_x(self, argv: Sequence[str], log_name: str) -> subprocess.Popen[bytes] | None:
        """Run one X server attempt; None if the display was taken meanwhile."""
        rfd, wfd = os.pipe()
        try:
            proc = self._spawn([*argv, "-displayfd", str(wfd)], log_name, pass_fds=[wfd])
        finally:
            os.close(wfd)
        buf = b""
        deadline = time.monotonic() + 15.0
        try:
            while not buf.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([rfd], [], [], left)[0]:
                    raise self._fail("X server did not report its display", log_name)
                chunk = os.read(rfd, 16)
                if not chunk:
                    break
                buf += chunk
        finally:
            os.close(rfd)
        if buf.endswith(b"\n"):
            return proc
        proc.wait(timeout=5)
        self.procs.remove(proc)
        if "already active" in self.log(log_name):
            return None
        raise self._fail(f"X server exited with {proc.returncode} before it was ready", log_name)

    def _populate(self) -> None:
        """Colour the root and start a respawning xterm as guest; wait until it shows text."""
        self.run_x(["xsetroot", "-solid", ROOT_COLOUR], check=True)
        xterm = [
            "xterm",
            "-geometry", "80x24+10+10",
            "-fa", XTERM_FONT,
            "-fs", str(XTERM_FONT_SIZE),
            "-bg", "white",
            "-fg", "black",
            "-xrm", "XTerm*allowSendEvents:true",
            "-e", "/bin/bash", "-l",
        ]  # fmt: skip
        # Respawn so a typed `exit` doesn't leave an empty desktop; stop when X is gone.
        loop = (
            f"while [ -d /proc/{self.pid} ]; do {subprocess.list2cmdline(xterm)}; sleep 0.3; done"
        )
        home = pwd.getpwnam(TEST_USER).pw_dir if os.geteuid() == 0 else str(self.dir)
        env = {
            "HOME": home,
            "USER": TEST_USER,
            "LOGNAME": TEST_USER,
            "SHELL": "/bin/bash",
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "DISPLAY": self.display,
        }
        self._spawn(["/bin/sh", "-c", loop], "xterm.log", env=env, as_user=TEST_USER, cwd=home)
        self.wait_xterm()

    def wait_xterm(self, timeout: float = 15.0) -> None:
        """Wait until an xterm is mapped and has drawn text (its prompt)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.run_x(["xdotool", "search", "--onlyvisible", "--class", "XTerm"])
            if found.returncode == 0 and count_colours(self.grab()) >= 8:
                return
            time.sleep(0.1)
        raise self._fail("xterm did not appear on the desktop", "xterm.log")


# TigerVNC -SecurityTypes lists behind the ``security`` shorthands. "VeNCrypt" lists the
# anonymous-TLS subtypes first (no certificate for the client to check), then X509 ones,
# for which a self-signed certificate is generated.
VNC_SECURITY = {
    "None": "None",
    "VncAuth": "VncAuth",
    "VeNCrypt": "TLSVnc,TLSPlain,X509Vnc,X509Plain",
}


class TigerVNCServer(_XDesktop):
    """Xtigervnc (an X server with a built-in VNC server) showing a root colour and xterm.

    ``security`` is ``"VncAuth"``, ``"VeNCrypt"``, ``"None"`` or a raw TigerVNC
    ``-SecurityTypes`` list such as ``"TLSNone"`` or ``"X509Plain"``. Plain subtypes log in
    ``plain_username``/``plain_password`` (the guest account, through PAM); X509 ones use
    a per-run self-signed certificate at ``x509_cert``. ``accept_resize`` lets clients
    change the desktop size (SetDesktopSize); off by default so the geometry stays fixed.
    """

    kind = "tigervnc"

    def __init__(
        self,
        security: str = "VncAuth",
        geometry: str = "1024x768",
        password: str = "guestvnc",
        accept_resize: bool = False,
    ) -> None:
        super().__init__(geometry, password)
        self.security = security
        self.security_types = VNC_SECURITY.get(security, security)
        self.accept_resize = accept_resize
        self.plain_username = TEST_USER
        self.plain_password = TEST_PASSWORD
        self.x509_cert: Path | None = None
        self.x509_key: Path | None = None

    def _security_args(self) -> list[str]:
        args = ["-SecurityTypes", self.security_types]
        types = self.security_types.lower()
        if "vnc" in types:
            pwfile = self.dir / "vncpasswd"
            _vnc_password_file(pwfile, self.password)
            args += ["-PasswordFile", str(pwfile)]
        if "plain" in types:
            # Debian ships the PAM service as "tigervnc"; Xvnc's default name is "vnc".
            args += ["-PlainUsers", self.plain_username, "-PAMService", "tigervnc"]
        if "x509" in types:
            self.x509_cert, self.x509_key = _self_signed_cert(self.dir)
            args += ["-X509Cert", str(self.x509_cert), "-X509Key", str(self.x509_key)]
        return args

    def _start(self) -> None:
        security = self._security_args()
        for _attempt in range(3):
            self.port = free_port()
            argv = [
                "Xtigervnc",
                "-rfbport", str(self.port),
                "-interface", self.host,
                "-localhost=1",
                "-nolisten", "tcp",
                "-AlwaysShared",
                f"-AcceptSetDesktopSize={int(self.accept_resize)}",
                "-geometry", self.geometry,
                "-depth", "24",
                "-desktop", "guacr-test",
                *security,
            ]  # fmt: skip
            proc = self._start_x(argv, "tigervnc.log")
            try:
                _wait_greeting(self.host, self.port, b"RFB 003.", 10.0, proc)
                break
            except (ServerError, TimeoutError):
                if "Address already in use" not in self.log():
                    raise self._fail("Xtigervnc did not answer RFB") from None
                kill_tree([proc.pid])
                self.procs.remove(proc)
        else:
            raise self._fail("no free port for Xtigervnc after 3 attempts")
        self._populate()


class X11VNCServer(_XDesktop):
    """Xvfb plus x11vnc (which polls the framebuffer), with the same desktop as TigerVNC.

    ``security`` is ``"VncAuth"`` (``-rfbauth`` with ``password``) or ``"None"``.
    """

    kind = "x11vnc"

    def __init__(
        self, security: str = "VncAuth", geometry: str = "1024x768", password: str = "guestvnc"
    ) -> None:
        super().__init__(geometry, password)
        if security not in ("VncAuth", "None"):
            raise ValueError("x11vnc helper supports security 'VncAuth' or 'None'")
        self.security = security

    def _start(self) -> None:
        self._start_x(
            ["Xvfb", "-screen", "0", f"{self.geometry}x24", "-nolisten", "tcp"], "xvfb.log"
        )
        if self.security == "VncAuth":
            pwfile = self.dir / "vncpasswd"
            _vnc_password_file(pwfile, self.password)
            auth = ["-rfbauth", str(pwfile)]
        else:
            auth = ["-nopw"]
        for _attempt in range(3):
            self.port = free_port()
            argv = [
                "x11vnc",
                "-display", self.display,
                "-norc",
                "-nonap", "-wait", "5", "-defer", "5",
                "-forever", "-shared",
                "-listen", self.host, "-noipv6",
                "-rfbport", str(self.port), "-rfbportv6", "-1",  # loopback IPv4 only
                "-noxdamage",
                *auth,
            ]  # fmt: skip
            proc = self._spawn(argv, "x11vnc.log", env=self.x_env())
            try:
                _wait_greeting(self.host, self.port, b"RFB 003.", 15.0, proc)
                break
            except (ServerError, TimeoutError):
                if "Address already in use" not in self.log():
                    raise self._fail("x11vnc did not answer RFB") from None
                kill_tree([proc.pid])
                self.procs.remove(proc)
        else:
            raise self._fail("no free port for x11vnc after 3 attempts")
        self._populate()


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for CN/SAN 127.0.0.1 (X509* VeNCrypt types)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(8), "big"))
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "x509.crt", directory / "x509.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
