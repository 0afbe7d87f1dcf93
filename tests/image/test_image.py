"""The Docker image, replayed without a Docker engine (tests/image/replay.py), does what
an operator replacing guacamole/guacd expects: runs as an unprivileged user, serves a
real SSH session (its C libraries loadable by that user), listens on 0.0.0.0 with
guacd's entrypoint conventions, and has a health check on ``/health/live``.

A cold build (debootstrap plus both stages) takes about 1.5 minutes here; a warm one,
from the layer cache in /var/cache/guacr-image-test, a few seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from guacr_process import Client, free_port
from image.containers import Container, run_once, start
from image.replay import Image
from servers import SSHServer
from ssh.ssh_helpers import TermClient, ssh_values

# The first test pays for the image build (at most a cold one).
pytestmark = pytest.mark.timeout(600)

DOORS = {"4822", "4823", "50051", "9464"}
# The other doors stay off in containers that share the machine's network.
DOORS_OFF = {
    "GUACR_WEBSOCKET_BIND_PORT": "0",
    "GUACR_GRPC_BIND_PORT": "0",
    "GUACR_METRICS_BIND_PORT": "0",
}


def test_image_metadata(image: Image) -> None:
    uid, gid, _home = image.ids()
    assert uid != 0 and gid != 0, "the image must not run as root"
    assert image.user == "guacd"
    assert set(image.exposed) == DOORS
    assert image.healthcheck[0] == "CMD"
    assert "nc" not in image.healthcheck_argv()[0]
    assert image.entrypoint == ["/opt/guacr/docker/entrypoint.sh"]


def test_libraries_and_fonts_for_the_image_user(image: Image, tmp_path: Path) -> None:
    script = (
        "find /opt/guacr -name '*.so' ! -readable -print; "
        "ls /opt/guacr/lib/python3*/site-packages/guacr/terminal/_vtscreen-*.so "
        "/opt/guacr/lib/python3*/site-packages/guacr/handlers/vnc/_zrle-*.so "
        "/opt/guacr/lib/python3*/site-packages/guacr/render/_palette-*.so >/dev/null; "
        "echo libraries-ok; fc-match -f '%{family}\\n' monospace; fc-list :lang=zh family"
    )
    proc = run_once(image, tmp_path, ["/bin/sh", "-ec", script])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "libraries-ok", f"unreadable for the image's user: {lines}"
    assert lines[1].startswith("DejaVu Sans Mono")
    assert any("WenQuanYi" in line for line in lines[2:]), "no CJK fallback font"


def test_ssh_session_through_the_image(image: Image, sshd: SSHServer, tmp_path: Path) -> None:
    """The defect this image had: every SSH session ended with 512 because the image's
    user could not load libraries root had built. Run as deploy/kubernetes runs it: a
    read-only root file system with a writable /tmp."""
    port = free_port()
    env = {**DOORS_OFF, "GUACR_WEBSOCKET_BIND_HOST": "127.0.0.1", "LOG_LEVEL": "debug"}
    argv = image.entrypoint_argv(["-b", "127.0.0.1", "-l", str(port)])
    c = start(image, tmp_path, argv, env, read_only=True)
    try:
        c.wait_log("ready (pid", timeout=60)
        assert c.ids() == image.ids()[:2]
        assert c.exec(image, ["/bin/sh", "-c", "touch /opt/guacr/x"]).returncode != 0
        assert c.exec(image, ["/bin/sh", "-c", "touch /tmp/x"]).returncode == 0
        # The operator's choice of address is kept; gRPC stays closed without a token.
        environ = c.environ()
        assert environ["GUACR_WEBSOCKET_BIND_HOST"] == "127.0.0.1"
        assert environ["GUACR_METRICS_BIND_HOST"] == "0.0.0.0"
        assert "GUACR_GRPC_BIND_HOST" not in environ
        client = Client(port, timeout=15)
        try:
            term = TermClient(client)
            term.connection_id = client.handshake("ssh", ssh_values(sshd), size=(800, 480, 96))
            term.wait_text("guest@test", timeout=20)
            term.run("echo image-$((6*7))")
            term.wait_text("image-42", timeout=15)
            assert not term.errors
        finally:
            client.close()
        assert "DEBUG" in c.log(), "LOG_LEVEL did not reach guacr"
        assert "Traceback" not in c.log()
    finally:
        c.stop()


def test_entrypoint_binds_every_address_and_the_health_check_asks_health_live(
    image: Image, tmp_path: Path
) -> None:
    """As ``docker run IMAGE`` with no arguments, in a network namespace of its own."""
    env = {"GUACR_GRPC_TOKEN": "test-token"}
    c = start(image, tmp_path / "c", image.entrypoint_argv(), env, isolated_network=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            check = c.exec(image, image.healthcheck_argv())
            if check.returncode == 0:
                break
            assert c.proc.poll() is None, c.log()
            assert time.monotonic() < deadline, f"never healthy: {check.stderr}\n{c.log()}"
            time.sleep(0.5)
        listening = _listening(c)
        assert ("0.0.0.0", 4822) in listening, listening
        environ = c.environ()
        assert environ["GUACR_WEBSOCKET_BIND_HOST"] == "0.0.0.0"
        assert environ["GUACR_METRICS_BIND_HOST"] == "0.0.0.0"
        assert environ["GUACR_GRPC_BIND_HOST"] == "0.0.0.0"  # authentication configured
        assert "Listening on host 0.0.0.0, port 4822" in c.log()
    finally:
        c.stop()
    # Nothing listening: the same health check reports it.
    down = run_once(image, tmp_path / "down", image.healthcheck_argv())
    assert down.returncode == 1
    assert down.stderr.startswith("unhealthy: 127.0.0.1:9464/health/live")


def _listening(c: Container) -> set[tuple[str, int]]:
    """(address, port) of IPv4 listening sockets in the container's network namespace."""
    out: set[tuple[str, int]] = set()
    for line in Path(f"/proc/{c.proc.pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A":  # LISTEN
            addr, port = f[1].split(":")
            ip = ".".join(str(b) for b in reversed(bytes.fromhex(addr)))
            out.add((ip, int(port, 16)))
    return out


@pytest.mark.parametrize(
    ("env", "args", "status", "out", "err"),
    [
        ({}, ["-v"], 0, "guacr version", None),
        ({"LOG_LEVEL": "loud"}, ["-v"], 1, None, "'loud'"),
        ({"GUACD_LOG_LEVEL": "quiet"}, ["-v"], 1, None, "'quiet'"),
        ({"LOG_LEVEL": "debug", "GUACD_LOG_LEVEL": "quiet"}, ["-v"], 0, "guacr version", None),
    ],
)
def test_log_level_as_guacds_entrypoint(
    image: Image,
    tmp_path: Path,
    env: dict[str, str],
    args: list[str],
    status: int,
    out: str | None,
    err: str | None,
) -> None:
    """LOG_LEVEL, else the deprecated GUACD_LOG_LEVEL (with a warning), else info."""
    proc = run_once(image, tmp_path, image.entrypoint_argv(args), env)
    assert proc.returncode == status, proc.stderr
    if out:
        assert out in proc.stdout
    if err:
        assert err in proc.stderr
    warned = "GUACD_LOG_LEVEL is deprecated" in proc.stderr
    assert warned == ("GUACD_LOG_LEVEL" in env)
