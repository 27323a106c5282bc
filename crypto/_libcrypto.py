"""SM2 through OpenSSL libcrypto (EVP), via ctypes. The only ctypes user.

Why ctypes: `cryptography` has SM3 and SM4 but no SM2, and the system
libcrypto (OpenSSL 3) has SM2 in C at ``openssl speed`` rates. Every call
goes through EVP with the SM2 distinguishing ID set explicitly *after* the
init call: OpenSSL 3.0's own default ID is empty, and an ID passed as an init
parameter is ignored silently there (see shared/vectors/README.md).

ctypes releases the GIL around each foreign call, so signing can run in
worker threads in parallel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass
from typing import Any

_c_void_p = ctypes.c_void_p
_c_char_p = ctypes.c_char_p
_c_size_t = ctypes.c_size_t
_c_int = ctypes.c_int
_c_long = ctypes.c_long


class LibcryptoError(Exception):
    """libcrypto is missing, lacks SM2, or an operation failed."""


def _bind(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


class _Lib:
    """The libcrypto symbols we use, with their C signatures."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        b = _bind
        p = _c_void_p
        self.path = path
        self.version = b(lib, "OpenSSL_version", _c_char_p, [_c_int])
        self.err_get = b(lib, "ERR_get_error", ctypes.c_ulong, [])
        self.err_clear = b(lib, "ERR_clear_error", None, [])
        self.bio_new_mem_buf = b(lib, "BIO_new_mem_buf", p, [_c_char_p, _c_int])
        self.bio_new = b(lib, "BIO_new", p, [p])
        self.bio_s_mem = b(lib, "BIO_s_mem", p, [])
        self.bio_ctrl = b(lib, "BIO_ctrl", _c_long, [p, _c_int, _c_long, p])
        self.bio_free = b(lib, "BIO_free", _c_int, [p])
        self.pem_read_privkey = b(lib, "PEM_read_bio_PrivateKey", p, [p, p, p, p])
        self.pem_read_pubkey = b(lib, "PEM_read_bio_PUBKEY", p, [p, p, p, p])
        self.pem_write_pkcs8 = b(
            lib,
            "PEM_write_bio_PKCS8PrivateKey",
            _c_int,
            [p, p, p, p, _c_int, p, p],
        )
        self.i2d_pubkey = b(lib, "i2d_PUBKEY", _c_int, [p, ctypes.POINTER(p)])
        self.pkey_free = b(lib, "EVP_PKEY_free", None, [p])
        self.pkey_is_a = b(lib, "EVP_PKEY_is_a", _c_int, [p, _c_char_p])
        self.pkey_ctx_new = b(lib, "EVP_PKEY_CTX_new", p, [p, p])
        self.pkey_ctx_new_from_name = b(
            lib, "EVP_PKEY_CTX_new_from_name", p, [p, _c_char_p, _c_char_p]
        )
        self.pkey_ctx_free = b(lib, "EVP_PKEY_CTX_free", None, [p])
        self.pkey_ctx_set1_id = b(lib, "EVP_PKEY_CTX_set1_id", _c_int, [p, p, _c_int])
        self.keygen_init = b(lib, "EVP_PKEY_keygen_init", _c_int, [p])
        self.generate = b(lib, "EVP_PKEY_generate", _c_int, [p, ctypes.POINTER(p)])
        self.encrypt_init = b(lib, "EVP_PKEY_encrypt_init", _c_int, [p])
        self.encrypt = b(
            lib,
            "EVP_PKEY_encrypt",
            _c_int,
            [p, p, ctypes.POINTER(_c_size_t), _c_char_p, _c_size_t],
        )
        self.decrypt_init = b(lib, "EVP_PKEY_decrypt_init", _c_int, [p])
        self.decrypt = b(
            lib,
            "EVP_PKEY_decrypt",
            _c_int,
            [p, p, ctypes.POINTER(_c_size_t), _c_char_p, _c_size_t],
        )
        self.md_ctx_new = b(lib, "EVP_MD_CTX_new", p, [])
        self.md_ctx_free = b(lib, "EVP_MD_CTX_free", None, [p])
        self.sm3 = b(lib, "EVP_sm3", p, [])
        self.sign_init = b(
            lib, "EVP_DigestSignInit", _c_int, [p, ctypes.POINTER(p), p, p, p]
        )
        self.sign = b(
            lib,
            "EVP_DigestSign",
            _c_int,
            [p, p, ctypes.POINTER(_c_size_t), _c_char_p, _c_size_t],
        )
        self.verify_init = b(
            lib, "EVP_DigestVerifyInit", _c_int, [p, ctypes.POINTER(p), p, p, p]
        )
        self.verify = b(
            lib,
            "EVP_DigestVerify",
            _c_int,
            [p, _c_char_p, _c_size_t, _c_char_p, _c_size_t],
        )


