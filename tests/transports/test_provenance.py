"""Origin proofs: verify, survive the meta encoding, refuse tampering, fit the budget."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

import crypto
from crypto.origin import OriginProof, proof_of, verify_origin
from gateway.errors import EnvelopeInvalid
from gateway.provenance import (
    MAX_CHUNKS,
    PRUNE_SLACK_S,
    OriginStore,
    decode_meta,
    encode_meta,
    origin_meta,
    prune_before,
)
from tests.conftest import make_key
from tests.harness import Site, running
from tests.transports.helpers import one, verified


def sealed(
    sender: crypto.PrivateKey,
    to: crypto.PrivateKey,
    now: datetime,
    n: int = 3,
    tag: str = "r",
) -> tuple[bytes, list[str]]:
    lines = [f'{{"{tag}":{i}}}'.encode() for i in range(n)]
    manifest = [crypto.sm3(x).hex() for x in lines]
    env, _ = crypto.seal_bytes(
        b"\n".join(lines) + b"\n",
        sender,
        [to.public],
        now=now,
        manifest=manifest,
    )
    return env, manifest


def test_proof_verifies_and_names_the_origin(sender, recipient, now) -> None:
    env, manifest = sealed(sender, recipient, now)
    proof = proof_of(env, sender.public)
    header = verify_origin(proof, manifest[:2])
    assert header.sender == sender.id
    again = OriginProof.from_json(proof.to_json())
    assert again == proof
    assert again.id == proof.id


def test_tampered_proofs_are_refused(sender, recipient, now) -> None:
    env, manifest = sealed(sender, recipient, now)
    proof = proof_of(env, sender.public)
    other = make_key()
    cases = [
        OriginProof(
            proof.header_raw, "0" * 64, proof.signature, proof.sender_spki
        ),  # another ciphertext
        OriginProof(
            proof.header_raw,
            proof.ciphertext_sm3,
            proof.signature,
            other.public.spki_der(),
        ),  # someone else's key
        OriginProof(
            proof.header_raw.replace(b'"records":3', b'"records":4'),
            proof.ciphertext_sm3,
            proof.signature,
            proof.sender_spki,
        ),  # edited header
    ]
    for bad in cases:
        with pytest.raises(EnvelopeInvalid):
            verify_origin(bad, manifest)
    with pytest.raises(EnvelopeInvalid):
        verify_origin(proof, ["ab" * 32])  # a record it never signed


def test_meta_round_trip_and_index_ranges(sender, recipient, now) -> None:
    env1, _ = sealed(sender, recipient, now, tag="a")
    env2, _ = sealed(sender, recipient, now, tag="b")
    p1, p2 = proof_of(env1, sender.public), proof_of(env2, sender.public)
    meta = encode_meta([(p1, [0, 1, 2, 5]), (p2, [3, 4])])
    assert all(k.startswith("origin.") and len(v) <= 4096 for k, v in meta.items())
    back = decode_meta({"destination": "x", **meta}, records=6)
    assert back == [(p1, [0, 1, 2, 5]), (p2, [3, 4])]
    assert decode_meta({"destination": "x"}, records=6) == []
    with pytest.raises(EnvelopeInvalid):
        decode_meta(meta, records=5)  # an index past the manifest
    with pytest.raises(EnvelopeInvalid):
        decode_meta({"origin.0": "not base64!"}, records=6)


def test_batch_is_cut_where_the_proofs_stop_fitting(sender, recipient, now) -> None:
    # Each proof carries a 2000-record manifest (~130 kB of hex): a few fit.
    proofs = []
    for i in range(8):
        env, _ = sealed(sender, recipient, now, n=2000, tag=f"t{i}")
        proofs.append(proof_of(env, sender.public))
    digests = [f"{i:064x}" for i in range(8)]
    found = dict(zip(digests, proofs, strict=True))
    meta, n = origin_meta(digests, found)
    assert 1 <= n < 8
    assert len(meta) <= MAX_CHUNKS
    assert [i for _, idx in decode_meta(meta, records=n) for i in idx] == list(range(n))
    # Records without a proof (local sources) never cut a batch.
    assert origin_meta(["00" * 32] * 5, {}) == ({}, 5)


def test_store_keeps_the_first_proof_per_record(
    tmp_path: Path, sender, recipient, now
) -> None:
    env1, m1 = sealed(sender, recipient, now, tag="a")
    env2, _ = sealed(sender, recipient, now, tag="a")
    p1, p2 = proof_of(env1, sender.public), proof_of(env2, sender.public)
    store = OriginStore(tmp_path / "origins.db")
    try:
        store.put([(p1, m1)], sender=sender.id)
        store.put([(p2, m1)], sender=sender.id)
        got = store.lookup([*m1, "ff" * 32])
        assert set(got) == set(m1)
        assert all(p == p1 for p in got.values())
    finally:
        store.close()


DAY = 86400.0


def test_store_prunes_proofs_unused_for_the_retention(
    tmp_path: Path, sender, recipient, now
) -> None:
    env1, m1 = sealed(sender, recipient, now, tag="old")
    env2, m2 = sealed(sender, recipient, now, tag="new")
    env3, m3 = sealed(sender, recipient, now, tag="reused")
    p1, p2, p3 = (proof_of(e, sender.public) for e in (env1, env2, env3))
    t = time.time()
    store = OriginStore(tmp_path / "origins.db")
    try:
        store.put([(p1, m1), (p3, m3[:1])], sender=sender.id, now=t - 40 * DAY)
        store.put([(p2, m2)], sender=sender.id, now=t - 1 * DAY)
        # p3 came again recently (more of its records, in a later envelope):
        # that use counts, so it stays with all its records.
        store.put([(p3, m3[1:])], sender=sender.id, now=t - 2 * DAY)
        assert store.prune(before=t - 30 * DAY) == (1, len(m1))
        got = store.lookup([*m1, *m2, *m3])
        assert set(got) == {*m2, *m3}
        assert store.prune(before=t - 30 * DAY) == (0, 0)  # nothing left to do
        assert store.prune(before=t) == (2, len(m2) + len(m3))
        assert store.lookup([*m2, *m3]) == {}
    finally:
        store.close()


def test_prune_in_batches(tmp_path: Path, sender, recipient, now, monkeypatch) -> None:
    import gateway.provenance as prov

    monkeypatch.setattr(prov, "PRUNE_BATCH", 2)
    store = OriginStore(tmp_path / "origins.db")
    try:
        for i in range(5):
            env, m = sealed(sender, recipient, now, n=2, tag=f"b{i}")
            store.put([(proof_of(env, sender.public), m)], sender=sender.id, now=1.0)
        assert store.prune(before=2.0) == (5, 10)
    finally:
        store.close()


def test_the_cutoff_keeps_what_undelivered_records_need() -> None:
    now = 1_000_000_000.0
    # Nothing undelivered: the dedupe retention alone.
    assert prune_before(now, retention_s=30 * DAY, oldest_undelivered_s=None) == (
        now - 30 * DAY
    )
    # A record waiting 3 days: retention still earlier.
    assert prune_before(now, retention_s=30 * DAY, oldest_undelivered_s=3 * DAY) == (
        now - 30 * DAY
    )
    # A record waiting 45 days (destination down): its proof stays.
    assert (
        prune_before(now, retention_s=30 * DAY, oldest_undelivered_s=45 * DAY)
        == now - 45 * DAY - PRUNE_SLACK_S
    )


async def test_a_hub_prunes_old_origin_proofs_at_start(
    tmp_path: Path, sender, recipient, now
) -> None:
    """The hourly prune task (it also runs at start) deletes proofs unused for
    ``hub.dedupe_retention_days``, and audits it."""
    site = Site(tmp_path)
    cfg = site.hub_config(extra="")
    cfg.write_text(
        cfg.read_text().replace("hub:\n", "hub:\n  dedupe_retention_days: 7\n")
    )
    env_old, m_old = sealed(sender, recipient, now, tag="old")
    env_new, m_new = sealed(sender, recipient, now, tag="new")
    db = site.root / "hub" / "origins.db"
    db.parent.mkdir(parents=True)
    store = OriginStore(db)
    t = time.time()
    store.put([(proof_of(env_old, sender.public), m_old)], sender="x", now=t - 8 * DAY)
    store.put([(proof_of(env_new, sender.public), m_new)], sender="x", now=t - 6 * DAY)
    store.close()

    def proofs() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return int(c.execute("SELECT COUNT(*) FROM proofs").fetchone()[0])

    async with running(cfg):
        deadline = time.monotonic() + 10
        while proofs() != 1:
            assert time.monotonic() < deadline, "old proof not pruned"
            await asyncio.sleep(0.05)
    store = OriginStore(db)
    try:
        assert set(store.lookup([*m_old, *m_new])) == set(m_new)
    finally:
        store.close()
    log = verified(site.root / "hub" / "audit", site.key("hub"))
    pruned = one(log, "origins_pruned")
    assert pruned["data"] == {"proofs": 1, "records": len(m_old)}


def test_the_openssl_check_in_the_docs(
    tmp_path: Path, sender, recipient, now, openssl: str
) -> None:
    """docs/envelope.md, "Provenance across hubs": the OpenSSL commands agree."""
    import base64
    import subprocess

    env, manifest = sealed(sender, recipient, now)
    p = proof_of(env, sender.public).to_json()
    (tmp_path / "header.json").write_text(p["header"])
    (tmp_path / "signed.bin").write_text(
        p["header"] + "\nciphertext-sm3=" + p["ciphertext_sm3"] + "\n"
    )
    (tmp_path / "signature.der").write_bytes(base64.b64decode(p["signature"]))
    (tmp_path / "origin.pub.der").write_bytes(base64.b64decode(p["sender_key"]))
    kid = subprocess.run(
        f"{openssl} pkey -pubin -inform DER -in origin.pub.der -outform DER"
        f" | {openssl} dgst -sm3 -r | cut -c1-32",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert kid == sender.id
    ok = subprocess.run(
        [
            openssl,
            "dgst",
            "-sm3",
            "-verify",
            "origin.pub.der",
            "-keyform",
            "DER",
            "-sigopt",
            "distid:1234567812345678",
            "-signature",
            "signature.der",
            "signed.bin",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert f'"{manifest[0]}"' in (tmp_path / "header.json").read_text()
