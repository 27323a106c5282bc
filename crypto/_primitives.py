"""SM2 / SM3 / SM4 primitives. The only module that imports cryptography.hazmat.

- SM3 and SM4-GCM: `cryptography` (OpenSSL speed; both release the GIL).
- SM2: OpenSSL libcrypto through ``_libcrypto`` (preferred), or the GmSSL C
  library through ``gmssl_pyx`` when libcrypto lacks SM2. Whichever is chosen
  must first pass the known-answer self-test (GB/T 32918.5 Annex A and C).

The pure-Python ``gmssl`` package is never used here: its SM2 nonce comes from
``random`` (not a CSPRNG), its SM2 decryption skips the C3 check, and its SM4
runs at about 0.2 MB/s. Tests use it only as an independent cross-check.
"""

from __future__ import annotations

import base64
import threading
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import (
    AEADEncryptionContext,
    Cipher,
    algorithms,
    modes,
)

from crypto import _der, _libcrypto
from gateway.errors import BackendUnavailable, CryptoError, KeyUnavailable

SM2_DEFAULT_ID = b"1234567812345678"  # GM/T 0009 §10 default user ID
SM4_KEY_BYTES = 16
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16

__all__ = [
    "GCM_NONCE_BYTES",
    "GCM_TAG_BYTES",
    "SM2_DEFAULT_ID",
    "SM4_KEY_BYTES",
    "Gcm",
    "InvalidTag",
    "Sm2Key",
    "Sm3",
    "backend",
    "sm3",
]


# --- SM3 -------------------------------------------------------------------


class Sm3:
    """Incremental SM3."""

    __slots__ = ("_h",)

    def __init__(self, data: bytes = b"") -> None:
        self._h = hashes.Hash(hashes.SM3())
        if data:
            self._h.update(data)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.finalize()


def sm3(data: bytes | memoryview) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


# --- SM4-GCM ---------------------------------------------------------------


class Gcm:
    """SM4-GCM in one direction, streaming. ``finalize`` checks the tag on decrypt."""

    def __init__(
        self, key: bytes, nonce: bytes, aad: bytes, *, tag: bytes | None = None
    ) -> None:
        if len(key) != SM4_KEY_BYTES or len(nonce) != GCM_NONCE_BYTES:
            raise CryptoError("bad SM4-GCM key or nonce length")
        cipher = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag))
        self._ctx = cipher.encryptor() if tag is None else cipher.decryptor()
        if aad:
            self._ctx.authenticate_additional_data(aad)
        self._encrypting = tag is None

    def update(self, data: bytes | memoryview) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        """Return any last bytes; on decrypt raise InvalidTag if the tag is wrong."""
        return self._ctx.finalize()

    @property
    def tag(self) -> bytes:
        if not self._encrypting:
            raise CryptoError("no tag on a decryptor")
        ctx = self._ctx
        if not isinstance(ctx, AEADEncryptionContext):
            raise CryptoError("no tag on a decryptor")
        return ctx.tag


# --- SM2 backends ----------------------------------------------------------


def pem_body(pem: bytes, label: str) -> bytes:
    """DER inside a PEM block with the given label; ValueError otherwise."""
    begin = f"-----BEGIN {label}-----".encode()
    end = f"-----END {label}-----".encode()
    start = pem.find(begin)
    stop = pem.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no {label} PEM block")
    return base64.b64decode(
        b"".join(pem[start + len(begin) : stop].split()), validate=True
    )


def pem_wrap(der: bytes, label: str) -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"\n".join(lines)
        + f"\n-----END {label}-----\n".encode()
    )


class Sm2Key(Protocol):
    """An SM2 key held by a backend. Private keys can do everything."""

    @property
    def is_private(self) -> bool: ...

    def spki_der(self) -> bytes: ...

    def private_pem(self) -> bytes: ...

    def sign(self, message: bytes, sm2_id: bytes = SM2_DEFAULT_ID) -> bytes: ...

    def verify(
        self, message: bytes, signature: bytes, sm2_id: bytes = SM2_DEFAULT_ID
    ) -> bool: ...

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes) -> bytes: ...


