"""Key files, key ids, key ring rotation and backends cross-checking each other."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gmssl import sm2 as gmssl_sm2

import crypto
from crypto import _der, _primitives
from gateway.errors import BackendUnavailable, EnvelopeInvalid, KeyUnavailable
from tests.conftest import make_key

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def test_keygen_writes_pkcs8_0600_and_spki(tmp_path: Path) -> None:
    key, pub, kid = crypto.keygen(tmp_path / "k", "node")
    assert key.name == "node.key.pem"
    assert pub.name == "node.pub.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert crypto.load_private_key(key).id == kid == crypto.load_public_key(pub).id
    assert len(kid) == 32


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    crypto.keygen(tmp_path, "a")
    before = (tmp_path / "a.key.pem").read_bytes()
    with pytest.raises(KeyUnavailable, match="already exists"):
        crypto.keygen(tmp_path, "a")
    assert (tmp_path / "a.key.pem").read_bytes() == before
    with pytest.raises(KeyUnavailable, match="not a usable key name"):
        crypto.keygen(tmp_path, "../evil")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_private_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key, _, _ = crypto.keygen(tmp_path, "k")
    key.chmod(mode)
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        crypto.load_private_key(key)


def test_bad_key_files_give_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.pem"
    with pytest.raises(KeyUnavailable, match="cannot read"):
        crypto.load_private_key(missing)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    junk.chmod(0o600)
    with pytest.raises(KeyUnavailable, match="not an SM2 private key"):
        crypto.load_private_key(junk)
    pub = tmp_path / "p.pem"
    pub.write_bytes(b"hello")
    with pytest.raises(KeyUnavailable, match="not an SM2 public key"):
        crypto.load_public_key(pub)
    with pytest.raises(KeyUnavailable, match="not a regular file"):
        crypto.load_public_key(tmp_path)


def test_key_ring_rotation_newest_seals_all_open() -> None:
    old, new, sender = make_key(), make_key(), make_key()
    ring_before = crypto.KeyRing([old])
    ring_after = crypto.KeyRing([new, old])  # the new key listed first
    assert ring_after.current(NOW).id == new.id
    env_to_old, _ = crypto.seal_bytes(b"in flight", sender, [old.public], now=NOW)
    env_to_new, _ = crypto.seal_bytes(b"after", sender, [new.public], now=NOW)
    peers = crypto.PeerTable([sender.public])
    assert crypto.open_bytes(env_to_old, ring_after, peers)[1] == b"in flight"
    assert crypto.open_bytes(env_to_new, ring_after, peers)[1] == b"after"
    with pytest.raises(EnvelopeInvalid, match="not addressed"):
        crypto.open_bytes(env_to_new, ring_before, peers)


def test_key_ring_skips_expired_keys_for_sealing(tmp_path: Path) -> None:
    k1, _, id1 = crypto.keygen(tmp_path, "one")
    k2, _, id2 = crypto.keygen(tmp_path, "two")
    ring = crypto.KeyRing.load([(k1, NOW - timedelta(days=1)), (k2, None)])
    assert ring.current(NOW).id == id2
    assert ring.get(id1) is not None  # still opens old traffic
    expired = crypto.KeyRing.load([(k1, NOW - timedelta(days=1))])
    with pytest.raises(KeyUnavailable, match="expired"):
        expired.current(NOW)
    with pytest.raises(KeyUnavailable, match="empty"):
        crypto.KeyRing([])


def test_backends_interoperate_both_ways() -> None:
    """libcrypto and GmSSL (gmssl-pyx) are independent implementations."""
    lib = _primitives.LibcryptoBackend()
    gm = _primitives.GmsslPyxBackend()
    for a, b in ((lib, gm), (gm, lib)):
        k = a.generate()
        twin = b.load_private_pem(k.private_pem())
        assert twin.spki_der() == k.spki_der()
        msg = "跨实现 cross-implementation".encode()
        assert twin.verify(msg, k.sign(msg))
        assert not twin.verify(msg + b".", k.sign(msg))
        cek = bytes(range(16))
        assert twin.decrypt(k.encrypt(cek)) == cek


def test_our_signature_verifies_with_pure_python_gmssl() -> None:
    """gmssl is only a cross-check here: never used to sign (random nonces)."""
    k = make_key()
    pub_raw = _der.parse_spki(k.public.spki_der())
    msg = b"cross-check with gmssl"
    r, s = _der.parse_signature(k.sign(msg))
    checker = gmssl_sm2.CryptSM2(private_key="", public_key=pub_raw.hex(), mode=1)
    sig_hex = f"{r:064x}{s:064x}"
    assert checker.verify_with_sm3(sig_hex, msg)
    assert not checker.verify_with_sm3(sig_hex, msg + b"!")


def test_backend_selection_refuses_unknown_name() -> None:
    with pytest.raises(BackendUnavailable, match="unknown SM2 backend"):
        _primitives.select_backend("nope")
    assert _primitives.select_backend("auto").name == "libcrypto"
