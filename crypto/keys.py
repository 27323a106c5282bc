"""SM2 key files, key ids, the node's key ring and the table of known peers.

- A key id is the first 16 bytes of SM3(SubjectPublicKeyInfo DER), in hex: it
  names a key everywhere (envelopes, receipts, logs, allow-lists) and anyone
  can recompute it with ``openssl pkey -pubin -outform DER | openssl dgst -sm3``.
- Private keys are PKCS#8 PEM, refused when group or others may read them.
- ``KeyRing`` is rotation without downtime (cryptography's MultiFernet idea):
  the first usable key seals and signs, every key opens.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crypto._primitives import Sm2Key, backend, pem_body, pem_wrap, sm3
from gateway.errors import KeyUnavailable

__all__ = [
    "KeyRing",
    "PeerTable",
    "PrivateKey",
    "PublicKey",
    "key_id",
    "keygen",
    "load_private_key",
    "load_public_key",
]

KEY_ID_BYTES = 16


def key_id(spki_der: bytes) -> str:
    return sm3(spki_der)[:KEY_ID_BYTES].hex()


@dataclass(frozen=True, eq=False)
class PublicKey:
    """A peer's SM2 public key."""

    key: Sm2Key
    id: str
    name: str = ""
    not_after: datetime | None = None

    @classmethod
    def from_der(cls, der: bytes, *, name: str = "") -> PublicKey:
        try:
            k = backend().load_public_der(der)
        except KeyUnavailable as exc:
            what = name or "public key"
            raise KeyUnavailable(f"{what}: not an SM2 public key") from exc
        return cls(key=k, id=key_id(k.spki_der()), name=name)

    def spki_der(self) -> bytes:
        return self.key.spki_der()

    def pem(self) -> bytes:
        return pem_wrap(self.spki_der(), "PUBLIC KEY")

    def verify(self, message: bytes, signature: bytes) -> bool:
        return self.key.verify(message, signature)

    def wrap(self, content_key: bytes) -> bytes:
        """SM2-encrypt a content key to this recipient (GM/T 0009 DER)."""
        return self.key.encrypt(content_key)


@dataclass(frozen=True, eq=False)
class PrivateKey:
    """One of our own SM2 key pairs."""

    key: Sm2Key
    id: str
    path: str = ""
    not_after: datetime | None = None

    @property
    def public(self) -> PublicKey:
        return PublicKey(key=self.key, id=self.id, not_after=self.not_after)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def unwrap(self, wrapped: bytes) -> bytes:
        return self.key.decrypt(wrapped)

    def usable_at(self, now: datetime) -> bool:
        return self.not_after is None or now < self.not_after


def _read_key_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except OSError as exc:
        raise KeyUnavailable(f"{path}: cannot read key file ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyUnavailable(f"{path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyUnavailable(f"{path}: cannot read key file ({exc.strerror})") from exc


def load_private_key(
    path: str | os.PathLike[str], *, not_after: datetime | None = None
) -> PrivateKey:
    """Load a PKCS#8 PEM SM2 private key, refusing group/other-readable files."""
    p = Path(path)
    data = _read_key_file(p)
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise KeyUnavailable(
            f"{p}: private key file is accessible by group or others "
            f"(mode {mode:04o}); run 'chmod 600 {p}'"
        )
    try:
        k = backend().load_private_pem(data)
    except KeyUnavailable as exc:
        raise KeyUnavailable(f"{p}: not an SM2 private key in PEM ({exc})") from exc
    if not k.is_private:
        raise KeyUnavailable(f"{p}: not a private key")
    return PrivateKey(key=k, id=key_id(k.spki_der()), path=str(p), not_after=not_after)


def load_public_key(path: str | os.PathLike[str], *, name: str = "") -> PublicKey:
    """Load an SPKI PEM (or DER) SM2 public key."""
    p = Path(path)
    data = _read_key_file(p)
    try:
        der = pem_body(data, "PUBLIC KEY") if b"-----BEGIN" in data else data
    except ValueError as exc:
        raise KeyUnavailable(f"{p}: not a PEM public key") from exc
    try:
        return PublicKey.from_der(der, name=name or p.name)
    except KeyUnavailable as exc:
        raise KeyUnavailable(f"{p}: not an SM2 public key") from exc


def keygen(out_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path, str]:
    """Write ``NAME.key.pem`` (PKCS#8, 0600) and ``NAME.pub.pem``; never overwrite."""
    if not name or "/" in name or name.startswith("."):
        raise KeyUnavailable(f"{name!r}: not a usable key name")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    key_path = d / f"{name}.key.pem"
    pub_path = d / f"{name}.pub.pem"
    for p in (key_path, pub_path):
        if p.exists():
            raise KeyUnavailable(f"{p}: already exists; refusing to overwrite a key")
    k = backend().generate()
    # O_EXCL with mode 0600 from the start: the key is never briefly world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(k.private_pem())
        f.flush()
        os.fsync(f.fileno())
    pub_path.write_bytes(pem_wrap(k.spki_der(), "PUBLIC KEY"))
    return key_path, pub_path, key_id(k.spki_der())


@dataclass
class KeyRing:
    """Our own keys: the first usable one seals and signs; all of them open."""

    keys: list[PrivateKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyUnavailable("key ring is empty")
        self._by_id = {k.id: k for k in self.keys}

    @classmethod
    def load(
        cls, entries: Iterable[tuple[str | os.PathLike[str], datetime | None]]
    ) -> KeyRing:
        return cls([load_private_key(p, not_after=na) for p, na in entries])

    def current(self, now: datetime) -> PrivateKey:
        for k in self.keys:
            if k.usable_at(now):
                return k
        raise KeyUnavailable("every key in the key ring has expired")

    def get(self, kid: str) -> PrivateKey | None:
        return self._by_id.get(kid)

    def __iter__(self) -> Iterator[PrivateKey]:
        return iter(self.keys)

    @property
    def ids(self) -> list[str]:
        return [k.id for k in self.keys]


class PeerTable:
    """Known peers' public keys by key id (sender allow-list, receipt signers)."""

    def __init__(self, keys: Sequence[PublicKey] = ()) -> None:
        self._by_id: dict[str, PublicKey] = {}
        for k in keys:
            self.add(k)

    def add(self, key: PublicKey) -> None:
        self._by_id[key.id] = key

    def get(self, kid: str) -> PublicKey | None:
        return self._by_id.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._by_id.values())
