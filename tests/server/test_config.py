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


# Settings of the later doors and services, declared now -------------------------------
LATER_KEYS = {
    "websocket_bind_host": "0.0.0.0",
    "websocket_bind_port": "4823",
    "websocket_path": "/tunnel",
    "websocket_tls": "true",
    "websocket_cert": "/ws.pem",
    "websocket_key": "/ws.key",
    "guacamole_lite_key": "s3cret-lite-key",
    "token_key": "s3cret-token",
    "grpc_bind_host": "127.0.0.1",
    "grpc_bind_port": "50051",
    "grpc_token": "s3cret-grpc",
    "grpc_cert": "/g.pem",
    "grpc_key": "/g.key",
    "grpc_client_ca": "/ca.pem",
    "metrics_bind_host": "127.0.0.1",
    "metrics_bind_port": "9100",
    "syslog_address": "/dev/log",
    "log_format": "json",
    "shutdown_grace": "2.5",
    "registry_url": "redis://127.0.0.1:6379/0",
    "registry_lease_s": "20",
    "advertise_address": "10.0.0.1:4822",
}


def expected(name: str, text: str) -> object:
    return {"true": True}.get(text, int(text) if text.isdigit() else
                              float(text) if text.replace(".", "", 1).isdigit() else text)  # fmt: skip


def test_every_later_key_from_file_env_and_flag(tmp_path: Path) -> None:
    conf = tmp_path / "guacd.conf"
    conf.write_text("[guacr]\n" + "".join(f'{k} = "{v}"\n' for k, v in LATER_KEYS.items()))
    from_file = load(str(conf), environ={})
    from_env = load(None, environ={f"GUACR_{k.upper()}": v for k, v in LATER_KEYS.items()})
    argv = [x for k, v in LATER_KEYS.items() for x in (f"--{k.replace('_', '-')}", v)]
    from_cli, _ = resolve(["--config", "/dev/null", *argv])
    for name, text in LATER_KEYS.items():
        want = expected(name, text)
        assert getattr(from_file, name) == want, name
        assert getattr(from_env, name) == want, name
        assert getattr(from_cli, name) == want, name


@pytest.mark.parametrize(
    "name,value",
    [
        ("bind_port", "0"),
        ("bind_port", "65536"),
        ("bind_port", "http"),
        ("websocket_bind_port", "-1"),
        ("grpc_bind_port", "70000"),
        ("metrics_bind_port", "x"),
        ("shutdown_grace", "0"),
        ("registry_lease_s", "soon"),
        ("websocket_tls", "maybe"),
        ("log_format", "xml"),
    ],
)
def test_bad_values_name_the_setting_in_one_line(name: str, value: str) -> None:
    env_var = f"GUACR_{name.upper()}"
    with pytest.raises(ConfigError) as info:
        load(None, environ={env_var: value})
    assert env_var in str(info.value) and "\n" not in str(info.value)
    flag = "-l" if name == "bind_port" else "--" + name.replace("_", "-")
    with pytest.raises(ConfigError) as info:
        resolve(["--config", "/dev/null", flag, value])
    assert str(info.value).startswith(f"Invalid value for {flag}:")


def test_zero_turns_a_door_off_and_ports_are_checked_on_the_command_line() -> None:
    from guacr.config import Config

    c = Config()
    c.set("websocket_bind_port", "0")
    assert [s.kind for s in c.listener_specs()] == ["tcp"]
    c.set("websocket_bind_port", "4823")
    c.set("cert", "/c.pem")
    assert [(s.kind, s.port) for s in c.listener_specs()] == [("tls", 4822), ("ws", 4823)]


def test_keys_and_tokens_are_known_secrets() -> None:
    from guacr.config import is_secret

    assert all(is_secret(k) for k in ("grpc_token", "guacamole_lite_key", "token_key"))
    assert not is_secret("bind_host") and not is_secret("grpc_cert")


def test_bad_port_exits_1_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "guacr", "-f", "--config", "/dev/null",
         "--websocket-bind-port", "99999"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--websocket-bind-port" in lines[0], out.stderr
