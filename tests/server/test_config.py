"""guacd.conf parsing, precedence and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from guacr.cli import resolve
from guacr.config import ConfigError, load, parse_conf

CONF = """
# guacd.conf
[server]
bind_host = 0.0.0.0   # trailing comment
bind_port = 4823

[daemon]
log_level = "debug"
pid_file = "/tmp/a \\"b\\".pid"

[ssl]
server_certificate = /etc/cert.pem
server_key = /etc/key.pem

[guacr]
workers = 3
"""


def test_parse_like_guacd() -> None:
    v = parse_conf(CONF)
    assert v == {
        "bind_host": "0.0.0.0",
        "bind_port": "4823",
        "log_level": "debug",
        "pid_file": '/tmp/a "b".pid',
        "cert": "/etc/cert.pem",
        "key": "/etc/key.pem",
        "workers": "3",
    }


@pytest.mark.parametrize(
    "text",
    ["bind_host = x\n", "[nosuch]\n", "[server]\nnosuch = 1\n", '[server]\nbind_host = "open\n'],
)
def test_fatal_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_conf(text)


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "guacd.conf"
    conf.write_text(CONF)
    c = load(str(conf), environ={})
    assert (c.bind_host, c.bind_port, c.workers, c.log_level) == ("0.0.0.0", 4823, 3, "debug")
    c = load(str(conf), environ={"GUACR_WORKERS": "5", "GUACR_BIND_PORT": "5000"})
    assert (c.workers, c.bind_port) == (5, 5000)
    monkeypatch.setenv("GUACR_WORKERS", "5")
    c, _ = resolve(["--config", str(conf), "-l", "6000", "-b", "127.0.0.1", "--workers", "2"])
    assert (c.bind_port, c.bind_host, c.workers) == (6000, "127.0.0.1", 2)


def test_missing_default_file_is_fine(tmp_path: Path) -> None:
    c = load(None, environ={})
    assert c.bind_port == 4822 and c.bind_host == "localhost"
    with pytest.raises(ConfigError):
        load(str(tmp_path / "missing.conf"), environ={})


def test_invalid_log_level() -> None:
    with pytest.raises(ConfigError):
        parse_conf("[daemon]\nlog_level = loud\n") and load  # parse ok
        from guacr.config import Config

        Config().set("log_level", "loud")
