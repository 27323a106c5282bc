"""Interop with the real OpenSSL 3 CLI, both directions, and the docs recipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import crypto
from tests.conftest import ROOT, require_tool

ID_OPT = ["-sigopt", "distid:1234567812345678"]
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
pytestmark = pytest.mark.interop


def run(*args: str, cwd: Path | None = None, data: bytes | None = None) -> bytes:
    res = subprocess.run(
        list(args), cwd=cwd, input=data, capture_output=True, check=False
    )
    assert res.returncode == 0, (args, res.stderr.decode(errors="replace"))
    return res.stdout


def gateway(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_gateway.py"), *args],
        cwd=cwd,
        capture_output=True,
        check=False,
    )


@pytest.fixture
def our_keys(tmp_path: Path) -> tuple[Path, Path]:
    key, pub, _ = crypto.keygen(tmp_path, "ours")
    return key, pub


@pytest.fixture
def openssl_keys(openssl: str, tmp_path: Path) -> tuple[Path, Path]:
    key, pub = tmp_path / "ossl.key.pem", tmp_path / "ossl.pub.pem"
    run(openssl, "genpkey", "-algorithm", "SM2", "-out", str(key))
    key.chmod(0o600)
    run(openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub


def test_our_keys_are_readable_by_openssl(
    openssl: str, our_keys: tuple[Path, Path]
) -> None:
    key, pub = our_keys
    run(openssl, "pkey", "-in", str(key), "-noout")
    text = run(openssl, "pkey", "-in", str(key), "-noout", "-text_pub").decode()
    assert "SM2" in text
    run(openssl, "pkey", "-pubin", "-in", str(pub), "-noout")
    # The key id we print is reproducible with OpenSSL alone.
    der = run(openssl, "pkey", "-pubin", "-in", str(pub), "-outform", "DER")
    digest = run(openssl, "dgst", "-sm3", "-r", data=der).decode()[:32]
    assert digest == crypto.load_public_key(pub).id


def test_openssl_keys_load(openssl_keys: tuple[Path, Path]) -> None:
    key, pub = openssl_keys
    priv = crypto.load_private_key(key)
    assert priv.id == crypto.load_public_key(pub).id


def test_our_signature_verifies_with_openssl(
    openssl: str, our_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = our_keys
    msg = tmp_path / "msg"
    msg.write_bytes("签名的消息 message".encode() * 100)
    sig = tmp_path / "sig.der"
    sig.write_bytes(crypto.load_private_key(key).sign(msg.read_bytes()))
    out = run(
        openssl,
        "dgst",
        "-sm3",
        "-verify",
        str(pub),
        *ID_OPT,
        "-signature",
        str(sig),
        str(msg),
    )
    assert b"Verified OK" in out
    # And a different ID must fail: proof the ID is really Z's input.
    res = subprocess.run(
        [
            openssl,
            "dgst",
            "-sm3",
            "-verify",
            str(pub),
            "-sigopt",
            "distid:1234567812345679",
            "-signature",
            str(sig),
            str(msg),
        ],
        capture_output=True,
        check=False,
    )
    assert res.returncode != 0


def test_openssl_signature_verifies_with_us(
    openssl: str, openssl_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = openssl_keys
    msg = tmp_path / "msg"
    msg.write_bytes(b"from openssl " * 50)
    sig = tmp_path / "sig.der"
    run(openssl, "dgst", "-sm3", "-sign", str(key), *ID_OPT, "-out", str(sig), str(msg))
    peer = crypto.load_public_key(pub)
    assert peer.verify(msg.read_bytes(), sig.read_bytes())
    assert not peer.verify(msg.read_bytes() + b"!", sig.read_bytes())


def test_our_wrapped_key_unwraps_with_openssl(
    openssl: str, openssl_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = openssl_keys
    cek = os.urandom(16)
    ek = tmp_path / "ek.der"
    ek.write_bytes(crypto.load_public_key(pub).wrap(cek))
    assert (
        run(openssl, "pkeyutl", "-decrypt", "-inkey", str(key), "-in", str(ek)) == cek
    )


def test_openssl_ciphertext_decrypts_with_us(
    openssl: str, our_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = our_keys
    cek = tmp_path / "cek.bin"
    cek.write_bytes(os.urandom(16))
    ek = run(
        openssl, "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), "-in", str(cek)
    )
    assert ek[0] == 0x30  # GM/T 0009 DER, not raw C1C3C2
    assert crypto.load_private_key(key).unwrap(ek) == cek.read_bytes()


def _recipe() -> str:
    text = (ROOT / "docs/envelope.md").read_text()
    m = re.search(
        r"<!-- recipe:start -->\s*```sh\n(.*?)```\s*<!-- recipe:end -->", text, re.S
    )
    assert m, "recipe block missing from docs/envelope.md"
    return m.group(1)


@pytest.mark.parametrize("compression", crypto.COMPRESSIONS)
def test_docs_recipe_opens_an_envelope(
    openssl: str, tmp_path: Path, compression: str
) -> None:
    """Run docs/envelope.md's recipe verbatim: split + OpenSSL CLI + cryptography."""
    require_tool("gzip")
    require_tool("zstd")
    sender_key, sender_pub, _ = crypto.keygen(tmp_path / "k", "sender")
    # The recipient's key is made by OpenSSL itself: no gateway code involved.
    my_key = tmp_path / "me.key.pem"
    run(openssl, "genpkey", "-algorithm", "SM2", "-out", str(my_key))
    my_key.chmod(0o600)
    my_pub = tmp_path / "me.pub.pem"
    run(openssl, "pkey", "-in", str(my_key), "-pubout", "-out", str(my_pub))
    payload = tmp_path / "payload.in"
    payload.write_bytes("记录 record\n".encode() * 50_000 + os.urandom(3000))
    env = tmp_path / "env.bin"
    res = gateway(
        "seal",
        "--sender-key",
        str(sender_key),
        "--to",
        str(my_pub),
        "--in",
        str(payload),
        "--out",
        str(env),
        "--compression",
        compression,
    )
    assert res.returncode == 0, res.stderr
    work = tmp_path / "work"
    work.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    res2 = subprocess.run(
        ["bash", "-c", _recipe()],
        cwd=work,
        capture_output=True,
        check=False,
        env={
            **os.environ,
            "ENV": str(env),
            "SENDER_PUB": str(sender_pub),
            "MY_KEY": str(my_key),
            "GATEWAY": f"{sys.executable} {ROOT / 'run_gateway.py'}",
            "PATH": f"{venv_bin}:{os.environ['PATH']}",
        },
    )
    assert res2.returncode == 0, res2.stderr.decode(errors="replace")
    assert (work / "payload.out").read_bytes() == payload.read_bytes()


def test_docs_recipe_detects_a_forged_signature(openssl: str, tmp_path: Path) -> None:
    sender_key, _, _ = crypto.keygen(tmp_path / "k", "sender")
    _, other_pub, _ = crypto.keygen(tmp_path / "k", "other")
    my_key, my_pub, _ = crypto.keygen(tmp_path / "k", "me")
    payload = tmp_path / "p"
    payload.write_bytes(b"x" * 1000)
    env = tmp_path / "env.bin"
    assert (
        gateway(
            "seal",
            "--sender-key",
            str(sender_key),
            "--to",
            str(my_pub),
            "--in",
            str(payload),
            "--out",
            str(env),
        ).returncode
        == 0
    )
    work = tmp_path / "w"
    work.mkdir()
    res = subprocess.run(
        ["bash", "-c", _recipe()],
        cwd=work,
        capture_output=True,
        check=False,
        env={
            **os.environ,
            "ENV": str(env),
            "SENDER_PUB": str(other_pub),
            "MY_KEY": str(my_key),
            "GATEWAY": f"{sys.executable} {ROOT / 'run_gateway.py'}",
        },
    )
    assert res.returncode != 0
    assert not (work / "payload.out").exists()
