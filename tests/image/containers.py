"""Throw-away containers of the replayed image: start a process in one, exec into it,
stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from image.replay import Image


@dataclass
class Container:
    """A process running in a throw-away container of the image."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    merged: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def environ(self) -> dict[str, str]:
        raw = Path(f"/proc/{self.proc.pid}/environ").read_bytes()
        return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)

    def ids(self) -> tuple[int, int]:
        """Real uid and gid of the container's main process."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        uid = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid = next(line for line in status.splitlines() if line.startswith("Gid:"))
        return int(uid.split()[1]), int(gid.split()[1])

    def exec(
        self, image: Image, argv: list[str], timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside this container (its mounts and network), as the image's
        user, as ``docker exec`` (and Docker's health checks) do."""
        uid, gid, home = image.ids()
        env = [f"{k}={v}" for k, v in {"HOME": home, **image.env}.items()]
        return subprocess.run(
            ["nsenter", f"--target={self.proc.pid}", "--mount", "--net",
             "chroot", f"--userspec={uid}:{gid}", f"--groups={gid}", str(self.merged),
             "/usr/bin/env", "-i", *env, *argv],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for anything of the container still running."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: see start()
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def start(
    image: Image,
    scratch: Path,
    argv: list[str],
    env: dict[str, str] | None = None,
    isolated_network: bool = False,
    read_only: bool = False,
) -> Container:
    """Start ``argv`` in a new container of ``image`` (in its own session, so stop()
    reaches its workers too)."""
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = scratch / "container.log"
    cmd = image.run_command(
        argv, scratch, env=env, isolated_network=isolated_network, read_only=read_only
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Container(proc, log_path, scratch / "merged")


def run_once(
    image: Image, scratch: Path, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a new container and wait for it (a ``docker run --rm``)."""
    scratch.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        image.run_command(argv, scratch, env=env, isolated_network=True),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
