"""The crypto commands as an operator runs them: exit codes, messages, files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def gw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_gateway.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_keygen_seal_open_split(tmp_path: Path) -> None:
    assert gw("keygen", "--out", "k", "--name", "a", cwd=tmp_path).returncode == 0
    r = gw("keygen", "--out", "k", "--name", "b", cwd=tmp_path)
    assert r.returncode == 0
    assert "key id" in r.stdout
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    r = gw(
        "seal",
        "--sender-key",
        "k/a.key.pem",
        "--to",
        "k/b.pub.pem",
        "--to",
        "k/a.pub.pem",
        "--in",
        "in.bin",
        "--out",
        "env.bin",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    r = gw(
        "open",
        "--key",
        "k/b.key.pem",
        "--from",
        "k/a.pub.pem",
        "--in",
        "env.bin",
        "--out",
        "out.bin",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.bin").read_bytes() == data
    r = gw("envelope", "split", "env.bin", "parts", cwd=tmp_path)
    assert r.returncode == 0
    names = {p.name for p in (tmp_path / "parts").iterdir()}
    assert {
        "header.json",
        "signed.bin",
        "signature.der",
        "nonce.bin",
        "aad.bin",
        "ciphertext.bin",
        "tag.bin",
    } <= names
    assert len([n for n in names if n.startswith("key-")]) == 2


def test_open_failure_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    for n in ("a", "b", "c"):
        gw("keygen", "--out", "k", "--name", n, cwd=tmp_path)
    (tmp_path / "in.bin").write_bytes(b"hello" * 1000)
    gw(
        "seal",
        "--sender-key",
        "k/a.key.pem",
        "--to",
        "k/b.pub.pem",
        "--in",
        "in.bin",
        "--out",
        "env.bin",
        cwd=tmp_path,
    )
    env = (tmp_path / "env.bin").read_bytes()
    flipped = bytearray(env)
    flipped[len(env) // 2] ^= 0x80
    (tmp_path / "bad.bin").write_bytes(bytes(flipped))
    cases = [
        ("--key", "k/b.key.pem", "--from", "k/a.pub.pem", "--in", "bad.bin"),
        ("--key", "k/c.key.pem", "--from", "k/a.pub.pem", "--in", "env.bin"),
        ("--key", "k/b.key.pem", "--from", "k/c.pub.pem", "--in", "env.bin"),
    ]
    for args in cases:
        r = gw("open", *args, "--out", "out.bin", cwd=tmp_path)
        assert r.returncode == 1, (args, r.stderr)
        assert "E_ENVELOPE" in r.stderr
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "out.bin").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.bin")]


def test_usage_and_config_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    gw("keygen", "--out", "k", "--name", "a", cwd=tmp_path)
    (tmp_path / "k/a.key.pem").chmod(0o644)
    (tmp_path / "f").write_bytes(b"x")
    runs = [
        gw("nonsense", cwd=tmp_path),
        gw("seal", "--in", "f", cwd=tmp_path),
        gw(
            "seal",
            "--sender-key",
            "k/a.key.pem",
            "--to",
            "k/a.pub.pem",
            "--in",
            "f",
            "--out",
            "e",
            cwd=tmp_path,
        ),
        gw(
            "seal",
            "--sender-key",
            "missing.pem",
            "--to",
            "k/a.pub.pem",
            "--in",
            "f",
            "--out",
            "e",
            cwd=tmp_path,
        ),
        gw("envelope", "split", "nope.bin", "d", cwd=tmp_path),
    ]
    for r in runs:
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "chmod 600" in runs[2].stderr


def test_split_of_garbage_exits_1(tmp_path: Path) -> None:
    (tmp_path / "g.bin").write_bytes(b"garbage" * 10)
    r = gw("envelope", "split", "g.bin", "d", cwd=tmp_path)
    assert r.returncode == 1
    assert "E_ENVELOPE" in r.stderr
