"""End to end as a user sees it: a browser types into an SSH terminal served by guacr.

Chain: headless Chromium (Debian's, driven by playwright-core) runs guacamole-common-js,
whose WebSocket tunnel reaches guacamole-lite (npm, a Node WebSocket-to-guacd bridge),
which speaks the Guacamole protocol to guacr's TCP port; guacr's built-in ssh
handler logs into a real OpenSSH server. Keys are typed as real DOM key events
(Guacamole.Keyboard turns them into ``key`` instructions).

How the screen is checked: the display is flattened in the page (all layers composited)
and saved as PNG; the test renders the expected text with guacr's own glyph renderer
(same font, size, DPI and colours) and looks for those exact pixels. guacr sends
lossless PNGs (or atlas copies of them; guacamole-lite offers guacd only PNG and JPEG,
never WebP) and the browser draws them 1:1, so an exact match is possible and needs no
OCR. The command is ``echo BROWSER-$((6*7))``: only the
command's *output* contains ``BROWSER-42``, so a match proves the shell ran it, and the
typed line (matched separately) must sit right above it.

Needs ``npm ci`` in tests/browser (scripts/test does it) and /usr/bin/chromium
(scripts/install-test-deps.sh).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from guacr_process import Guacr, assert_no_traceback, free_port, run_guacr
from PIL import Image
from servers import SSHServer, wait_port

from guacr.render.glyphs import CellKey, font_pixels, get_fontset
from guacr.render.terminal_view import margin_for_dpi
from guacr.terminal.colors import parse_color_scheme

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT, DPI = 800, 480, 96
FONT_SIZE = 14
COLOR_SCHEME = "black-white"
COMMAND = "echo BROWSER-$((6*7))"
OUTPUT = "BROWSER-42"
TUNNEL_OPEN = 1  # Guacamole.Tunnel.State.OPEN
CLIENT_CONNECTED = 3  # Guacamole.Client.State.CONNECTED
CLIENT_DISCONNECTED = 5
LITE_INACTIVITY_LIMIT = 10.0  # guacamole-lite 1.2.0: closes when guacd is silent this long

pytestmark = pytest.mark.timeout(300)  # a hang guard: start-up under load is slow


# ---------------------------------------------------------------- guacamole-lite token


def lite_token(key: bytes, connection: dict[str, Any]) -> str:
    """A guacamole-lite 1.2.0 connection token: AES-256-CBC of the JSON, then base64 JSON.

    guacamole-lite decrypts as ASCII, so the settings must be ASCII.
    """
    plain = json.dumps({"connection": connection}).encode("ascii")
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    value = encryptor.update(padded) + encryptor.finalize()
    wrapped = {"iv": base64.b64encode(iv).decode(), "value": base64.b64encode(value).decode()}
    return base64.b64encode(json.dumps(wrapped).encode()).decode()


# ---------------------------------------------------------------- pixels


def rgba_words(image: Image.Image) -> np.ndarray:
    """An (h, w) uint32 array, one word per RGB pixel (alpha forced to 255)."""
    rgba = np.array(image.convert("RGB").convert("RGBA"), dtype=np.uint8)
    return np.ascontiguousarray(rgba).view(np.uint32)[:, :, 0]


def render_text(text: str) -> np.ndarray:
    """``text`` as guacr draws it in this test's terminal (font, size, DPI, colours)."""
    palette = parse_color_scheme(COLOR_SCHEME)
    fg = int.from_bytes(bytes(palette.foreground), "big")
    bg = int.from_bytes(bytes(palette.background), "big")
    fonts = get_fontset("monospace", font_pixels(FONT_SIZE, DPI))
    row: list[CellKey | None] = [(ch, fg, bg, 0) for ch in text]
    return rgba_words(fonts.compose([row], bg))


def find(haystack: np.ndarray, needle: np.ndarray) -> list[tuple[int, int]]:
    """Every (x, y) where ``needle`` appears pixel for pixel in ``haystack``."""
    nh, nw = needle.shape
    hh, hw = haystack.shape
    if nh > hh or nw > hw:
        return []
    # Anchor on the needle row with the most distinct pixels (the top rows of a text
    # cell are plain background and would match everywhere), then verify candidates.
    key_row = max(range(nh), key=lambda r: len(np.unique(needle[r])))
    key = needle[key_row].tobytes()
    hits = []
    for y in range(key_row, hh - (nh - key_row) + 1):
        line = haystack[y].tobytes()
        start = line.find(key)
        while start >= 0:
            if start % 4 == 0:
                x, top = start // 4, y - key_row
                if np.array_equal(haystack[top : top + nh, x : x + nw], needle):
                    hits.append((x, top))
            start = line.find(key, start + 1)
    return hits


