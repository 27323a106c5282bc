"""Origin proofs: which node first signed a record, checkable by anyone.

An origin proof is the signed part of the envelope in which a record first
left its gateway: the header bytes (with the manifest of record digests),
the SM3 of the ciphertext, the SM2 signature, and the sender's public key.
It verifies without the ciphertext and without any private key::

    key id (SM3 of the SPKI, first 16 bytes) == header "sender"
    SM2 verify (ID 1234567812345678) of header ‖ "\\nciphertext-sm3=" ‖ hex ‖ "\\n"
    SM3 of the record's canonical bytes is in the header's manifest

A hub that forwards records onward carries these proofs in the onward
envelope (gateway/provenance.py, docs/envelope.md "Provenance across hubs").
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crypto._primitives import Sm3
from crypto.envelope import EnvelopeHeader, _decode_header, parse, signed_bytes
from crypto.keys import PublicKey
from gateway.errors import EnvelopeInvalid, KeyUnavailable

__all__ = ["OriginProof", "proof_of", "verify_origin"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_PROOF_HEADER = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OriginProof:
    header_raw: bytes
    ciphertext_sm3: str
    signature: bytes
    sender_spki: bytes
    # SM3 of what was signed and the signature: names the proof. Computed
    # once: the header carries the whole manifest (64 bytes per record), so
    # hashing it per record made storing an envelope quadratic.
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        h = Sm3()
        h.update(signed_bytes(self.header_raw, bytes.fromhex(self.ciphertext_sm3)))
        h.update(self.signature)
        object.__setattr__(self, "id", h.digest().hex())

    def to_json(self) -> dict[str, str]:
        return {
            "header": self.header_raw.decode("utf-8"),
            "ciphertext_sm3": self.ciphertext_sm3,
            "signature": base64.b64encode(self.signature).decode(),
            "sender_key": base64.b64encode(self.sender_spki).decode(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> OriginProof:
        try:
            if not isinstance(obj, dict) or set(obj) != {
                "header",
                "ciphertext_sm3",
                "signature",
                "sender_key",
            }:
                raise EnvelopeInvalid("origin proof keys")
            header, ct = obj["header"], obj["ciphertext_sm3"]
            if not isinstance(header, str) or len(header) > MAX_PROOF_HEADER:
                raise EnvelopeInvalid("origin proof header")
            if not (isinstance(ct, str) and _HEX64.fullmatch(ct)):
                raise EnvelopeInvalid("origin proof ciphertext digest")
            return cls(
                header_raw=header.encode("utf-8"),
                ciphertext_sm3=ct,
                signature=base64.b64decode(obj["signature"], validate=True),
                sender_spki=base64.b64decode(obj["sender_key"], validate=True),
            )
        except (binascii.Error, TypeError, ValueError) as exc:
            if isinstance(exc, EnvelopeInvalid):
                raise
            raise EnvelopeInvalid("origin proof encoding") from exc


def proof_of(envelope: bytes, sender: PublicKey) -> OriginProof:
    """The origin proof of an envelope we received (and have verified)."""
    p = parse(io.BytesIO(envelope), max_size=len(envelope))
    h = Sm3()
    h.update(memoryview(envelope)[p.ct_offset : p.ct_offset + p.ct_len])
    h.update(p.tag)
    return OriginProof(
        header_raw=p.header_raw,
        ciphertext_sm3=h.digest().hex(),
        signature=p.signature,
        sender_spki=sender.spki_der(),
    )


def verify_origin(proof: OriginProof, record_sm3s: Iterable[str]) -> EnvelopeHeader:
    """Check the proof and that it covers every given record digest.

    Returns the origin envelope's header (``sender`` is the origin's key id,
    ``id`` its envelope id); raises ``EnvelopeInvalid`` otherwise.
    """
    header = _decode_header(proof.header_raw)
    try:
        key = PublicKey.from_der(proof.sender_spki)
    except KeyUnavailable as exc:
        raise EnvelopeInvalid("origin proof key is not an SM2 key") from exc
    if key.id != header.sender:
        raise EnvelopeInvalid("origin proof key is not the header's sender")
    signed = signed_bytes(proof.header_raw, bytes.fromhex(proof.ciphertext_sm3))
    if not key.verify(signed, proof.signature):
        raise EnvelopeInvalid("origin proof signature does not verify")
    manifest = set(header.manifest)
    if any(d not in manifest for d in record_sm3s):
        raise EnvelopeInvalid("record not in the origin manifest")
    return header