class Sm2Backend(Protocol):
    name: str

    def generate(self) -> Sm2Key: ...

    def load_private_pem(self, pem: bytes) -> Sm2Key: ...

    def load_public_der(self, der: bytes) -> Sm2Key: ...

    def describe(self) -> str: ...


class _EvpSm2Key:
    __slots__ = ("_der", "_key")

    def __init__(self, key: _libcrypto.EvpKey) -> None:
        self._key = key
        self._der = _libcrypto.public_der(key)

    @property
    def is_private(self) -> bool:
        return self._key.private

    def spki_der(self) -> bytes:
        return self._der

    def private_pem(self) -> bytes:
        if not self._key.private:
            raise KeyUnavailable("not a private key")
        return _libcrypto.private_pem(self._key)

    def sign(self, message: bytes, sm2_id: bytes = SM2_DEFAULT_ID) -> bytes:
        if not self._key.private:
            raise KeyUnavailable("not a private key")
        try:
            return _libcrypto.sign(self._key, message, sm2_id)
        except _libcrypto.LibcryptoError as exc:
            raise CryptoError("SM2 sign failed") from exc

    def verify(
        self, message: bytes, signature: bytes, sm2_id: bytes = SM2_DEFAULT_ID
    ) -> bool:
        try:
            return _libcrypto.verify(self._key, message, signature, sm2_id)
        except _libcrypto.LibcryptoError:
            return False

    def encrypt(self, plaintext: bytes) -> bytes:
        try:
            return _libcrypto.encrypt(self._key, plaintext)
        except _libcrypto.LibcryptoError as exc:
            raise CryptoError("SM2 encrypt failed") from exc

    def decrypt(self, ciphertext: bytes) -> bytes:
        if not self._key.private:
            raise KeyUnavailable("not a private key")
        try:
            return _libcrypto.decrypt(self._key, ciphertext)
        except _libcrypto.LibcryptoError as exc:
            raise CryptoError("SM2 decrypt failed") from exc


class LibcryptoBackend:
    name = "libcrypto"

    def generate(self) -> Sm2Key:
        try:
            return _EvpSm2Key(_libcrypto.generate())
        except _libcrypto.LibcryptoError as exc:
            raise CryptoError(f"SM2 key generation failed ({exc})") from exc

    def load_private_pem(self, pem: bytes) -> Sm2Key:
        try:
            return _EvpSm2Key(_libcrypto.load_private_pem(pem))
        except _libcrypto.LibcryptoError as exc:
            raise KeyUnavailable(str(exc)) from exc

    def load_public_der(self, der: bytes) -> Sm2Key:
        try:
            return _EvpSm2Key(_libcrypto.load_public_pem(pem_wrap(der, "PUBLIC KEY")))
        except _libcrypto.LibcryptoError as exc:
            raise KeyUnavailable(str(exc)) from exc

    def describe(self) -> str:
        return f"libcrypto ({_libcrypto.version()})"


