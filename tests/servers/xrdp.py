"""xrdp 0.9 + xorgxrdp on 127.0.0.1: the RDP server guacr's RDP handler is tested against.

xrdp (the RDP front end) and xrdp-sesman (the session manager) run in the foreground
from copies of Debian's configuration in the scratch directory, on free loopback ports.
xrdp reads sesman's port from ``/etc/xrdp/sesman.ini`` whatever ``--config`` says, and
both keep pid files and sockets in ``/run/xrdp``, so each runs in its own mount
namespace (``unshare -m``) where our copy is bind-mounted over ``/etc/xrdp/sesman.ini``
and a scratch directory over ``/run/xrdp``: test runs on one machine do not collide,
and nothing outside the scratch directory is touched.

``start()`` creates guest's Xorg session up front with ``xrdp-sesrun`` (1024x768) and
waits until its xterm shows; every later RDP login as guest is *reconnected* to that
same X display, so RDP tests share one desktop and run one after another. The session
runs this module's window-manager script instead of ``~/.xsession``: a coloured root
and a respawning xterm, as on the VNC desktops (no window manager: focus follows the
pointer). ``stop()`` kills xrdp, sesman and the session (Xorg, chansrv, xterm) by PID.

Security: ``security_layer=negotiate`` (TLS with the client's choice; xrdp 0.9 has no
NLA). The TLS certificate is Debian's self-signed snakeoil one at ``certificate``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

from servers import (
    HOST,
    ROOT_COLOUR,
    TEST_PASSWORD,
    TEST_USER,
    XTERM_FONT,
    XTERM_FONT_SIZE,
    ServerError,
    _Server,
    count_colours,
    free_port,
    kill_tree,
    parse_xwd,
    wait_port,
)

GEOMETRY = (1024, 768)
ETC = Path("/etc/xrdp")


def _set(ini: str, section: str, key: str, value: str) -> str:
    """Set ``key`` in ``[section]`` of an xrdp ini text (first occurrence only).

    xrdp.ini has several ``port=`` lines (the listener's, then one per session
    section), so a global replace would break the sessions.
    """
    lines = ini.splitlines()
    current = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if current == section:
                lines.insert(i, f"{key}={value}")
                return "\n".join(lines) + "\n"
            current = stripped[1:-1]
            continue
        if current == section and re.match(rf"#?\s*{re.escape(key)}\s*=", stripped):
            lines[i] = f"{key}={value}"
            return "\n".join(lines) + "\n"
    if current == section:
        lines.append(f"{key}={value}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"no [{section}] in ini")


class XrdpServer(_Server):
    """xrdp + sesman with guest's xorgxrdp session (``display``) already running."""

    kind = "xrdp"

    def __init__(self) -> None:
        super().__init__()
        self.username = TEST_USER
        self.password = TEST_PASSWORD
        self.width, self.height = GEOMETRY
        self.display = ""
        self.certificate = ETC / "cert.pem"
        self.sesman_port = 0

    @property
    def cert_fingerprint(self) -> str:
        """SHA-256 of the server certificate's DER, as ``sha256:aa:bb:..`` (lower case)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = x509.load_pem_x509_certificate(self.certificate.read_bytes())
        der = cert.public_bytes(Encoding.DER)
        digest = hashlib.sha256(der).hexdigest()
        return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    # --------------------------------------------------------------------- config
    def _write_config(self) -> tuple[Path, Path]:
        xrdp = (ETC / "xrdp.ini").read_text()
        for key, value in (
            ("port", f"tcp://.:{self.port}"),
            ("certificate", str(ETC / "cert.pem")),
            ("key_file", str(ETC / "key.pem")),
            ("security_layer", "negotiate"),
            ("max_bpp", "32"),
            ("fork", "true"),
        ):
            xrdp = _set(xrdp, "Globals", key, value)
        for key, value in (
            ("LogFile", str(self.dir / "xrdp.log")),
            ("LogLevel", "INFO"),
            ("EnableSyslog", "false"),
        ):
            xrdp = _set(xrdp, "Logging", key, value)
        wm = self.dir / "session.sh"
        wm.write_text(self._session_script())
        wm.chmod(0o755)
        sesman = (ETC / "sesman.ini").read_text()
        for key, value in (
            ("ListenAddress", HOST),
            ("ListenPort", str(self.sesman_port)),
            ("EnableUserWindowManager", "false"),
            ("DefaultWindowManager", str(wm)),
        ):
            sesman = _set(sesman, "Globals", key, value)
        sesman = _set(sesman, "Sessions", "KillDisconnected", "false")
        for key, value in (
            ("LogFile", str(self.dir / "sesman.log")),
            ("LogLevel", "INFO"),
            ("EnableSyslog", "false"),
        ):
            sesman = _set(sesman, "Logging", key, value)
        sesman = _set(sesman, "ChansrvLogging", "EnableSyslog", "false")
        xrdp_ini, sesman_ini = self.dir / "xrdp.ini", self.dir / "sesman.ini"
        xrdp_ini.write_text(xrdp)
        sesman_ini.write_text(sesman)
        return xrdp_ini, sesman_ini

    def _session_script(self) -> str:
        xterm = subprocess.list2cmdline(
            [
                "xterm",
                "-geometry", "80x24+10+10",
                "-fa", XTERM_FONT,
                "-fs", str(XTERM_FONT_SIZE),
                "-bg", "white",
                "-fg", "black",
                "-xrm", "XTerm*allowSendEvents:true",
                "-e", "/bin/bash", "-l",
            ]
        )  # fmt: skip
        return (
            "#!/bin/sh\n"
            "# guacr test session: coloured root, respawning xterm, no window manager.\n"
            f"xsetroot -solid '{ROOT_COLOUR}'\n"
            f"while true; do {xterm}; sleep 0.3; done\n"
        )

    # ---------------------------------------------------------------------- start
    def _private(self, argv: list[str]) -> list[str]:
        """``argv`` in a mount namespace seeing our sesman.ini and /run/xrdp."""
        binds = (
            f"mount --bind {self.dir / 'sesman.ini'} {ETC / 'sesman.ini'}"
            f" && mount --bind {self.dir / 'run'} /run/xrdp"
        )
        return ["unshare", "-m", "sh", "-c", f'{binds} && exec "$@"', "sh", *argv]

    def _start(self) -> None:
        run = self.dir / "run"
        (run / "sockdir").mkdir(parents=True)
        (run / "sockdir").chmod(0o3777)
        Path("/run/xrdp").mkdir(exist_ok=True)  # the mount point
        for _attempt in range(3):
            self.port, self.sesman_port = free_port(), free_port()
            xrdp_ini, sesman_ini = self._write_config()
            sesman = self._spawn(
                self._private(["xrdp-sesman", "--nodaemon", "--config", str(sesman_ini)]),
                "sesman.out",
            )
            try:
                # sesman (an IPv6 build) listens on ::1 although its ini says 127.0.0.1.
                wait_port("::1", self.sesman_port, 10.0)
                break
            except TimeoutError:
                kill_tree([sesman.pid])
                self.procs.remove(sesman)
        else:
            raise self._fail("xrdp-sesman did not listen", "sesman.out")
        self._spawn(self._private(["xrdp", "--nodaemon", "--config", str(xrdp_ini)]), "xrdp.out")
        try:
            wait_port(self.host, self.port, 10.0)
        except TimeoutError:
            raise self._fail("xrdp did not listen", "xrdp.out") from None
        self._create_session()
        self.wait_xterm()

    def _create_session(self) -> None:
        """Start guest's Xorg session through sesman, as the first RDP login would."""
        w, h = GEOMETRY
        # -s: without it sesrun tries "localhost", which may not reach sesman.
        argv = self._private([
            "xrdp-sesrun", "-s", HOST, "-c", str(self.dir / "sesman.ini"),
            "-g", f"{w}x{h}", "-b", "24", "-t", "Xorg", "-p", self.password, self.username,
        ])  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        m = re.search(r"display=:(\d+)", proc.stdout)
        if proc.returncode == 0 and m:
            self.display = f":{m.group(1)}"
            return
        raise self._fail(
            f"no Xorg session for guest (sesrun: {proc.stdout}{proc.stderr})", "sesman.log"
        )

    # ---------------------------------------------------------------------- X side
    def x_env(self) -> dict[str, str]:
        """Environment for X clients run by root on guest's session display."""
        home = pwd.getpwnam(TEST_USER).pw_dir
        return {
            "DISPLAY": self.display,
            "XAUTHORITY": f"{home}/.Xauthority",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
        }

    def run_x(
        self,
        cmd: list[str],
        *,
        input: bytes | None = None,
        timeout: float = 30.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run an X client (xdotool, xwd, xclip, xdpyinfo...) on the session display."""
        return subprocess.run(
            cmd, input=input, env=self.x_env(), capture_output=True, timeout=timeout, check=check
        )

    def grab(self):  # type: ignore[no-untyped-def]
        """The X server's own view of the whole screen (an RGB PIL image)."""
        return parse_xwd(self.run_x(["xwd", "-root", "-silent"], check=True).stdout)

    def screen_size(self) -> tuple[int, int]:
        out = self.run_x(["xdpyinfo"], check=True).stdout.decode()
        m = re.search(r"dimensions:\s+(\d+)x(\d+)", out)
        assert m, out
        return int(m.group(1)), int(m.group(2))

    def wait_xterm(self, timeout: float = 20.0) -> None:
        """Wait until the xterm is mapped and has drawn its prompt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.run_x(["xdotool", "search", "--onlyvisible", "--class", "XTerm"])
            if found.returncode == 0:
                with contextlib.suppress(subprocess.CalledProcessError, ValueError):
                    if count_colours(self.grab()) >= 8:
                        return
            time.sleep(0.2)
        raise self._fail("the session's xterm did not appear", "sesman.log")

    def restore_size(self) -> None:
        """Put the session back to 1024x768 after a resize test (xrandr on the display)."""
        if self.screen_size() != GEOMETRY:
            self.run_x(["xrandr", "-s", f"{GEOMETRY[0]}x{GEOMETRY[1]}"])

    def stop(self) -> None:
        # The session's processes run as guest in their own sessions under sesman; they
        # are its descendants, so kill_tree in _Server.stop finds them. Xorg also leaves
        # a lock file and socket behind when killed.
        scratch = str(self.dir) if self.dir != Path() else ""
        super().stop()
        if scratch:
            # A session sesman was still creating when its tree was snapshotted (an
            # interrupted start) is found by its window-manager script's path.
            kill_tree(_processes_mentioning(scratch))
        if self.display:
            num = self.display[1:]
            lock = Path(f"/tmp/.X{num}-lock")
            with contextlib.suppress(OSError, ValueError):
                pid = int(lock.read_text().strip())
                kill_tree([pid])
            lock.unlink(missing_ok=True)
            Path(f"/tmp/.X11-unix/X{num}").unlink(missing_ok=True)


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (our scratch directory)."""
    found = []
    needle = text.encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]
