"""The protocol definitions and the translations extension, checked against
guacamole-client's formats: protocol JSON as guacamole-ext's ``protocols/ssh.json``
(forms of typed fields), an extension ``.jar`` (a zip with ``guac-manifest.json``) whose
translation keys are the ones guacamole-client looks up for each form, field and option."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from guacr.handlers.database.guacamole import JAR_NAME, install, main, protocol_json
from guacr.handlers.database.handler import MySQLHandler, PostgreSQLHandler

# guacamole-ext's Field.Type names
FIELD_TYPES = {
    "TEXT", "USERNAME", "PASSWORD", "NUMERIC", "BOOLEAN", "ENUM", "MULTILINE", "TIMEZONE",
    "DATE", "TIME", "EMAIL", "LANGUAGE", "TERMINAL_COLOR_SCHEME",
}  # fmt: skip
HANDLERS = {"mysql": MySQLHandler, "postgresql": PostgreSQLHandler}


def _key(name: str) -> str:
    return name.upper().replace("-", "_")


@pytest.mark.parametrize("protocol", ["mysql", "postgresql"])
def test_protocol_definition_format(protocol: str) -> None:
    definition = json.loads(protocol_json(protocol))
    assert set(definition) == {"name", "connectionForms", "sharingProfileForms"}
    assert definition["name"] == protocol
    seen: list[str] = []
    for form in definition["connectionForms"] + definition["sharingProfileForms"]:
        assert set(form) == {"name", "fields"} and form["fields"]
        for field in form["fields"]:
            assert set(field) <= {"name", "type", "options"}
            assert field["type"] in FIELD_TYPES, field
            if field["type"] in ("ENUM", "BOOLEAN", "TERMINAL_COLOR_SCHEME"):
                assert isinstance(field["options"], list) and field["options"]
            if field["type"] == "BOOLEAN":
                assert field["options"] == ["true"]
    for form in definition["connectionForms"]:
        seen += [f["name"] for f in form["fields"]]
    # every field is a parameter guacr takes, and every parameter has a field
    args = HANDLERS[protocol].arg_names()
    assert len(seen) == len(set(seen))
    assert set(seen) == set(args)
    share = [f["name"] for form in definition["sharingProfileForms"] for f in form["fields"]]
    assert share == ["read-only"]


def test_extension_jar_structure_and_translations(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    jar = tmp_path / "extensions" / JAR_NAME
    with zipfile.ZipFile(jar) as z:
        assert z.testzip() is None
        names = set(z.namelist())
        manifest = json.loads(z.read("guac-manifest.json"))
        assert set(manifest) >= {"guacamoleVersion", "name", "namespace"}
        assert manifest["guacamoleVersion"].startswith("1.")
        for path in manifest["translations"]:
            assert path in names
        translations = json.loads(z.read("translations/en.json"))
    for protocol in ("mysql", "postgresql"):
        on_disk = json.loads((tmp_path / "protocols" / f"{protocol}.json").read_text())
        assert on_disk == json.loads(protocol_json(protocol))
        table = translations[f"PROTOCOL_{_key(protocol)}"]
        assert table["NAME"]
        for form in on_disk["connectionForms"] + on_disk["sharingProfileForms"]:
            assert f"SECTION_HEADER_{_key(form['name'])}" in table
            for field in form["fields"]:
                assert f"FIELD_HEADER_{_key(field['name'])}" in table, field["name"]
                if field["type"] in ("ENUM", "TERMINAL_COLOR_SCHEME"):
                    for option in field["options"]:
                        suffix = _key(option) if option else "EMPTY"
                        assert f"FIELD_OPTION_{_key(field['name'])}_{suffix}" in table


def test_install_writes_into_guacamole_home(tmp_path: Path) -> None:
    written = install(tmp_path / "home")
    assert sorted(p.name for p in written) == [JAR_NAME, "mysql.json", "postgresql.json"]
