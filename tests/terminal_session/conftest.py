"""Fixtures for TerminalSession end-to-end tests: one guacr daemon per module (SSH)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from guacr_process import Guacr, run_guacr
from ssh.ssh_helpers import HANDLERS


@pytest.fixture(scope="module")
def guacr_ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-term"), workers=1, handlers=HANDLERS) as g:
        yield g