class _GmsslSm2Key:
    """Raw-key SM2 through gmssl_pyx (GmSSL 3 C library)."""

    __slots__ = ("_d", "_pub")

    def __init__(self, pub: bytes, d: bytes | None) -> None:
        self._pub = pub
        self._d = d

    @property
    def is_private(self) -> bool:
        return self._d is not None

    def _priv(self) -> bytes:
        if self._d is None:
            raise KeyUnavailable("not a private key")
        return self._d

    def spki_der(self) -> bytes:
        return _der.spki(
            int.from_bytes(self._pub[:32], "big"), int.from_bytes(self._pub[32:], "big")
        )

    def private_pem(self) -> bytes:
        d = int.from_bytes(self._priv(), "big")
        x = int.from_bytes(self._pub[:32], "big")
        y = int.from_bytes(self._pub[32:], "big")
        return pem_wrap(_der.pkcs8(d, x, y), "PRIVATE KEY")

    def sign(self, message: bytes, sm2_id: bytes = SM2_DEFAULT_ID) -> bytes:
        import gmssl_pyx

        sig: bytes = gmssl_pyx.sm2_sign(self._priv(), self._pub, message, sm2_id)
        return sig

    def verify(
        self, message: bytes, signature: bytes, sm2_id: bytes = SM2_DEFAULT_ID
    ) -> bool:
        import gmssl_pyx

        try:
            return bool(gmssl_pyx.sm2_verify(self._pub, message, signature, sm2_id))
        except gmssl_pyx.GmsslInnerError:
            return False

    def encrypt(self, plaintext: bytes) -> bytes:
        import gmssl_pyx

        out: bytes = gmssl_pyx.sm2_encrypt(self._pub, plaintext)
        return out

    def decrypt(self, ciphertext: bytes) -> bytes:
        import gmssl_pyx

        try:
            out: bytes = gmssl_pyx.sm2_decrypt(self._priv(), ciphertext)
        except gmssl_pyx.GmsslInnerError as exc:
            raise CryptoError("SM2 decrypt failed") from exc
        return out


class GmsslPyxBackend:
    name = "gmssl-pyx"

    def __init__(self) -> None:
        import gmssl_pyx

        self._version = str(gmssl_pyx.__version__)

    def generate(self) -> Sm2Key:
        import gmssl_pyx

        pub, d = gmssl_pyx.sm2_key_generate()
        return _GmsslSm2Key(bytes(pub), bytes(d))

    def load_private_pem(self, pem: bytes) -> Sm2Key:
        try:
            d = _der.parse_pkcs8(pem_body(pem, "PRIVATE KEY"))
        except ValueError as exc:
            raise KeyUnavailable("not a PKCS#8 SM2 private key") from exc
        # GmSSL's binding exposes no point multiplication; derive d·G here.
        return _GmsslSm2Key(_public_from_private(d), d)

    def load_public_der(self, der: bytes) -> Sm2Key:
        try:
            return _GmsslSm2Key(_der.parse_spki(der), None)
        except ValueError as exc:
            raise KeyUnavailable("not an SM2 public key") from exc

    def describe(self) -> str:
        return f"gmssl-pyx {self._version}"


# The curve (GB/T 32918.5) for the one point multiplication the fallback needs.
_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
_GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0


def _public_from_private(d: bytes) -> bytes:
    """d·G on the SM2 curve. Not constant-time: it runs once per key load, on
    the operator's own machine, only in the fallback backend."""

    def add(
        p1: tuple[int, int] | None, p2: tuple[int, int] | None
    ) -> tuple[int, int] | None:
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        if p1[0] == p2[0] and (p1[1] + p2[1]) % _P == 0:
            return None
        if p1 == p2:
            lam = (3 * p1[0] * p1[0] + _A) * pow(2 * p1[1], -1, _P) % _P
        else:
            lam = (p2[1] - p1[1]) * pow(p2[0] - p1[0], -1, _P) % _P
        x3 = (lam * lam - p1[0] - p2[0]) % _P
        return x3, (lam * (p1[0] - x3) - p1[1]) % _P

    k = int.from_bytes(d, "big")
    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = (_GX, _GY)
    while k:
        if k & 1:
            result = add(result, addend)
        addend = add(addend, addend)
        k >>= 1
    if result is None:
        raise KeyUnavailable("invalid SM2 private key")
    return result[0].to_bytes(32, "big") + result[1].to_bytes(32, "big")


# --- self-test and selection -----------------------------------------------

