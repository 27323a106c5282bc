"""Fixtures for the file-transport tests: real sshd servers, one per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sshd import Sshd, sshd


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def ssh_password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd that also lets a temporary user log in with a password (root only)."""
    with sshd(tmp_path_factory.mktemp("sshd-pw"), password_user=True) as server:
        yield server
