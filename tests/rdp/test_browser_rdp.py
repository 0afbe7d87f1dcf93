"""A browser shows the RDP desktop: guacamole-common-js in headless Chromium, guacr, xrdp.

Chain: Debian's Chromium (driven by playwright-core, tests/browser/driver.mjs) runs
guacamole-common-js from tests/browser/page.html (direct mode); its WebSocket tunnel goes
straight to guacr's WebSocket door with a guacr token for an ``rdp`` connection
(32 bpp, ``ignore-cert``, guest/guest) to the real xrdp + xorgxrdp.

What the browser's display shows (all layers flattened in the page) is compared with
``xwd`` of the session's X display, pixel for pixel, inside the xterm's window: with
``force-lossless`` the PNGs are exact and the browser draws them 1:1. Then a command
typed as real DOM key events runs in that xterm (its output file appears) and the
canvas follows the X screen again.

Lives with the other RDP tests (not in tests/browser) because every RDP login as guest
reconnects to one X display: these tests must run one after another.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
import pytest
from browser.test_browser_ssh import (
    CHROMIUM,
    CLIENT_CONNECTED,
    CLIENT_DISCONNECTED,
    HERE as BROWSER_DIR,
    Driver,
    _snapshot,
    rgba_words,
)
from browser.test_browser_websocket import _Files
from guacr_process import free_port, run_guacr
from servers.xrdp import XrdpServer
from websocket.doorproc import HANDLERS, LITE_KEY, TOKEN_KEY

from guacr.tunnel.tokens import GuacrTokens

RDP_HANDLERS = HANDLERS + ",rdp=guacr.handlers.rdp.handler:RDPHandler"
TOKENS = GuacrTokens(TOKEN_KEY)

pytestmark = pytest.mark.timeout(120)


@dataclass
class Browser:
    driver: Driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if shutil.which("node") is None or not os.access(CHROMIUM, os.X_OK):
        pytest.fail("node and /usr/bin/chromium are needed: run scripts/install-test-deps.sh")
    if not (BROWSER_DIR / "node_modules" / "guacamole-common-js").is_dir():
        pytest.fail("npm packages missing: run (cd tests/browser && npm ci)")
    tmp = tmp_path_factory.mktemp("browser-rdp")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(BROWSER_DIR)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ws_port = free_port()
    env = {
        "GUACR_WEBSOCKET_BIND_PORT": str(ws_port),
        "GUACR_GUACAMOLE_LITE_KEY": LITE_KEY,
        "GUACR_TOKEN_KEY": TOKEN_KEY,
    }
    profile = tmp / "chromium-profile"
    try:
        with run_guacr(tmp, workers=1, env=env, handlers=RDP_HANDLERS) as guacr:
            tunnel = f"ws://127.0.0.1:{ws_port}/websocket-tunnel"
            page = f"http://127.0.0.1:{httpd.server_address[1]}/?tunnel={quote(tunnel)}"
            driver = Driver(page, profile, tmp / "driver.log")
            try:
                yield Browser(driver)
            finally:
                driver.close()
                shutil.rmtree(profile, ignore_errors=True)
            assert "Traceback" not in guacr.log(), guacr.log()
    finally:
        httpd.shutdown()
        httpd.server_close()


def xterm_box(server: XrdpServer) -> tuple[int, int, int, int]:
    """The xterm window's x, y, width, height on the session's screen."""
    out = server.run_x(
        ["xdotool", "search", "--onlyvisible", "--class", "XTerm", "getwindowgeometry", "--shell"],
        check=True,
    ).stdout.decode()
    fields = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return int(fields["X"]), int(fields["Y"]), int(fields["WIDTH"]), int(fields["HEIGHT"])


def wait_xterm_matches(driver: Driver, server: XrdpServer, shot: Path, timeout: float) -> None:
    """Until the browser's canvas shows the xterm exactly as the X server has it."""
    x, y, w, h = xterm_box(server)
    assert w > 100 and h > 100, (x, y, w, h)
    deadline = time.monotonic() + timeout
    while True:
        screen = _snapshot(driver, shot)
        truth = rgba_words(server.grab())
        if screen.shape == truth.shape:
            a, b = screen[y : y + h, x : x + w], truth[y : y + h, x : x + w]
            if np.array_equal(a, b):
                return
            detail = f"{int((a != b).sum())} of {a.size} xterm pixels differ"
        else:
            detail = f"canvas {screen.shape} != screen {truth.shape}"
        assert time.monotonic() < deadline, f"{detail} ({shot})"
        time.sleep(0.3)


def test_browser_shows_the_rdp_desktop_and_types_into_it(
    browser: Browser, xrdp: XrdpServer, tmp_path: Path
) -> None:
    shot = tmp_path / "display.png"
    params = {
        "hostname": xrdp.host,
        "port": str(xrdp.port),
        "username": xrdp.username,
        "password": xrdp.password,
        "color-depth": "32",
        "ignore-cert": "true",
        "disable-audio": "true",
        "force-lossless": "true",
    }
    token = TOKENS.mint(protocol="rdp", params=params)
    query = urlencode({"token": token, "GUAC_WIDTH": 1024, "GUAC_HEIGHT": 768, "GUAC_DPI": 96})
    driver = browser.driver
    driver.call("reload")
    driver.call("connect", query=query)
    driver.call("wait_connected", timeout=20000)
    status = driver.call("status")
    assert not status["errors"], status
    assert CLIENT_CONNECTED in status["clientStates"], status
    wait_xterm_matches(driver, xrdp, shot, timeout=20)
    # The whole desktop is there too (the root's colour outside the xterm).
    screen = _snapshot(driver, shot)
    assert screen.shape == (768, 1024)
    assert np.array_equal(screen[-2, -2], rgba_words(xrdp.grab())[-2, -2])

    # Keys typed in the page reach the xterm (no window manager: focus follows the
    # X pointer, put over the xterm from the X side as the browser sends no mouse).
    marker = secrets.token_hex(5)
    path = Path(f"/tmp/guacr-rdp-browser-{marker}")
    try:
        x, y, w, h = xterm_box(xrdp)
        xrdp.run_x(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2)], check=True)
        driver.call("type", text=f"echo {marker} > {path}")
        driver.call("press", key="Enter")
        deadline = time.monotonic() + 15
        while not (path.exists() and path.read_text().strip() == marker):
            assert time.monotonic() < deadline, "the command typed in the browser did not run"
            time.sleep(0.2)
        wait_xterm_matches(driver, xrdp, shot, timeout=10)
    finally:
        path.unlink(missing_ok=True)

    driver.call("disconnect")
    deadline = time.monotonic() + 5
    while (status := driver.call("status"))["clientStates"][-1] != CLIENT_DISCONNECTED:
        assert time.monotonic() < deadline, f"client did not disconnect: {status}"
        time.sleep(0.05)
    assert not status["errors"], status
    problems = [m for m in status["console"] if m["type"] in ("error", "warning", "pageerror")]
    assert not problems, f"browser console errors: {problems}"
