"""A browser straight to guacr's WebSocket door (4823): no guacamole-lite, no web app.

Chain: headless Chromium (Debian's, driven by playwright-core through driver.mjs) runs
guacamole-common-js from page.html, whose ``Guacamole.WebSocketTunnel`` opens
``ws://127.0.0.1:<door>/websocket-tunnel?token=...`` on guacr itself; the token is
guacr's own (AES-GCM) or a guacamole-lite one. The page is served from a plain HTTP
server on another port, so the tunnel is cross-origin, as a real deployment's is.

Screens are checked pixel for pixel the way test_browser_ssh.py does it (guacr's own
glyph renderer draws the expected text; PNGs arrive lossless).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
import pytest
from browser.test_browser_ssh import (
    CHROMIUM,
    CLIENT_CONNECTED,
    COLOR_SCHEME,
    DPI,
    FONT_SIZE,
    HEIGHT,
    TUNNEL_OPEN,
    WIDTH,
    Driver,
    _disconnect,
    _run_command,
    _snapshot,
    _wait_for,
    render_text,
    rgba_words,
)
from guacr_process import assert_no_traceback
from servers import SSHServer, TigerVNCServer
from websocket.doorproc import LITE_KEY, TOKEN_KEY, Door, start_door, start_wss_door

from guacr.tunnel import lite
from guacr.tunnel.tokens import GuacrTokens

HERE = Path(__file__).resolve().parent
TUNNEL_UNSTABLE = 3
CLIENT_UNAUTHORIZED = 0x0301
TOKENS = GuacrTokens(TOKEN_KEY)

pytestmark = pytest.mark.timeout(300)  # a hang guard: start-up under load is slow


class _Files(SimpleHTTPRequestHandler):
    """The page and guacamole-common-js's ESM build, nothing else."""

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0]
        if name in ("/", "/page.html"):
            return str(HERE / "page.html")
        if name == "/guacamole-common.js":
            return str(
                HERE
                / "node_modules"
                / "guacamole-common-js"
                / "dist"
                / "esm"
                / "guacamole-common.js"
            )
        return str(HERE / "does-not-exist")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Browser:
    door: Door
    driver: Driver
    sshd: SSHServer


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, sshd: SSHServer) -> Iterator[Browser]:
    if shutil.which("node") is None or not os.access(CHROMIUM, os.X_OK):
        pytest.fail("node and /usr/bin/chromium are needed: run scripts/install-test-deps.sh")
    if not (HERE / "node_modules" / "guacamole-common-js").is_dir():
        pytest.fail("npm packages missing: run (cd tests/browser && npm ci)")
    tmp = tmp_path_factory.mktemp("browser-ws")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(HERE)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    profile = tmp / "chromium-profile"
    gen = start_door(tmp, workers=2)
    door = next(gen)
    try:
        tunnel = f"ws://127.0.0.1:{door.ws_port}/websocket-tunnel"
        page = f"http://127.0.0.1:{httpd.server_address[1]}/?tunnel={quote(tunnel)}"
        driver = Driver(page, profile, tmp / "driver.log")
        try:
            yield Browser(door, driver, sshd)
        finally:
            driver.close()
            shutil.rmtree(profile, ignore_errors=True)
        assert_no_traceback(door.guacr.log(), "the browser tests' guacr log")
    finally:
        gen.close()
        httpd.shutdown()
        httpd.server_close()


def _ssh_params(sshd: SSHServer) -> dict[str, str]:
    return {
        "hostname": sshd.host,
        "port": str(sshd.port),
        "username": sshd.username,
        "password": sshd.password,
        "font-size": str(FONT_SIZE),
        "color-scheme": COLOR_SCHEME,
    }


def _connect(b: Browser, query: str, tunnel: str | None = None) -> dict[str, Any]:
    b.driver.call("reload")
    b.driver.call("connect", query=query, tunnel=tunnel)
    b.driver.call("wait_connected", timeout=15000)
    status = b.driver.call("status")
    assert not status["errors"], status
    assert TUNNEL_OPEN in status["tunnelStates"], status
    assert CLIENT_CONNECTED in status["clientStates"], status
    return status


