"""The handshake state machine, as guacd runs it."""

from __future__ import annotations

import pytest

from guacr.errors import ProtocolError
from guacr.protocol.handshake import Handshake, parse_select
from guacr.protocol.version import ProtocolVersion


def test_select() -> None:
    assert parse_select(("select", "ssh")) == "ssh"
    assert parse_select(("select", "$abc")) == "$abc"
    for bad in [("connect", "ssh"), ("select",), ("select", "a", "b"), ("select", "x" * 257)]:
        with pytest.raises(ProtocolError):
            parse_select(bad)


def test_full_handshake_any_order_and_unknown_opcodes() -> None:
    h = Handshake(["hostname", "port"])
    assert not h.receive(("image", "image/png", "image/webp"))
    assert not h.receive(("bogus", "1"))
    assert not h.receive(("size", "800", "600"))
    assert not h.receive(("size", "1024", "768", "120"))  # last size wins
    assert not h.receive(("timezone", "Europe/Paris"))
    assert not h.receive(("name", "alice"))
    assert not h.receive(("audio", "audio/L16"))
    assert h.receive(("connect", "VERSION_1_3_0", "example", "22"))
    info = h.info
    assert (info.width, info.height, info.dpi) == (1024, 768, 120)
    assert info.values == {"hostname": "example", "port": "22"}
    assert info.version is ProtocolVersion.V1_3_0
    assert info.supports_webp and info.timezone == "Europe/Paris" and info.name == "alice"


def test_default_dpi_and_versions() -> None:
    h = Handshake([])
    h.receive(("image",))
    h.receive(("size", "10", "20"))
    assert h.receive(("connect", ""))
    assert h.info.dpi == 96 and h.info.version is ProtocolVersion.V1_0_0


def test_wrong_value_count_is_an_error_not_a_hang() -> None:
    h = Handshake(["a", "b"])
    h.receive(("image", "image/png"))
    with pytest.raises(ProtocolError, match="expected number of arguments"):
        h.receive(("connect", "VERSION_1_5_0", "x"))


def test_missing_image_is_an_error_not_a_crash() -> None:
    h = Handshake(["a"])
    with pytest.raises(ProtocolError, match="image"):
        h.receive(("connect", "VERSION_1_5_0", "x"))


def test_bad_size() -> None:
    with pytest.raises(ProtocolError):
        Handshake([]).receive(("size", "10"))
    with pytest.raises(ProtocolError):
        Handshake([]).receive(("size", "ten", "20"))
