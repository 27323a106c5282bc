"""Receipt v1: the receiver's signed statement of what it got.

Wire form (UTF-8 JSON, ``application/vnd.smenv.receipt+json``)::

    {"body": "<canonical JSON text>", "signature": "<base64 DER SM2 signature>"}

The signature (SM2, ID 1234567812345678, over SM3) covers the UTF-8 bytes of
the ``body`` string exactly as carried, so nobody has to re-canonicalise
anything to check it. The body::

    {"v": 1, "kind": "receipt", "envelope_id": ..., "envelope_sm3": <hex of the
     SM3 of the exact envelope bytes received>, "receiver": <key id>,
     "received_at": <UTC time>, "status": "accepted" | "rejected",
     "reason": <code or "">,
     "records": [{"sm3": <manifest digest>, "outcome": "accepted"|"rejected",
                  "reason": <code or "">}, ...]}

A sender counts records as delivered only after ``check_receipt`` passes:
signature by a key it expects, same envelope id, same envelope digest, and
outcomes that echo exactly the manifest it sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from crypto.envelope import canonical_plain, format_time
from crypto.keys import PeerTable, PrivateKey, PublicKey
from gateway.errors import ReceiptInvalid

__all__ = ["Receipt", "RecordOutcome", "check_receipt", "make_receipt", "parse_receipt"]

MAX_RECEIPT: Final = 64 * 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_CODE = re.compile(r"[A-Z0-9_]{0,64}")
Outcome = Literal["accepted", "rejected"]


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    sm3: str
    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    envelope_id: str
    envelope_sm3: str
    receiver: str
    received_at: str
    status: Outcome
    reason: str
    records: tuple[RecordOutcome, ...]
    raw: bytes

    @property
    def accepted(self) -> list[str]:
        return [r.sm3 for r in self.records if r.outcome == "accepted"]


def make_receipt(
    key: PrivateKey,
    *,
    envelope_id: str,
    envelope_sm3: str,
    received_at: datetime,
    records: Sequence[RecordOutcome] = (),
    status: Outcome = "accepted",
    reason: str = "",
) -> bytes:
    """Build and sign a receipt; returns its wire bytes."""
    if not _CODE.fullmatch(reason) or not all(
        _CODE.fullmatch(code) for code in {r.reason for r in records}
    ):
        raise ValueError("reason codes are UPPER_SNAKE ASCII")
    body = canonical_plain(
        {
            "v": 1,
            "kind": "receipt",
            "envelope_id": envelope_id,
            "envelope_sm3": envelope_sm3,
            "receiver": key.id,
            "received_at": format_time(received_at),
            "status": status,
            "reason": reason,
            "records": [
                {"sm3": r.sm3, "outcome": r.outcome, "reason": r.reason}
                for r in records
            ],
        }
    )
    sig = key.sign(body)
    return canonical_plain(
        {"body": body.decode("utf-8"), "signature": base64.b64encode(sig).decode()}
    )


def _bad(detail: str) -> ReceiptInvalid:
    return ReceiptInvalid(detail)


def _record(obj: Any) -> RecordOutcome:
    if (
        not isinstance(obj, dict)
        or set(obj) != {"sm3", "outcome", "reason"}
        or not (isinstance(obj["sm3"], str) and _HEX64.fullmatch(obj["sm3"]))
        or obj["outcome"] not in ("accepted", "rejected")
        or not (isinstance(obj["reason"], str) and _CODE.fullmatch(obj["reason"]))
    ):
        raise _bad("record outcome malformed")
    return RecordOutcome(obj["sm3"], obj["outcome"], obj["reason"])


def parse_receipt(raw: bytes) -> tuple[Receipt, bytes, bytes]:
    """Structure only: (receipt, signed body bytes, signature). Verifies nothing."""
    if len(raw) > MAX_RECEIPT:
        raise _bad("receipt too large")
    try:
        outer = orjson.loads(raw)
        body_text = outer["body"]
        sig = base64.b64decode(outer["signature"], validate=True)
        if set(outer) != {"body", "signature"} or not isinstance(body_text, str):
            raise _bad("receipt wrapper malformed")
        body_bytes = body_text.encode("utf-8")
        body = orjson.loads(body_bytes)
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:
        raise _bad("receipt is not JSON of the v1 form") from exc
    keys = {
        "v",
        "kind",
        "envelope_id",
        "envelope_sm3",
        "receiver",
        "received_at",
        "status",
        "reason",
        "records",
    }
    if not isinstance(body, dict) or set(body) != keys:
        raise _bad("receipt body keys are not the v1 set")
    if type(body["v"]) is not int or body["v"] != 1 or body["kind"] != "receipt":
        raise _bad("receipt version or kind")
    # A float (which orjson prints its own way) fails the type checks below.
    if canonical_plain(body) != body_bytes:
        raise _bad("receipt body not canonical")
    ok = (
        isinstance(body["envelope_id"], str)
        and isinstance(body["envelope_sm3"], str)
        and _HEX64.fullmatch(body["envelope_sm3"]) is not None
        and isinstance(body["receiver"], str)
        and _KEY_ID.fullmatch(body["receiver"]) is not None
        and isinstance(body["received_at"], str)
        and body["status"] in ("accepted", "rejected")
        and isinstance(body["reason"], str)
        and _CODE.fullmatch(body["reason"]) is not None
        and isinstance(body["records"], list)
    )
    if not ok:
        raise _bad("receipt body fields malformed")
    receipt = Receipt(
        envelope_id=body["envelope_id"],
        envelope_sm3=body["envelope_sm3"],
        receiver=body["receiver"],
        received_at=body["received_at"],
        status=body["status"],
        reason=body["reason"],
        records=tuple(_record(r) for r in body["records"]),
        raw=raw,
    )
    return receipt, body_bytes, sig


def check_receipt(
    raw: bytes,
    *,
    receivers: PeerTable | Sequence[PublicKey],
    envelope_id: str,
    envelope_sm3: str,
    manifest: Sequence[str],
) -> Receipt:
    """Verify a receipt against what we sent; raise ReceiptInvalid otherwise.

    ``manifest`` is the list of record digests in the envelope we sent; the
    receipt must give one outcome per record, in the same order.
    """
    receipt, body, sig = parse_receipt(raw)
    table = receivers if isinstance(receivers, PeerTable) else PeerTable(receivers)
    signer = table.get(receipt.receiver)
    if signer is None:
        raise _bad(f"receipt signed by unexpected key {receipt.receiver}")
    if not signer.verify(body, sig):
        raise _bad("receipt signature does not verify")
    if receipt.envelope_id != envelope_id:
        raise _bad("receipt names another envelope")
    if receipt.envelope_sm3 != envelope_sm3:
        raise _bad("receipt digest differs from the envelope we sent")
    if receipt.status == "accepted" and [r.sm3 for r in receipt.records] != list(
        manifest
    ):
        raise _bad("receipt records do not echo the manifest")
    return receipt