_lock = threading.Lock()
_lib: _Lib | None = None

_BIO_CTRL_INFO = 3  # BIO_get_mem_data is a macro over BIO_ctrl(BIO_CTRL_INFO)


def load() -> _Lib:
    """Load libcrypto once; raise LibcryptoError if it is absent or too old."""
    global _lib
    with _lock:
        if _lib is None:
            path = ctypes.util.find_library("crypto")
            if path is None:
                raise LibcryptoError("libcrypto not found")
            try:
                _lib = _Lib(path)
            except (OSError, AttributeError) as exc:
                raise LibcryptoError(
                    f"{path}: not a usable OpenSSL 3 libcrypto"
                ) from exc
        return _lib


def _drain_errors(lib: _Lib) -> None:
    # Leave no stale entries on OpenSSL's per-thread error queue.
    lib.err_clear()


@dataclass(eq=False)
class EvpKey:
    """An owned EVP_PKEY handle; freed when collected."""

    handle: int
    private: bool

    def __del__(self) -> None:
        lib = _lib
        if lib is not None and self.handle:
            lib.pkey_free(self.handle)
            self.handle = 0


def _read_pem(pem: bytes, *, private: bool) -> EvpKey:
    lib = load()
    bio = lib.bio_new_mem_buf(pem, len(pem))
    if not bio:
        raise LibcryptoError("out of memory")
    try:
        reader = lib.pem_read_privkey if private else lib.pem_read_pubkey
        handle = reader(bio, None, None, None)
    finally:
        lib.bio_free(bio)
    if not handle:
        _drain_errors(lib)
        raise LibcryptoError("not a readable PEM key")
    key = EvpKey(handle, private)
    if lib.pkey_is_a(handle, b"SM2") != 1:
        raise LibcryptoError("not an SM2 key")
    return key


def load_private_pem(pem: bytes) -> EvpKey:
    return _read_pem(pem, private=True)


def load_public_pem(pem: bytes) -> EvpKey:
    return _read_pem(pem, private=False)


def public_der(key: EvpKey) -> bytes:
    """SubjectPublicKeyInfo DER of a key (public or private)."""
    lib = load()
    n = lib.i2d_pubkey(key.handle, None)
    if n <= 0:
        _drain_errors(lib)
        raise LibcryptoError("cannot encode public key")
    buf = ctypes.create_string_buffer(n)
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    if lib.i2d_pubkey(key.handle, ctypes.byref(ptr)) != n:
        _drain_errors(lib)
        raise LibcryptoError("cannot encode public key")
    return buf.raw


