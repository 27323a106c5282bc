"""Fixtures for the file-transport tests: one real sshd per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sshd import Sshd, sshd


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