# GB/T 32918.5-2017 (GM/T 0003.5-2012) Annex A (signature) and Annex C
# (encryption), recommended curve; the same numbers as shared/vectors.
_KAT_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
_KAT_X = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
_KAT_Y = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
_KAT_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
_KAT_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
_KAT_C1X = 0x04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73
_KAT_C1Y = 0xE858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0
_KAT_C3 = bytes.fromhex(
    "59983c18f809e262923c53aec295d30383b54e39d609d160afcb1908d0bd8766"
)
_KAT_C2 = bytes.fromhex("21886ca989ca9c7d58087307ca93092d651efa")
_KAT_SM3_ABC = bytes.fromhex(
    "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
)


def _expect(ok: bool, what: str) -> None:  # noqa: FBT001 - reads as an assertion
    if not ok:
        raise BackendUnavailable(what)


def self_test(b: Sm2Backend) -> None:
    """Known-answer and round-trip checks; raise BackendUnavailable on any failure."""
    try:
        pub = b.load_public_der(_der.spki(_KAT_X, _KAT_Y))
        kat_sig = _der.signature(_KAT_R, _KAT_S)
        _expect(pub.verify(b"message digest", kat_sig), "SM2 signature known answer")
        _expect(not pub.verify(b"message digesT", kat_sig), "SM2 rejects a bad message")
        priv = b.load_private_pem(
            pem_wrap(_der.pkcs8(_KAT_D, _KAT_X, _KAT_Y), "PRIVATE KEY")
        )
        ct = _der.sm2_cipher(_KAT_C1X, _KAT_C1Y, _KAT_C3, _KAT_C2)
        _expect(priv.decrypt(ct) == b"encryption standard", "SM2 decryption answer")
        fresh = b.generate()
        sig = fresh.sign(b"self-test")
        _expect(fresh.verify(b"self-test", sig), "SM2 sign/verify round trip")
        _expect(not fresh.verify(b"self-tesT", sig), "SM2 verify rejects a change")
        cek = b"0123456789abcdef"
        _expect(fresh.decrypt(fresh.encrypt(cek)) == cek, "SM2 encryption round trip")
        _expect(sm3(b"abc") == _KAT_SM3_ABC, "SM3 known answer")
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"{b.name}: self-test failed: {exc}") from exc
    except (CryptoError, _libcrypto.LibcryptoError, ValueError, OSError) as exc:
        raise BackendUnavailable(f"{b.name}: self-test failed ({exc})") from exc


_selected: Sm2Backend | None = None
_select_lock = threading.Lock()

BACKEND_NAMES = ("auto", "libcrypto", "gmssl-pyx")


def _make(name: str) -> Sm2Backend:
    if name == "libcrypto":
        return LibcryptoBackend()
    if name == "gmssl-pyx":
        try:
            return GmsslPyxBackend()
        except ImportError as exc:
            raise BackendUnavailable("gmssl-pyx: not installed") from exc
    raise BackendUnavailable(f"unknown SM2 backend {name!r}")


def select_backend(name: str = "auto") -> Sm2Backend:
    """Choose and self-test the SM2 backend for this process.

    ``auto`` takes libcrypto if its self-test passes, else gmssl-pyx; a named
    backend is used only if it passes. Nothing is signed before this succeeds.
    """
    global _selected
    with _select_lock:
        candidates = ["libcrypto", "gmssl-pyx"] if name == "auto" else [name]
        problems: list[str] = []
        for cand in candidates:
            try:
                b = _make(cand)
                self_test(b)
            except BackendUnavailable as exc:
                problems.append(str(exc))
                continue
            except _libcrypto.LibcryptoError as exc:
                problems.append(f"{cand}: {exc}")
                continue
            _selected = b
            return b
        raise BackendUnavailable(
            "no SM2 implementation passed its self-test: " + "; ".join(problems)
        )


def backend() -> Sm2Backend:
    """The selected backend (selecting ``auto`` on first use)."""
    b = _selected
    if b is None:
        return select_backend("auto")
    return b
