"""A database console in a real browser: guacamole-common-js in headless Chromium, through
guacamole-lite, to guacr's ``postgresql`` handler and a real PostgreSQL server. The query
result is found as exact pixels on the browser's canvas (same method as
tests/browser/test_browser_ssh.py, whose driver and helpers this reuses)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import urlencode

import pytest
from browser.test_browser_ssh import (
    CHROMIUM,
    CLIENT_CONNECTED,
    DPI,
    FONT_SIZE,
    HEIGHT,
    COLOR_SCHEME,
    WIDTH,
    Driver,
    _disconnect,
    _wait_for,
    lite_token,
    render_text,
    run_bridge,
)
from database.db_helpers import HANDLERS
from guacr_process import assert_no_traceback, run_guacr
from servers.postgresql import PostgreSQLServer

HERE = Path(__file__).resolve().parent
BROWSER = HERE.parent / "browser"


def test_browser_shows_a_query_result(tmp_path: Path, postgresql: PostgreSQLServer) -> None:
    if shutil.which("node") is None or not os.access(CHROMIUM, os.X_OK):
        pytest.fail("node and /usr/bin/chromium are needed: run scripts/install-test-deps.sh")
    if not (BROWSER / "node_modules" / "guacamole-lite").is_dir():
        pytest.fail("npm packages missing: run (cd tests/browser && npm ci)")
    key = secrets.token_hex(16).encode()
    profile = tmp_path / "chromium-profile"
    shot = tmp_path / "display.png"
    with (
        run_guacr(tmp_path, workers=1, handlers=HANDLERS) as guacr,
        run_bridge(tmp_path, guacr.port, key, HERE / "bridge_db.cjs") as port,
    ):
        driver = Driver(f"http://127.0.0.1:{port}/", profile, tmp_path / "driver.log")
        try:
            token = lite_token(
                key,
                {
                    "type": "postgresql",
                    "settings": {
                        "hostname": postgresql.host,
                        "port": str(postgresql.port),
                        "username": postgresql.username,
                        "password": postgresql.password,
                        "database": postgresql.database,
                        "ssl-mode": "disable",
                    },
                },
            )
            plain = {"width": WIDTH, "height": HEIGHT, "dpi": DPI, "font-size": FONT_SIZE}
            query = urlencode({"token": token, **plain, "color-scheme": COLOR_SCHEME})
            driver.call("reload")
            driver.call("connect", query=query)
            driver.call("wait_connected", timeout=10000)
            status = driver.call("status")
            assert not status["errors"], status
            assert CLIENT_CONNECTED in status["clientStates"], status
            found = _wait_for(driver, shot, {"prompt": render_text("testdb=>")}, timeout=15)
            assert found["prompt"], f"no console prompt on the browser's display ({shot})"
            driver.call("type", text="SELECT 'DB-' || 6*7 AS r;")
            driver.call("press", key="Enter")
            needles = {"result": render_text("DB-42"), "count": render_text("1 row in set")}
            found = _wait_for(driver, shot, needles, timeout=15)
            assert found["result"], f"the query result is not on the display ({shot})"
            assert found["count"], f"no row count on the display ({shot})"
            _disconnect(driver)
        finally:
            driver.close()
            shutil.rmtree(profile, ignore_errors=True)
        assert_no_traceback(guacr.log())