# ---------------------------------------------------------------- processes


def _kill_profile_leftovers(profile: Path) -> None:
    """SIGKILL any process still using our private Chromium profile (by PID)."""
    marker = str(profile).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            with suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_bridge(
    tmp: Path, guacr_port: int, key: bytes, script: Path = HERE / "bridge.cjs"
) -> Iterator[int]:
    """guacamole-lite (plus the page) on a free port, in front of guacr; ``script`` is
    the bridge (the database tests' own knows their protocols)."""
    port = free_port()
    log_path = tmp / "bridge.log"
    env = dict(os.environ, GUACR_BRIDGE_KEY=key.decode())
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", str(script), str(port), str(guacr_port)],
            cwd=HERE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60  # node starts slowly on a loaded machine
        while "bridge listening" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bridge did not start:\n{log_path.read_text()}")
            time.sleep(0.02)
        wait_port("127.0.0.1", port)
        yield port
    finally:
        _stop(proc)


class Driver:
    """The Playwright driver process (driver.mjs): one JSON command/answer per line."""

    def __init__(self, url: str, profile: Path, log_path: Path) -> None:
        self.profile = profile
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            ["node", str(HERE / "driver.mjs"), url, str(profile)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._answers: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._expect(timeout=120)  # the "ready" line: Chromium up and the page loaded

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(b"")

    def _expect(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"driver gave no answer within {timeout}s") from None
        if not line:
            raise RuntimeError(f"driver exited (rc={self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"driver: {answer.get('error')}")
        return answer

    def call(self, cmd: str, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        return self._expect(timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                with suppress(OSError):
                    self.proc.stdin.write(b'{"cmd": "quit"}\n')
                    self.proc.stdin.close()
                with suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
            _stop(self.proc)
        finally:
            _kill_profile_leftovers(self.profile)
            self._log.close()


# ---------------------------------------------------------------- the tests


class Stack:
    """guacr, the bridge and the browser, shared by this module's tests."""

    def __init__(self, guacr: Guacr, key: bytes, driver: Driver, sshd: SSHServer) -> None:
        self.guacr = guacr
        self.key = key
        self.driver = driver
        self.sshd = sshd

    def query(self) -> str:
        """The tunnel's connect data: an encrypted token plus the allowed plain settings."""
        token = lite_token(
            self.key,
            {
                "type": "ssh",
                "settings": {
                    "hostname": self.sshd.host,
                    "port": str(self.sshd.port),
                    "username": self.sshd.username,
                    "password": self.sshd.password,
                },
            },
        )
        plain = {"width": WIDTH, "height": HEIGHT, "dpi": DPI, "font-size": FONT_SIZE}
        return urlencode({"token": token, **plain, "color-scheme": COLOR_SCHEME})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sshd: SSHServer) -> Iterator[Stack]:
    if shutil.which("node") is None or not os.access(CHROMIUM, os.X_OK):
        pytest.fail("node and /usr/bin/chromium are needed: run scripts/install-test-deps.sh")
    if not (HERE / "node_modules" / "guacamole-lite").is_dir():
        pytest.fail("npm packages missing: run (cd tests/browser && npm ci)")
    tmp = tmp_path_factory.mktemp("browser")
    key = secrets.token_hex(16).encode()  # 32 ASCII bytes, as guacamole-lite wants
    profile = tmp / "chromium-profile"
    with run_guacr(tmp, workers=2) as guacr, run_bridge(tmp, guacr.port, key) as port:
        driver = Driver(f"http://127.0.0.1:{port}/", profile, tmp / "driver.log")
        try:
            yield Stack(guacr, key, driver, sshd)
        finally:
            driver.close()
            shutil.rmtree(profile, ignore_errors=True)
        assert_no_traceback(guacr.log())


def _snapshot(driver: Driver, path: Path) -> np.ndarray:
    if driver.call("snapshot", path=str(path))["empty"]:
        return np.zeros((0, 0), np.uint32)  # no frame drawn yet
    with Image.open(path) as image:
        return rgba_words(image)


def _wait_for(
    driver: Driver, path: Path, needles: dict[str, np.ndarray], timeout: float
) -> dict[str, list[tuple[int, int]]]:
    """Snapshot until every needle is on screen; the last positions found."""
    deadline = time.monotonic() + timeout
    while True:
        screen = _snapshot(driver, path)
        found = {name: find(screen, needle) for name, needle in needles.items()}
        if all(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _connect(stack: Stack, shot: Path) -> None:
    """Open a fresh page, connect through the bridge, wait for the shell prompt."""
    driver = stack.driver
    driver.call("reload")
    driver.call("connect", query=stack.query())
    driver.call("wait_connected", timeout=10000)
    status = driver.call("status")
    assert not status["errors"], status
    assert status["apiVersion"] == "1.5.0"
    assert TUNNEL_OPEN in status["tunnelStates"], status
    assert CLIENT_CONNECTED in status["clientStates"], status
    assert status["tunnelUuid"], "guacamole-lite forwards guacr's connection id"
    # The shell's prompt ("...$ ") is on the display: the terminal is ready.
    found = _wait_for(driver, shot, {"prompt": render_text("$")}, timeout=10)
    assert found["prompt"], f"no shell prompt on the browser's display ({shot})"


def _run_command(stack: Stack, shot: Path, command: str, output: str) -> None:
    """Type ``command`` + Enter; its ``output`` must appear on the line below it."""
    driver = stack.driver
    driver.call("type", text=command)
    driver.call("press", key="Enter")
    needles = {"typed": render_text(command), "output": render_text(output)}
    found = _wait_for(driver, shot, needles, timeout=10)
    assert found["typed"], f"typed command not echoed on the display ({shot})"
    assert found["output"], f"{output} not on the browser's display ({shot})"
    assert len(found["output"]) == 1, found
    (out_x, out_y), (typed_x, typed_y) = found["output"][0], found["typed"][-1]
    # The output is the line right below the command, starting at column 0.
    fonts = get_fontset("monospace", font_pixels(FONT_SIZE, DPI))
    assert out_y == typed_y + fonts.cell_height, found
    assert out_x == margin_for_dpi(DPI) < typed_x, found


def _disconnect(driver: Driver) -> None:
    """Disconnect; no Guacamole error and nothing on the browser console, ever."""
    driver.call("disconnect")
    deadline = time.monotonic() + 30  # generous: a loaded machine
    while True:
        status = driver.call("status")
        if status["clientStates"][-1] == CLIENT_DISCONNECTED:
            break
        assert time.monotonic() < deadline, f"client did not disconnect: {status}"
        time.sleep(0.05)
    assert not status["errors"], status
    # guacamole-common-js never logs by itself: anything here is an uncaught exception
    # (e.g. an instruction handler choking on guacr's output) or a failed request.
    problems = [m for m in status["console"] if m["type"] in ("error", "warning", "pageerror")]
    assert not problems, f"browser console errors: {problems}"


def test_browser_types_command_and_sees_output(stack: Stack, tmp_path: Path) -> None:
    shot = tmp_path / "display.png"
    t0 = time.monotonic()
    _connect(stack, shot)
    t1 = time.monotonic()
    _run_command(stack, shot, COMMAND, OUTPUT)
    t2 = time.monotonic()
    _disconnect(stack.driver)
    print(f"browser e2e: prompt after {t1 - t0:.2f} s, output {t2 - t1:.2f} s after typing")


def test_idle_session_outlives_bridge_inactivity_limit(stack: Stack, tmp_path: Path) -> None:
    """guacamole-lite drops a connection when guacd sends nothing for 10 s (the browser
    then only sees an internal error): an idle terminal must stay usable past that.

    What keeps it open today is the terminal's idle ``sync`` (once a second, observed)
    and, behind it, the user's keep-alive ``nop`` after 5 s of silence.
    """
    shot = tmp_path / "display.png"
    _connect(stack, shot)
    time.sleep(LITE_INACTIVITY_LIMIT + 1.5)
    status = stack.driver.call("status")
    assert status["tunnelStates"][-1] == TUNNEL_OPEN, status
    assert status["clientStates"][-1] == CLIENT_CONNECTED, status
    _run_command(stack, shot, "echo IDLE-$((5*5))", "IDLE-25")
    _disconnect(stack.driver)
