"""SM2/SM3/SM4 recipes: keys, envelopes and receipts.

Everything outside ``crypto/`` uses these names only; the primitives
(``_primitives``, ``_libcrypto``, ``_der``) stay private.
"""

from __future__ import annotations

from crypto._primitives import (
    BACKEND_NAMES,
    SM2_DEFAULT_ID,
    Sm3,
    backend,
    select_backend,
    sm3,
)
from crypto.envelope import (
    COMPRESSIONS,
    EnvelopeHeader,
    Opened,
    canonical_json,
    canonical_plain,
    open_bytes,
    open_stream,
    seal_bytes,
    seal_stream,
    split,
)
from crypto.keys import (
    KeyRing,
    PeerTable,
    PrivateKey,
    PublicKey,
    key_id,
    keygen,
    load_private_key,
    load_public_key,
)
from crypto.receipt import (
    Receipt,
    RecordOutcome,
    check_receipt,
    make_receipt,
    parse_receipt,
)

__all__ = [
    "BACKEND_NAMES",
    "COMPRESSIONS",
    "SM2_DEFAULT_ID",
    "EnvelopeHeader",
    "KeyRing",
    "Opened",
    "PeerTable",
    "PrivateKey",
    "PublicKey",
    "Receipt",
    "RecordOutcome",
    "Sm3",
    "backend",
    "canonical_json",
    "canonical_plain",
    "check_receipt",
    "key_id",
    "keygen",
    "load_private_key",
    "load_public_key",
    "make_receipt",
    "open_bytes",
    "open_stream",
    "parse_receipt",
    "seal_bytes",
    "seal_stream",
    "select_backend",
    "sm3",
    "split",
]
