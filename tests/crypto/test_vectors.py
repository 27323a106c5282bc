"""Known-answer tests: every vector in tests/fixtures/crypto/sm-vectors.json.

The file is a copy of shared/vectors/sm-vectors.json (standards' published
values); a test checks the copy still matches when shared/ is present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gmalg
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto import _der, _primitives
from gateway.errors import BackendUnavailable
from tests.conftest import SHARED

VECTORS_PATH = (
    Path(__file__).resolve().parent.parent / "fixtures/crypto/sm-vectors.json"
)
V: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
BACKENDS = ["libcrypto", "gmssl-pyx"]


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def test_fixture_copy_matches_shared() -> None:
    shared = SHARED / "vectors/sm-vectors.json"
    if not shared.exists():
        pytest.skip("shared/ not present (the project runs without it)")
    assert json.loads(shared.read_text()) == V


@pytest.mark.parametrize("vec", V["sm3"]["vectors"], ids=lambda v: v["name"])
def test_sm3(vec: dict[str, Any]) -> None:
    if "msg_ascii" in vec:
        msg = vec["msg_ascii"].encode()
    else:
        part, times = vec["msg_ascii_repeat"]
        msg = part.encode() * times
    assert _primitives.sm3(msg).hex() == vec["digest"]
    inc = _primitives.Sm3()
    for i in range(len(msg)):
        inc.update(msg[i : i + 1])
    assert inc.digest().hex() == vec["digest"]


def _sm4_ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def test_sm4_single_block() -> None:
    vec = V["sm4"]["vectors"][0]
    assert _sm4_ecb(h(vec["key"]), h(vec["pt"])).hex() == vec["ct"]
    dec = Cipher(algorithms.SM4(h(vec["key"])), modes.ECB()).decryptor()
    assert (dec.update(h(vec["ct"])) + dec.finalize()).hex() == vec["pt"]


@pytest.mark.slow
def test_sm4_million_iterations() -> None:
    vec = V["sm4"]["vectors"][1]
    assert vec["iterations"] == 1_000_000
    enc = Cipher(algorithms.SM4(h(vec["key"])), modes.ECB()).encryptor()
    block = h(vec["pt"])
    for _ in range(vec["iterations"]):
        block = enc.update(block)
    assert block.hex() == vec["ct"]


def test_sm4_cbc_and_ctr() -> None:
    m = V["sm4_modes_ietf"]
    cbc = m["cbc"]
    enc = Cipher(algorithms.SM4(h(cbc["key"])), modes.CBC(h(cbc["iv"]))).encryptor()
    assert (enc.update(h(cbc["pt"])) + enc.finalize()).hex() == cbc["ct_nopad"]
    ctr = m["ctr"]
    enc = Cipher(algorithms.SM4(h(ctr["key"])), modes.CTR(h(ctr["iv"]))).encryptor()
    assert (enc.update(h(ctr["pt"])) + enc.finalize()).hex() == ctr["ct"]


def test_sm4_gcm_rfc8998_through_recipe_class() -> None:
    g = V["sm4_modes_ietf"]["gcm"]
    enc = _primitives.Gcm(h(g["key"]), h(g["iv"]), h(g["aad"]))
    ct = enc.update(h(g["pt"])) + enc.finalize()
    assert ct.hex() == g["ct"]
    assert enc.tag.hex() == g["tag"]
    dec = _primitives.Gcm(h(g["key"]), h(g["iv"]), h(g["aad"]), tag=h(g["tag"]))
    assert (dec.update(ct) + dec.finalize()).hex() == g["pt"]
    bad = _primitives.Gcm(h(g["key"]), h(g["iv"]), h(g["aad"]), tag=bytes(16))
    bad.update(ct)
    with pytest.raises(_primitives.InvalidTag):
        bad.finalize()


def _sig_vec() -> dict[str, Any]:
    s: dict[str, Any] = V["sm2"]["signature"]
    return s


@pytest.mark.parametrize("name", BACKENDS)
def test_sm2_signature_vector_verifies(name: str) -> None:
    s = _sig_vec()
    backend = _primitives.select_backend(name)
    try:
        pub = backend.load_public_der(
            _der.spki(int(s["pub_x"], 16), int(s["pub_y"], 16))
        )
        sig = _der.signature(int(s["r"], 16), int(s["s"], 16))
        assert s["id_ascii"] == "1234567812345678"
        assert pub.verify(s["msg_ascii"].encode(), sig)
        assert not pub.verify(b"message digesu", sig)
        assert not pub.verify(s["msg_ascii"].encode(), sig, b"1234567812345679")
    finally:
        _primitives.select_backend("auto")


@pytest.mark.parametrize("name", BACKENDS)
def test_sm2_decryption_vector(name: str) -> None:
    e = V["sm2"]["encryption"]
    s = _sig_vec()
    backend = _primitives.select_backend(name)
    try:
        pem = _primitives.pem_wrap(
            _der.pkcs8(int(e["d"], 16), int(s["pub_x"], 16), int(s["pub_y"], 16)),
            "PRIVATE KEY",
        )
        priv = backend.load_private_pem(pem)
        ct = _der.sm2_cipher(
            int(e["c1_x"], 16), int(e["c1_y"], 16), h(e["c3"]), h(e["c2"])
        )
        assert priv.decrypt(ct) == e["msg_ascii"].encode()
        assert priv.spki_der() == _der.spki(int(s["pub_x"], 16), int(s["pub_y"], 16))
    finally:
        _primitives.select_backend("auto")


def test_sm2_vectors_reproduced_by_independent_gmalg() -> None:
    """With the published nonce k, gmalg (pure Python) gives the exact published
    r, s and C1/C3/C2: the vectors and our reading of them agree."""
    s = _sig_vec()
    e = V["sm2"]["encryption"]
    k = int(s["k"], 16)
    pk = b"\x04" + h(s["pub_x"]) + h(s["pub_y"])
    signer = gmalg.SM2(h(s["d"]), s["id_ascii"].encode(), pk, rnd_fn=lambda _n: k)
    r, sv = signer.sign(s["msg_ascii"].encode())
    assert (r.hex(), sv.hex()) == (s["r"], s["s"])
    enc = gmalg.SM2(
        h(e["d"]), b"1234567812345678", pk, rnd_fn=lambda _n: int(e["k"], 16)
    )
    c = enc.encrypt(e["msg_ascii"].encode())
    assert c.hex() == "04" + e["c1_x"] + e["c1_y"] + e["c3"] + e["c2"]


def test_self_test_passes_and_catches_a_broken_backend() -> None:
    _primitives.self_test(_primitives.LibcryptoBackend())

    class Broken(_primitives.LibcryptoBackend):
        name = "broken"

        def load_public_der(self, der: bytes) -> _primitives.Sm2Key:
            key = super().load_public_der(der)

            class Lying:
                def __getattr__(self, attr: str) -> Any:
                    return getattr(key, attr)

                def verify(self, *_a: Any, **_k: Any) -> bool:
                    return True  # accepts anything: must be caught

            return Lying()

    with pytest.raises(BackendUnavailable, match="broken: self-test"):
        _primitives.self_test(Broken())
