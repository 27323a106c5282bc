"""Receipt v1: made by the receiver, checked by the sender before 'delivered'."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

import crypto
from gateway.errors import ReceiptInvalid
from tests.conftest import make_key

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
MANIFEST = [crypto.sm3(b"r%d" % i).hex() for i in range(3)]


@pytest.fixture
def hub() -> crypto.PrivateKey:
    return make_key()


def _receipt(hub: crypto.PrivateKey, **kw: object) -> bytes:
    args: dict[str, object] = {
        "envelope_id": "env-1",
        "envelope_sm3": crypto.sm3(b"envelope bytes").hex(),
        "received_at": NOW,
        "records": [crypto.RecordOutcome(d, "accepted") for d in MANIFEST],
    }
    args.update(kw)
    return crypto.make_receipt(hub, **args)  # type: ignore[arg-type]


def _check(raw: bytes, hub: crypto.PrivateKey, **kw: object) -> crypto.Receipt:
    args: dict[str, object] = {
        "receivers": [hub.public],
        "envelope_id": "env-1",
        "envelope_sm3": crypto.sm3(b"envelope bytes").hex(),
        "manifest": MANIFEST,
    }
    args.update(kw)
    return crypto.check_receipt(raw, **args)  # type: ignore[arg-type]


def test_receipt_round_trip(hub: crypto.PrivateKey) -> None:
    r = _check(_receipt(hub), hub)
    assert r.status == "accepted"
    assert r.accepted == MANIFEST
    assert r.receiver == hub.id


def test_per_record_rejection_is_carried(hub: crypto.PrivateKey) -> None:
    recs = [
        crypto.RecordOutcome(MANIFEST[0], "accepted"),
        crypto.RecordOutcome(MANIFEST[1], "rejected", "E_FIELD_REQUIRED"),
        crypto.RecordOutcome(MANIFEST[2], "accepted"),
    ]
    r = _check(_receipt(hub, records=recs), hub)
    assert r.records[1].reason == "E_FIELD_REQUIRED"
    assert r.accepted == [MANIFEST[0], MANIFEST[2]]


def test_receipt_from_another_key_is_refused(hub: crypto.PrivateKey) -> None:
    with pytest.raises(ReceiptInvalid, match="unexpected key"):
        _check(_receipt(make_key()), hub)


def test_receipt_with_forged_receiver_id_is_refused(hub: crypto.PrivateKey) -> None:
    mallory = make_key()
    raw = _receipt(mallory).replace(mallory.id.encode(), hub.id.encode())
    with pytest.raises(ReceiptInvalid, match="signature"):
        _check(raw, hub)


def test_receipt_for_other_bytes_or_envelope_is_refused(hub: crypto.PrivateKey) -> None:
    with pytest.raises(ReceiptInvalid, match="digest"):
        _check(_receipt(hub), hub, envelope_sm3=crypto.sm3(b"other").hex())
    with pytest.raises(ReceiptInvalid, match="another envelope"):
        _check(_receipt(hub), hub, envelope_id="env-2")
    with pytest.raises(ReceiptInvalid, match="manifest"):
        _check(_receipt(hub), hub, manifest=MANIFEST[:2])


def test_edited_body_is_refused(hub: crypto.PrivateKey) -> None:
    outer = json.loads(_receipt(hub))
    outer["body"] = outer["body"].replace('"accepted"', '"rejected"', 1)
    raw = json.dumps(outer).encode()
    with pytest.raises(ReceiptInvalid):
        _check(raw, hub)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"body": 1, "signature": ""}',
        b'{"body": "{}", "signature": "!!"}',
        b'{"body": "{}", "signature": "AA==", "x": 1}',
        b"\xff\xfe",
    ],
)
def test_malformed_receipts_only_raise_receipt_invalid(
    hub: crypto.PrivateKey, raw: bytes
) -> None:
    with pytest.raises(ReceiptInvalid):
        _check(raw, hub)


def test_receipt_signature_checks_with_the_openssl_recipe(
    openssl: str, hub: crypto.PrivateKey, tmp_path
) -> None:
    import subprocess

    outer = json.loads(_receipt(hub))
    (tmp_path / "body.bin").write_bytes(outer["body"].encode())
    (tmp_path / "sig.der").write_bytes(base64.b64decode(outer["signature"]))
    (tmp_path / "hub.pub.pem").write_bytes(hub.public.pem())
    res = subprocess.run(
        [
            openssl,
            "dgst",
            "-sm3",
            "-verify",
            "hub.pub.pem",
            "-sigopt",
            "distid:1234567812345678",
            "-signature",
            "sig.der",
            "body.bin",
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert res.returncode == 0
    assert b"Verified OK" in res.stdout
