"""The Dockerfile replay tool's own rules (unit tests: no root, no image)."""

from __future__ import annotations

from pathlib import Path

import pytest
from image.replay import DockerIgnore, ReplayError, expand, parse, parse_env, split_flags

ROOT = Path(__file__).resolve().parents[2]


def test_parse_joins_continuations_and_drops_comments() -> None:
    steps = parse("# c\nFROM a AS b\nRUN one \\\n# inside\n    two\n\nUSER x\n")
    assert [(s.keyword, s.args, s.line) for s in steps] == [
        ("FROM", "a AS b", 2),
        ("RUN", "one two", 3),
        ("USER", "x", 7),
    ]
    with pytest.raises(ReplayError):
        parse("RUN a \\\n")


def test_env_and_expansion() -> None:
    env = {"PATH": "/usr/bin"}
    assert parse_env("A=1 PATH=/opt/bin:$PATH B=${A}x", env) == {
        "A": "1",
        "PATH": "/opt/bin:/usr/bin",
        "B": "1x",
    }
    assert parse_env("LEGACY some value", env) == {"LEGACY": "some value"}
    assert expand("${NOPE:-dflt}/$PATH", env) == "dflt//usr/bin"
    assert split_flags("--from=build --chown=1:2 /a /b") == (
        {"from": "build", "chown": "1:2"},
        "/a /b",
    )


def test_dockerignore_rules(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*\n!src\n**/*.so\n!src/keep.so\nsrc/**/cache\n")
    ig = DockerIgnore.load(tmp_path)
    assert ig.excluded(".git/config")
    assert ig.excluded("tests/a.py")
    assert not ig.excluded("src/a.py")
    assert ig.excluded("src/x/lib.so")
    assert not ig.excluded("src/keep.so")
    assert ig.excluded("src/a/b/cache/f")


def test_the_repositorys_context_holds_only_what_the_image_needs() -> None:
    ig = DockerIgnore.load(ROOT)
    for kept in ("pyproject.toml", "README.md", "guacr/cli.py", "docker/entrypoint.sh"):
        assert not ig.excluded(kept), kept
    for dropped in (".git/HEAD", ".venv/bin/python", "tests/conftest.py",
                    "guacr/terminal/_vtscreen-0123456789ab.so", "guacr/__pycache__/cli.cpython-311.pyc"):  # fmt: skip
        assert ig.excluded(dropped), dropped
    files = dict(ig.files(ROOT, "guacr"))
    assert "cli.py" in files and not any(name.endswith(".so") for name in files)