def private_pem(key: EvpKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key."""
    lib = load()
    bio = lib.bio_new(lib.bio_s_mem())
    if not bio:
        raise LibcryptoError("out of memory")
    try:
        if lib.pem_write_pkcs8(bio, key.handle, None, None, 0, None, None) != 1:
            _drain_errors(lib)
            raise LibcryptoError("cannot encode private key")
        ptr = ctypes.c_void_p()
        n = lib.bio_ctrl(bio, _BIO_CTRL_INFO, 0, ctypes.byref(ptr))
        return ctypes.string_at(ptr.value, n) if ptr.value else b""
    finally:
        lib.bio_free(bio)


def generate() -> EvpKey:
    lib = load()
    ctx = lib.pkey_ctx_new_from_name(None, b"SM2", None)
    if not ctx:
        _drain_errors(lib)
        raise LibcryptoError("libcrypto has no SM2")
    try:
        out = ctypes.c_void_p()
        if lib.keygen_init(ctx) != 1 or lib.generate(ctx, ctypes.byref(out)) != 1:
            _drain_errors(lib)
            raise LibcryptoError("SM2 key generation failed")
        return EvpKey(out.value or 0, private=True)
    finally:
        lib.pkey_ctx_free(ctx)


def sign(key: EvpKey, message: bytes, sm2_id: bytes) -> bytes:
    """SM2 signature (DER r,s) over SM3(Z ‖ message) with the given ID."""
    lib = load()
    md = lib.md_ctx_new()
    if not md:
        raise LibcryptoError("out of memory")
    try:
        pctx = ctypes.c_void_p()
        if lib.sign_init(md, ctypes.byref(pctx), lib.sm3(), None, key.handle) != 1:
            _drain_errors(lib)
            raise LibcryptoError("sign init failed")
        if lib.pkey_ctx_set1_id(pctx, sm2_id, len(sm2_id)) != 1:
            _drain_errors(lib)
            raise LibcryptoError("cannot set SM2 ID")
        size = _c_size_t(80)  # DER of two 256-bit integers is at most 72 bytes
        buf = ctypes.create_string_buffer(size.value)
        if lib.sign(md, buf, ctypes.byref(size), message, len(message)) != 1:
            _drain_errors(lib)
            raise LibcryptoError("sign failed")
        return buf.raw[: size.value]
    finally:
        lib.md_ctx_free(md)


def verify(key: EvpKey, message: bytes, signature: bytes, sm2_id: bytes) -> bool:
    lib = load()
    md = lib.md_ctx_new()
    if not md:
        raise LibcryptoError("out of memory")
    try:
        pctx = ctypes.c_void_p()
        if lib.verify_init(md, ctypes.byref(pctx), lib.sm3(), None, key.handle) != 1:
            _drain_errors(lib)
            raise LibcryptoError("verify init failed")
        if lib.pkey_ctx_set1_id(pctx, sm2_id, len(sm2_id)) != 1:
            _drain_errors(lib)
            raise LibcryptoError("cannot set SM2 ID")
        rc = lib.verify(md, signature, len(signature), message, len(message))
        if rc != 1:
            _drain_errors(lib)
        return bool(rc == 1)
    finally:
        lib.md_ctx_free(md)


def _pkey_crypt(key: EvpKey, data: bytes, *, encrypting: bool) -> bytes:
    lib = load()
    ctx = lib.pkey_ctx_new(key.handle, None)
    if not ctx:
        raise LibcryptoError("out of memory")
    try:
        init, op = (
            (lib.encrypt_init, lib.encrypt)
            if encrypting
            else (lib.decrypt_init, lib.decrypt)
        )
        if init(ctx) != 1:
            _drain_errors(lib)
            raise LibcryptoError("SM2 init failed")
        size = _c_size_t(0)
        if op(ctx, None, ctypes.byref(size), data, len(data)) != 1:
            _drain_errors(lib)
            raise LibcryptoError("SM2 operation failed")
        buf = ctypes.create_string_buffer(size.value)
        if op(ctx, buf, ctypes.byref(size), data, len(data)) != 1:
            _drain_errors(lib)
            raise LibcryptoError("SM2 operation failed")
        return buf.raw[: size.value]
    finally:
        lib.pkey_ctx_free(ctx)


def encrypt(key: EvpKey, plaintext: bytes) -> bytes:
    """SM2 public-key encryption; GM/T 0009 DER SM2Cipher (x, y, C3, C2)."""
    return _pkey_crypt(key, plaintext, encrypting=True)


def decrypt(key: EvpKey, ciphertext: bytes) -> bytes:
    return _pkey_crypt(key, ciphertext, encrypting=False)


def version() -> str:
    raw = load().version(0)
    return raw.decode("ascii", "replace") if raw else "unknown"
