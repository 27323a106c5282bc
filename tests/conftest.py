"""Shared fixtures: fresh SM2 keys, the OpenSSL CLI, tool presence rules."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

import crypto

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Path of an external tool; in CI a missing tool fails, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def openssl() -> str:
    return require_tool("openssl")


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def make_key() -> crypto.PrivateKey:
    k = crypto.backend().generate()
    return crypto.PrivateKey(key=k, id=crypto.key_id(k.spki_der()))


@pytest.fixture
def sender() -> crypto.PrivateKey:
    return make_key()


@pytest.fixture
def recipient() -> crypto.PrivateKey:
    return make_key()


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    d.mkdir()
    return d
