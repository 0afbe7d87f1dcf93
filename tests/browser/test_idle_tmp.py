"""End to end as a user sees it: a browser types into an SSH terminal served by guacr.

Chain: headless Chromium (Debian's, driven by playwright-core) runs guacamole-common-js,
whose WebSocket tunnel reaches guacamole-lite (npm; the bridge most Node deployments
use), which speaks the Guacamole protocol to guacr's TCP port; guacr's built-in ssh
handler logs into a real OpenSSH server. Keys are typed as real DOM key events
(Guacamole.Keyboard turns them into ``key`` instructions).

How the screen is checked: the display is flattened in the page (all layers composited)
and saved as PNG; the test renders the expected text with guacr's own glyph renderer
(same font, size, DPI and colours) and looks for those exact pixels. guacr sends
lossless PNGs (or atlas copies of them) and the browser draws them 1:1, so an exact
match is possible and needs no OCR. The command is ``echo BROWSER-$((6*7))``: only the
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
from guacr_process import free_port, run_guacr
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

pytestmark = pytest.mark.timeout(90)


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
def run_bridge(tmp: Path, guacr_port: int, key: bytes) -> Iterator[int]:
    """guacamole-lite (plus the page) on a free port, in front of guacr."""
    port = free_port()
    log_path = tmp / "bridge.log"
    env = dict(os.environ, GUACR_BRIDGE_KEY=key.decode())
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", str(HERE / "bridge.cjs"), str(port), str(guacr_port)],
            cwd=HERE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
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
        self._expect(timeout=30)  # the "ready" line: Chromium up and the page loaded

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


# ---------------------------------------------------------------- the test


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


def test_browser_types_command_and_sees_output(tmp_path: Path, sshd: SSHServer) -> None:
    if shutil.which("node") is None or not os.access(CHROMIUM, os.X_OK):
        pytest.fail("node and /usr/bin/chromium are needed: run scripts/install-test-deps.sh")
    if not (HERE / "node_modules" / "guacamole-lite").is_dir():
        pytest.fail("npm packages missing: run (cd tests/browser && npm ci)")

    t0 = time.monotonic()
    key = secrets.token_hex(16).encode()  # 32 ASCII bytes, as guacamole-lite wants
    token = lite_token(
        key,
        {
            "type": "ssh",
            "settings": {
                "hostname": sshd.host,
                "port": str(sshd.port),
                "username": sshd.username,
                "password": sshd.password,
            },
        },
    )
    query = urlencode(
        {
            "token": token,
            "width": WIDTH,
            "height": HEIGHT,
            "dpi": DPI,
            "font-size": FONT_SIZE,
            "color-scheme": COLOR_SCHEME,
        }
    )
    prompt = render_text("$")
    typed = render_text(COMMAND)
    output = render_text(OUTPUT)
    fonts = get_fontset("monospace", font_pixels(FONT_SIZE, DPI))
    shot = tmp_path / "display.png"
    profile = tmp_path / "chromium-profile"
    timings: dict[str, float] = {}

    with run_guacr(tmp_path, workers=2) as guacr, run_bridge(tmp_path, guacr.port, key) as port:
        driver = Driver(f"http://127.0.0.1:{port}/", profile, tmp_path / "driver.log")
        try:
            timings["browser up"] = time.monotonic() - t0
            driver.call("connect", query=query)
            driver.call("wait_connected", timeout=10000)
            timings["connected"] = time.monotonic() - t0
            status = driver.call("status")
            assert not status["errors"], status
            assert status["apiVersion"] == "1.5.0"
            assert TUNNEL_OPEN in status["tunnelStates"], status
            assert CLIENT_CONNECTED in status["clientStates"], status
            assert status["tunnelUuid"], "guacamole-lite forwards guacr's connection id"

            # The shell's prompt ("...$ ") is on the display: the terminal is ready.
            found = _wait_for(driver, shot, {"prompt": prompt}, timeout=10)
            assert found["prompt"], "no shell prompt on the browser's display"
            timings["prompt"] = time.monotonic() - t0

            driver.call("type", text=COMMAND)
            driver.call("press", key="Enter")
            found = _wait_for(driver, shot, {"typed": typed, "output": output}, timeout=10)
            timings["output"] = time.monotonic() - t0
            assert found["typed"], f"typed command not echoed on the display ({shot})"
            assert found["output"], f"{OUTPUT} not on the browser's display ({shot})"
            assert len(found["output"]) == 1, found
            (out_x, out_y), (typed_x, typed_y) = found["output"][0], found["typed"][-1]
            # The output is the line right below the command, starting at column 0.
            assert out_y == typed_y + fonts.cell_height, found
            assert out_x == margin_for_dpi(DPI) < typed_x, found

            time.sleep(11.5)
            st = driver.call("status"); print("after idle", st)
            driver.call("type", text="echo IDLE-$((5*5))")
            driver.call("press", key="Enter")
            f2 = _wait_for(driver, shot, {"o": render_text("IDLE-25")}, timeout=5)
            print("after idle found", f2)
            driver.call("disconnect")
            deadline = time.monotonic() + 5
            while True:
                status = driver.call("status")
                if status["clientStates"][-1] == CLIENT_DISCONNECTED:
                    break
                assert time.monotonic() < deadline, f"client did not disconnect: {status}"
                time.sleep(0.05)
            assert not status["errors"], status
            # guacamole-common-js never logs by itself: anything here is an uncaught
            # exception (e.g. from an instruction handler choking on guacr's output) or
            # a failed request.
            problems = [
                m for m in status["console"] if m["type"] in ("error", "warning", "pageerror")
            ]
            assert not problems, f"browser console errors: {problems}"
        finally:
            driver.close()
        assert "Traceback" not in guacr.log(), guacr.log()
    total = time.monotonic() - t0
    print(f"browser e2e timings (s): {timings}, total {total:.2f}")
