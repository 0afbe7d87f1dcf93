"""Token kinds: guacamole-lite's (read exactly as guacamole-lite reads them) and guacr's
own (AES-GCM, expiring, single use), and the authority that picks between them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from guacr.protocol.handshake import Handshake
from guacr.protocol.status import Status
from guacr.protocol.version import ProtocolVersion
from guacr.tunnel import lite
from guacr.tunnel.authorize import TokenAuthority
from guacr.tunnel.grant import Grant, TokenRefused, parse_query
from guacr.tunnel.tokens import GuacrTokens, MemoryRedemptionStore

LITE_KEY = b"MySuperSecretKeyForParamsToken12"
GUACR_KEY = "an operator secret of some length"
BROWSER_DIR = Path(__file__).resolve().parent.parent / "browser"


def lite_token(payload: dict[str, Any], key: bytes = LITE_KEY) -> str:
    return lite.encrypt(payload, key, os.urandom(16))


def authorize(auth: TokenAuthority, query: str) -> Grant:
    return asyncio.run(auth.authorize(parse_query(query)))


def refused(auth: TokenAuthority, query: str) -> TokenRefused:
    with pytest.raises(TokenRefused) as info:
        authorize(auth, query)
    assert info.value.status is Status.CLIENT_UNAUTHORIZED
    return info.value


@pytest.fixture
def auth() -> TokenAuthority:
    return TokenAuthority.from_keys(LITE_KEY.decode(), GUACR_KEY)


# ------------------------------------------------------------------ query strings


def test_parse_query_keeps_repeats_blanks_and_plus() -> None:
    q = parse_query("token=a%2Bb&GUAC_AUDIO=audio%2FL8&GUAC_AUDIO=audio%2FL16&x=&y=a+b")
    assert q == {"token": "a+b", "GUAC_AUDIO": ["audio/L8", "audio/L16"], "x": "", "y": "a b"}
    assert parse_query("undefined") == {"undefined": ""}


# ------------------------------------------------------------------ guacamole-lite


def test_lite_defaults_and_allowed_query_keys(auth: TokenAuthority) -> None:
    token = lite_token({"connection": {"type": "ssh", "settings": {"hostname": "h", "width": 640}}})
    q = "token=" + token.replace("+", "%2B") + "&width=800&GUAC_AUDIO=audio/L8&hostname=evil"
    q += "&font-size=18&GUAC_WIDTH=5&GUAC_IMAGE=image/webp"
    g = authorize(auth, q)
    assert g.kind == "guacamole-lite" and g.selector == "ssh" and not g.is_join
    # query beats token beats defaults; hostname is not allow-listed; GUAC_WIDTH and
    # GUAC_IMAGE are not in guacamole-lite's list either.
    assert (g.width, g.height, g.dpi) == ("800", "768", "96")
    assert g.values["hostname"] == "h"
    assert g.values["port"] == "22"
    assert g.values["font-size"] == "18"
    assert list(g.audio) == ["audio/L8"]
    assert list(g.image) == ["image/png", "image/jpeg"]
    assert list(g.video) == [] and list(g.timezone) == []
    assert g.version is ProtocolVersion.V1_1_0


def test_lite_token_query_merged_before_allow_list(auth: TokenAuthority) -> None:
    token = lite_token(
        {
            "connection": {"type": "vnc", "settings": {"hostname": "h"}},
            "query": {"height": "600", "hostname": "nope", "timezone": "Europe/Paris"},
        }
    )
    g = authorize(auth, "token=" + token.replace("+", "%2B") + "&height=700")
    assert g.height == "600"  # the token's query overrides the URL's
    assert g.values["hostname"] == "h"
    assert list(g.timezone) == ["Europe/Paris"]
    assert g.values["port"] == "5900"


def test_lite_handshake_matches_guacamole_lite(auth: TokenAuthority) -> None:
    """What guacamole-lite's GuacdClient would send after guacd's args."""
    token = lite_token(
        {
            "connection": {
                "type": "ssh",
                "settings": {
                    "hostname": "host",
                    "password": "pw",
                    "enable-sftp": True,
                    "port": 0,
                    "read-only": False,
                    "x": None,
                    "list": ["a", None, 2],
                },
            }
        }
    )
    g = authorize(auth, "token=" + token.replace("+", "%2B"))
    args = [
        "VERSION_1_5_0",
        "hostname",
        "port",
        "password",
        "enable-sftp",
        "read-only",
        "x",
        "list",
        "missing",
    ]
    ins = g.client_instructions(args[1:])
    assert ins == [
        ("size", "1024", "768", "96"),
        ("audio", "audio/L16"),
        ("video",),
        ("image", "image/png", "image/jpeg"),
        ("timezone",),
        ("connect", "VERSION_1_1_0", "host", "", "pw", "true", "", "", "a,,2", ""),
    ]
    hs = Handshake(args[1:])
    done = [hs.receive(i) for i in ins]
    assert done[-1] and hs.info.values["hostname"] == "host"
    assert hs.info.version is ProtocolVersion.V1_1_0


def test_lite_join(auth: TokenAuthority) -> None:
    token = lite_token({"connection": {"join": "$abc", "settings": {"read-only": "true"}}})
    g = authorize(auth, "token=" + token.replace("+", "%2B") + "&dpi=120&color-scheme=x")
    assert g.is_join and g.selector == "$abc"
    assert g.values["read-only"] == "true"
    assert g.dpi == "120"
    assert "color-scheme" not in g.values  # not allow-listed for joins
    assert "port" not in g.values


def test_lite_non_ascii_settings_kept(auth: TokenAuthority) -> None:
    token = lite_token({"connection": {"type": "ssh", "settings": {"password": "pässwörd"}}})
    assert authorize(auth, "token=" + token.replace("+", "%2B")).values["password"] == "pässwörd"


def test_lite_url_safe_and_unpadded_base64_accepted(auth: TokenAuthority) -> None:
    token = lite_token({"connection": {"type": "telnet", "settings": {}}})
    mangled = token.replace("+", "-").replace("/", "_").rstrip("=")
    assert authorize(auth, "token=" + mangled).selector == "telnet"


def test_lite_expires(auth: TokenAuthority) -> None:
    import time

    ok = lite_token({"connection": {"type": "ssh"}, "expires": int(time.time() * 1000) + 60000})
    assert authorize(auth, "token=" + ok.replace("+", "%2B")).selector == "ssh"
    old = lite_token({"connection": {"type": "ssh"}, "expires": int(time.time()) - 1})
    assert "expired" in refused(auth, "token=" + old.replace("+", "%2B")).reason
    bad = lite_token({"connection": {"type": "ssh"}, "expires": "tomorrow"})
    refused(auth, "token=" + bad.replace("+", "%2B"))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: lite_token({"connection": {"type": "ssh"}}, b"x" * 32), id="wrong-key"
        ),
        pytest.param(lambda: "bm90IGEgdG9rZW4=", id="garbage-base64"),
        pytest.param(lambda: "%%%***", id="garbage"),
        pytest.param(
            lambda: base64.b64encode(json.dumps({"iv": "AAAA", "value": "AAAA"}).encode()).decode(),
            id="short-iv",
        ),
        pytest.param(lambda: lite_token({"connection": {"type": "gopher"}}), id="unknown-type"),
        pytest.param(lambda: lite_token({"connection": {"type": "join"}}), id="type-join"),
        pytest.param(lambda: lite_token({"nothing": 1}), id="no-connection"),
        pytest.param(lambda: lite_token({"connection": {"join": 5}}), id="join-not-string"),
        pytest.param(lambda: lite_token(["a"]), id="not-an-object"),  # type: ignore[arg-type]
    ],
)
def test_lite_refusals(auth: TokenAuthority, make: Any) -> None:
    token = make()
    err = refused(auth, "token=" + token.replace("+", "%2B"))
    assert token not in err.reason and token not in str(err)


def test_missing_token_and_missing_key() -> None:
    auth = TokenAuthority.from_keys(None, GUACR_KEY)
    refused(auth, "width=5")
    token = lite_token({"connection": {"type": "ssh"}})
    assert "no guacamole_lite_key" in refused(auth, "token=" + token.replace("+", "%2B")).reason
    no_guacr = TokenAuthority.from_keys(LITE_KEY.decode(), None)
    refused(no_guacr, "token=" + GuacrTokens(GUACR_KEY).mint(protocol="ssh"))
    assert not TokenAuthority.from_keys(None, None).enabled
    with pytest.raises(ValueError):
        TokenAuthority.from_keys("short", None)
    with pytest.raises(ValueError):
        TokenAuthority.from_keys(None, "short")


def _node_lite_token(payload: dict[str, Any]) -> str:
    """A token made by guacamole-lite's own Crypt.encrypt (npm package)."""
    if shutil.which("node") is None:
        pytest.fail("node is needed: run scripts/install-test-deps.sh")
    if not (BROWSER_DIR / "node_modules" / "guacamole-lite").is_dir():
        pytest.fail("npm packages missing: run (cd tests/browser && npm ci)")
    script = (
        "const Crypt = require('guacamole-lite/lib/Crypt.js');"
        "const c = new Crypt('AES-256-CBC', process.env.LITE_KEY);"
        "process.stdout.write(c.encrypt(JSON.parse(process.env.PAYLOAD)));"
    )
    env = {**os.environ, "LITE_KEY": LITE_KEY.decode(), "PAYLOAD": json.dumps(payload)}
    out = subprocess.run(
        ["node", "-e", script],
        cwd=BROWSER_DIR,
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return out.stdout.decode()


def test_token_from_guacamole_lite_npm_package(auth: TokenAuthority) -> None:
    token = _node_lite_token(
        {"connection": {"type": "ssh", "settings": {"hostname": "127.0.0.1", "username": "guest"}}}
    )
    g = authorize(auth, "token=" + token.replace("+", "%2B") + "&width=1280&GUAC_VIDEO=video/webm")
    assert g.selector == "ssh"
    assert g.values["hostname"] == "127.0.0.1" and g.values["username"] == "guest"
    assert g.values["port"] == "22"  # guacamole-lite's ssh default
    assert (g.width, g.height) == ("1280", "768")
    assert list(g.video) == ["video/webm"] and list(g.audio) == ["audio/L16"]
    # and the other way round: guacr's encrypt is guacamole-lite's format
    assert lite.decrypt(token, LITE_KEY)["connection"]["settings"]["username"] == "guest"


# ------------------------------------------------------------------ guacr tokens


def test_guacr_token_round_trip_and_single_use(auth: TokenAuthority) -> None:
    assert auth.guacr is not None
    token = auth.guacr.mint(protocol="ssh", params={"hostname": "h", "password": "p"})
    assert token.startswith("g1.")
    sealed = base64.urlsafe_b64decode(token[3:] + "=" * (-len(token[3:]) % 4))
    assert b"hostname" not in sealed and b"ssh" not in sealed  # encrypted, not just signed
    g = authorize(
        auth,
        f"token={token}&GUAC_WIDTH=1000&GUAC_HEIGHT=500&GUAC_DPI=120"
        "&GUAC_IMAGE=image/png&GUAC_IMAGE=image/webp&GUAC_TIMEZONE=UTC&hostname=x",
    )
    assert g.kind == "guacr" and g.selector == "ssh"
    assert dict(g.values) == {"hostname": "h", "password": "p"}  # the query cannot override
    assert (g.width, g.height, g.dpi) == ("1000", "500", "120")
    assert list(g.image) == ["image/png", "image/webp"] and list(g.timezone) == ["UTC"]
    assert g.version is ProtocolVersion.V1_5_0
    assert "already used" in refused(auth, f"token={token}").reason


def test_guacr_join_read_only(auth: TokenAuthority) -> None:
    assert auth.guacr is not None
    g = authorize(auth, "token=" + auth.guacr.mint(join="$xyz", read_only=True) + "&width=300")
    assert g.is_join and g.selector == "$xyz" and g.values == {"read-only": "true"}
    assert g.width == "300"
    g2 = authorize(auth, "token=" + auth.guacr.mint(join="$xyz"))
    assert "read-only" not in g2.values


def test_guacr_refusals(auth: TokenAuthority) -> None:
    now = [1000.0]
    tokens = GuacrTokens(GUACR_KEY, clock=lambda: now[0])
    token = tokens.mint(protocol="ssh", ttl=30)
    # tampered: flip one character of the sealed part
    body = token[3:]
    i = len(body) // 2
    tampered = "g1." + body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1 :]
    assert "tampered" in refused(auth, f"token={tampered}").reason
    assert "tampered" in refused(auth, "token=g1." + body[:-2]).reason
    refused(auth, "token=g1.!!!")
    refused(auth, "token=g1.")
    # another key
    other = GuacrTokens("another operator secret").mint(protocol="ssh")
    assert "tampered or wrong key" in refused(auth, f"token={other}").reason
    # expired
    late = TokenAuthority(guacr=GuacrTokens(GUACR_KEY, clock=lambda: 1031.0))
    assert "expired" in refused(late, f"token={token}").reason
    # replayed: accepted once, then refused
    fresh = TokenAuthority(guacr=GuacrTokens(GUACR_KEY, clock=lambda: 1010.0))
    assert authorize(fresh, f"token={token}").selector == "ssh"
    assert "already used" in refused(fresh, f"token={token}").reason