def test_ssh_session_straight_to_guacr(browser: Browser, tmp_path: Path) -> None:
    """guacr's own token; the display size comes from the web app's GUAC_* keys."""
    shot = tmp_path / "display.png"
    token = TOKENS.mint(protocol="ssh", params=_ssh_params(browser.sshd))
    query = urlencode({"token": token, "GUAC_WIDTH": WIDTH, "GUAC_HEIGHT": HEIGHT, "GUAC_DPI": DPI})
    status = _connect(browser, query)
    # tunnel.uuid is the connection id (what share links are made from)
    assert status["tunnelUuid"].startswith("$"), status
    found = _wait_for(browser.driver, shot, {"prompt": render_text("$")}, timeout=15)
    assert found["prompt"], f"no shell prompt on the browser's display ({shot})"
    _run_command(browser, shot, "echo DIRECT-$((6*7))", "DIRECT-42")  # type: ignore[arg-type]
    # Idle for a while: pings are echoed at once, so the tunnel never turns UNSTABLE
    # (no message for 1.5 s) and certainly never times out.
    time.sleep(3.5)
    status = browser.driver.call("status")
    assert TUNNEL_UNSTABLE not in status["tunnelStates"], status
    assert status["tunnelState"] == TUNNEL_OPEN, status
    _disconnect(browser.driver)


def test_guacamole_lite_token_straight_to_guacr(browser: Browser, tmp_path: Path) -> None:
    """A guacamole-lite deployment's token and query, unchanged, without guacamole-lite."""
    shot = tmp_path / "display.png"
    settings = {k: v for k, v in _ssh_params(browser.sshd).items() if k != "font-size"}
    token = lite.encrypt(
        {"connection": {"type": "ssh", "settings": settings}}, LITE_KEY.encode(), os.urandom(16)
    )
    plain = {"width": WIDTH, "height": HEIGHT, "dpi": DPI, "font-size": FONT_SIZE}
    _connect(browser, urlencode({"token": token, **plain}))
    found = _wait_for(browser.driver, shot, {"prompt": render_text("$")}, timeout=15)
    assert found["prompt"], f"no shell prompt on the browser's display ({shot})"
    _run_command(browser, shot, "echo LITE-$((7*6))", "LITE-42")  # type: ignore[arg-type]
    _disconnect(browser.driver)


def test_vnc_session_straight_to_guacr(
    browser: Browser, tigervnc: TigerVNCServer, tmp_path: Path
) -> None:
    shot = tmp_path / "display.png"
    params = {"hostname": tigervnc.host, "port": str(tigervnc.port), "password": tigervnc.password}
    token = TOKENS.mint(protocol="vnc", params=params)
    _connect(browser, urlencode({"token": token}))
    # The canvas shows what the VNC server shows (its own screenshot, pixel for pixel
    # but for the pointer and a window that may change meanwhile).
    deadline = time.monotonic() + 15
    while True:
        screen = _snapshot(browser.driver, shot)
        truth = rgba_words(tigervnc.grab())
        same = float(np.mean(screen == truth)) if screen.shape == truth.shape else 0.0
        if same > 0.95:
            break
        assert time.monotonic() < deadline, f"canvas differs from the VNC screen ({same:.2f})"
        time.sleep(0.2)
    _disconnect(browser.driver)


def test_ssh_session_over_wss_straight_to_guacr(browser: Browser, tmp_path: Path) -> None:
    """``wss://``: a worker terminates TLS on the WebSocket door (the page trusts the
    throw-away certificate as a browser would once its CA is installed)."""
    gen = start_wss_door(tmp_path, workers=1)
    door = next(gen)
    try:
        shot = tmp_path / "display.png"
        token = TOKENS.mint(protocol="ssh", params=_ssh_params(browser.sshd))
        size = {"GUAC_WIDTH": WIDTH, "GUAC_HEIGHT": HEIGHT, "GUAC_DPI": DPI}
        tunnel = f"wss://127.0.0.1:{door.ws_port}/websocket-tunnel"
        status = _connect(browser, urlencode({"token": token, **size}), tunnel)
        assert status["tunnelUuid"].startswith("$"), status
        found = _wait_for(browser.driver, shot, {"prompt": render_text("$")}, timeout=15)
        assert found["prompt"], f"no shell prompt on the browser's display ({shot})"
        _run_command(browser, shot, "echo WSS-$((6*7))", "WSS-42")  # type: ignore[arg-type]
        _disconnect(browser.driver)
        assert "(wss)" in door.guacr.log()  # served by the TLS door, not some other
        assert_no_traceback(door.guacr.log(), "the wss door's guacr log")
    finally:
        gen.close()


def test_refused_token_is_unauthorized_in_the_browser(browser: Browser) -> None:
    token = TOKENS.mint(protocol="ssh", params=_ssh_params(browser.sshd), ttl=0.001)
    time.sleep(0.01)
    browser.driver.call("reload")
    browser.driver.call("connect", query=urlencode({"token": token}))
    deadline = time.monotonic() + 10
    while not (status := browser.driver.call("status"))["errors"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert any(str(CLIENT_UNAUTHORIZED) in e for e in status["errors"]), status
