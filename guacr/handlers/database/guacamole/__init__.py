"""What the stock Guacamole web app needs to configure ``mysql`` and ``postgresql``.

guacamole-client knows a protocol's parameters from a JSON definition (the format of
guacamole-ext's own ``protocols/ssh.json``: connection forms of typed fields and sharing
profile forms), read from ``GUACAMOLE_HOME/protocols/``, and the labels of those fields
from translations, which an extension (a ``.jar``: a zip with ``guac-manifest.json``)
in ``GUACAMOLE_HOME/extensions/`` can carry. ``install(GUACAMOLE_HOME)`` writes both::

    python -m guacr.handlers.database.guacamole /etc/guacamole
"""

from __future__ import annotations

import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Final

PROTOCOLS: Final = ("mysql", "postgresql")
JAR_NAME: Final = "guacr-database.jar"
_EXTENSION_FILES: Final = ("guac-manifest.json", "translations/en.json")


def _data(*parts: str) -> bytes:
    node = resources.files(__name__)
    for part in parts:
        node = node.joinpath(part)
    return node.read_bytes()


def protocol_json(name: str) -> bytes:
    """The protocol definition for ``name`` (``mysql`` or ``postgresql``)."""
    return _data("protocols", f"{name}.json")


def build_extension(path: Path) -> Path:
    """Write the translations extension (a zip, named ``.jar`` as Guacamole expects)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as jar:
        for name in _EXTENSION_FILES:
            jar.writestr(name, _data("extension", *name.split("/")))
    return path


def install(guacamole_home: Path) -> list[Path]:
    """Write ``protocols/*.json`` and ``extensions/guacr-database.jar`` under the home."""
    written = []
    protocols = guacamole_home / "protocols"
    extensions = guacamole_home / "extensions"
    protocols.mkdir(parents=True, exist_ok=True)
    extensions.mkdir(parents=True, exist_ok=True)
    for name in PROTOCOLS:
        target = protocols / f"{name}.json"
        target.write_bytes(protocol_json(name))
        written.append(target)
    written.append(build_extension(extensions / JAR_NAME))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m guacr.handlers.database.guacamole GUACAMOLE_HOME``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m guacr.handlers.database.guacamole GUACAMOLE_HOME", file=sys.stderr)
        return 2
    for path in install(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
