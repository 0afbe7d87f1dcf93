"""Fixtures for the SSH tests: one guacr daemon per module, loading the SSH handler."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from guacr_process import Guacr, run_guacr
from servers import SSHServer
from ssh.ssh_helpers import HANDLERS, TermClient, ssh_values


@pytest.fixture(scope="module")
def guacr_ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guacr]:
    with run_guacr(tmp_path_factory.mktemp("guacr-ssh"), workers=1, handlers=HANDLERS) as g:
        yield g


@pytest.fixture
def shared_dir(sshd: SSHServer) -> Iterator[Path]:
    """A directory both the test and the sshd's ``guest`` user can write to.

    Not under pytest's tmp_path: pytest resets /tmp/pytest-of-<user> to 0700 whenever a
    session starts, which would lock ``guest`` out while other test runs start.
    """
    path = Path(tempfile.mkdtemp(prefix="guacr-ssh-test-"))
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def connect(guacr_ssh: Guacr, sshd: SSHServer) -> Callable[..., object]:
    """``with connect(**params) as term:`` a logged-in (or failing) terminal client."""

    @contextmanager
    def _connect(
        size: tuple[int, int, int] = (800, 480, 96), **values: str
    ) -> Iterator[TermClient]:
        client = guacr_ssh.client()
        try:
            params = ssh_values(sshd, **values)
            term = TermClient(client)
            term.connection_id = client.handshake("ssh", params, size=size)
            yield term
        finally:
            client.close()

    return _connect