def test_mint_rejects_bad_requests() -> None:
    t = GuacrTokens(GUACR_KEY)
    for kwargs in (
        {},
        {"protocol": "ssh", "join": "$a"},
        {"join": "abc"},
        {"protocol": ""},
        {"protocol": "ssh", "ttl": 0},
    ):
        with pytest.raises(ValueError):
            t.mint(**kwargs)  # type: ignore[arg-type]


def test_redemption_store_forgets_expired_ids() -> None:
    now = [0.0]
    store = MemoryRedemptionStore(clock=lambda: now[0])
    assert store.redeem_now("a", 5.0) and not store.redeem_now("a", 5.0)
    now[0] = 20.0
    assert store.redeem_now("b", 30.0)
    assert len(store) == 1


# ------------------------------------------------------------------ handshake version


@pytest.mark.parametrize(
    ("source", "want"),
    [
        ("default", ProtocolVersion.V1_1_0),
        ("file", ProtocolVersion.V1_0_0),
        ("env", ProtocolVersion.V1_5_0),
        ("flag", ProtocolVersion.V1_3_0),
    ],
)
def test_lite_version_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, want: ProtocolVersion
) -> None:
    """guacamole-lite sessions connect at ``guacamole_lite_version`` (1.1.0 unless set),
    from ``[guacr]``, GUACR_GUACAMOLE_LITE_VERSION or --guacamole-lite-version."""
    from guacr.cli import resolve
    from guacr.server.ws_door import door_settings, off_reason

    conf = tmp_path / "guacr.conf"
    conf.write_text("[guacr]\nguacamole_lite_version = 1.0.0\n" if source == "file" else "")
    monkeypatch.delenv("GUACR_GUACAMOLE_LITE_VERSION", raising=False)
    if source == "env":
        monkeypatch.setenv("GUACR_GUACAMOLE_LITE_VERSION", "VERSION_1_5_0")
    argv = ["--config", str(conf), "--guacamole-lite-key", LITE_KEY.decode()]
    if source == "flag":
        argv += ["--guacamole-lite-version", "1.3.0"]
    config, _ = resolve(argv)
    assert off_reason(config) == ""
    g = authorize(door_settings(config).authority, "token=" + lite_token(
        {"connection": {"type": "ssh", "settings": {"hostname": "h"}}}
    ).replace("+", "%2B"))  # fmt: skip
    assert g.version is want
    ins = g.client_instructions(["hostname"])
    assert ins[-1] == ("connect", want.wire, "h")
    assert any(i[0] == "timezone" for i in ins) == (want >= ProtocolVersion.V1_1_0)
    hs = Handshake(["hostname"])
    assert [hs.receive(i) for i in ins][-1] and hs.info.version is want


@pytest.mark.parametrize("bad", ["2.0.0", "1.1", "latest", " "])
def test_unknown_lite_version_keeps_the_door_off(bad: str) -> None:
    from guacr.config import Config
    from guacr.server.ws_door import off_reason

    config = Config(guacamole_lite_key=LITE_KEY.decode(), guacamole_lite_version=bad)
    assert "guacamole_lite_version must be" in off_reason(config)
