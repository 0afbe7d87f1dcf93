"""scripts/install.sh never re-points an existing ``guacr`` command without saying so.

Every clone's install used to re-point /usr/local/bin/guacr silently at itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / ".venv" / "bin" / "guacr"


def _link(bin_dir: Path, mode: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GUACR_LINK"}
    env["GUACR_BIN_DIR"] = str(bin_dir)
    if mode is not None:
        env["GUACR_LINK"] = mode
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), "--link-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_missing_link_is_created(tmp_path: Path) -> None:
    proc = _link(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(tmp_path / "guacr") == str(OURS)
    assert "linked" in proc.stdout


def test_link_to_this_checkout_is_kept_quietly(tmp_path: Path) -> None:
    (tmp_path / "guacr").symlink_to(OURS)
    proc = _link(tmp_path)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert os.readlink(tmp_path / "guacr") == str(OURS)


def test_link_to_another_checkout_is_left_alone_with_a_note(tmp_path: Path) -> None:
    other = tmp_path / "other" / ".venv" / "bin" / "guacr"
    (tmp_path / "guacr").symlink_to(other)
    proc = _link(tmp_path)
    assert proc.returncode == 0
    assert os.readlink(tmp_path / "guacr") == str(other)
    assert str(other) in proc.stderr and str(OURS) in proc.stderr
    assert "GUACR_LINK=replace" in proc.stderr


def test_a_file_in_the_way_is_left_alone_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "guacr").write_text("#!/bin/sh\n")
    proc = _link(tmp_path)
    assert proc.returncode == 0
    assert not (tmp_path / "guacr").is_symlink()
    assert "not a link" in proc.stderr


def test_replace_re_points_and_says_so(tmp_path: Path) -> None:
    other = tmp_path / "other-guacr"
    (tmp_path / "guacr").symlink_to(other)
    proc = _link(tmp_path, "replace")
    assert proc.returncode == 0
    assert os.readlink(tmp_path / "guacr") == str(OURS)
    assert f"re-pointing {tmp_path / 'guacr'} from {other}" in proc.stderr


def test_never_and_bad_values(tmp_path: Path) -> None:
    assert _link(tmp_path, "never").returncode == 0
    assert not (tmp_path / "guacr").exists()
    bad = _link(tmp_path, "sometimes")
    assert bad.returncode == 2
    assert "GUACR_LINK must be keep, replace or never, not 'sometimes'" in bad.stderr
