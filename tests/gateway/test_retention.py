"""Retention: delivered inputs are deleted after node.keep_delivered_days, and the
counts ``status`` shows stay exact (real SQLite files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.records import InboxEnvelope
from gateway.spool import MIGRATIONS, PruneCount, Spool
from tests.gateway.test_spool import T0, hprov, hrec, prov, put

DAY = 86400.0


@pytest.fixture
def spool(tmp_path: Path):
    with Spool(tmp_path / "spool.db") as s:
        yield s


def deliver(spool: Spool, dest: str, now: float, *, reject: int = 0) -> int:
    """Seal everything ready for ``dest`` into one envelope and ack it; the
    first ``reject`` records are refused by the receiver."""
    items = spool.lease(dest, limit=1000, lease_s=60, now=now)
    if not items:
        return 0
    env = f"env-{dest}-{now}"
    spool.put_envelope(
        dest, env, b"body", digest_hex="0" * 64, item_ids=[i.item_id for i in items],
        now=now,
    )  # fmt: skip
    spool.ack_envelope(
        env,
        receipt_id="r",
        receipt_digest_hex="1" * 64,
        receipt=b"{}",
        now=now,
        rejected={i.item_id: "E_FORMAT" for i in items[:reject]},
    )
    return len(items)


def table_counts(spool: Spool) -> dict[str, int]:
    return {
        t: spool._conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in (
            "inputs", "raw_inputs", "records", "items", "rejects", "idempotency",
            "envelopes", "envelope_bodies",
        )
    }  # fmt: skip


def test_only_inputs_delivered_everywhere_and_old_enough_go(spool: Spool) -> None:
    done = put(spool, 3, dests=("a", "b"), key="k-done")  # delivered to a and b
    half = put(spool, 2, dests=("a", "b"))  # delivered to a only
    dead = put(spool, 2, dests=("c",))  # refused by c: dead-lettered
    q = spool.put_quarantine(prov(b"bad"), b"bad", reason_code="E_X", message="m")
    deliver(spool, "a", T0 + 1)
    deliver(spool, "c", T0 + 1, reject=1)
    items = spool.lease("b", limit=3, lease_s=60, now=T0 + 2)
    assert len(items) == 3  # the first input's three records (FIFO)
    spool.put_envelope(
        "b", "eb", b"x", digest_hex="0" * 64, item_ids=[i.item_id for i in items],
        now=T0 + 2,
    )  # fmt: skip
    spool.ack_envelope(
        "eb", receipt_id="r", receipt_digest_hex="1" * 64, receipt=b"{}", now=T0 + 2
    )
    recent = put(spool, 1, dests=("a",))
    deliver(spool, "a", T0 + 3)

    before = spool.destination_counts(now=T0 + 10)
    # Nothing is old enough yet.
    assert spool.prune_delivered(before=T0 - 1) == PruneCount()
    got = spool.prune_delivered(before=T0 + 5 * DAY)
    # Envelopes: "eb" and the one with the fresh record; the first envelope to
    # a also carried the half-delivered input, so it stays.
    assert got == PruneCount(inputs=2, records=4, envelopes=2)
    # Gone: the fully delivered inputs; their idempotency key is forgotten.
    assert spool.intake_state(done.intake_id) is None
    assert spool.intake_state(recent.intake_id) is None
    assert not put(spool, 1, dests=("a",), key="k-done").repeated
    # Kept: partly delivered, dead-lettered and quarantined inputs.
    for kept in (half, dead, q):
        assert spool.intake_state(kept.intake_id) is not None
    # The totals did not move; only the fresh input is queued for a.
    after = spool.destination_counts(now=T0 + 10)
    for d in ("a", "b", "c"):
        assert after[d].delivered == before[d].delivered, d
        assert after[d].dead == before[d].dead, d
    assert after["a"].queued == before["a"].queued + 1
    assert after["b"].queued == before["b"].queued == 2
    assert spool.check() == []


def test_pruning_deletes_every_trace_and_the_file_stays_sound(spool: Spool) -> None:
    for i in range(5):
        put(spool, 4, dests=("hub",))
        assert deliver(spool, "hub", T0 + 1 + i) == 4
    assert table_counts(spool)["records"] == 20
    got = spool.prune_delivered(before=T0 + DAY, limit=2)
    assert got.inputs == 2  # limited: the caller loops
    while spool.prune_delivered(before=T0 + DAY, limit=2).inputs:
        pass
    assert table_counts(spool) == dict.fromkeys(table_counts(spool), 0)
    assert spool.destination_counts(now=T0)["hub"].delivered == 20
    assert spool._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_hub_inbox_is_kept(spool: Spool) -> None:
    env = InboxEnvelope(
        envelope_id="e1", sender_key_id="k", digest_hex="2" * 64, size=3,
        received_at=T0, remote_addr="192.0.2.1", receipt=b"R",
    )  # fmt: skip
    spool.put_received(
        env, [hrec("a", dests=("prov",))], hprov(env, source="hub:gw"), now=T0
    )
    deliver(spool, "prov", T0 + 1)
    assert spool.prune_delivered(before=T0 + 30 * DAY) == PruneCount()
    assert spool.has_hub_record("deal", "a", hrec("a").digest_hex)


def test_version_4_spool_gets_its_delivered_totals(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path) as s:
        put(s, 3, dests=("a",))
        deliver(s, "a", T0 + 1)
    # As version 4 left it: no totals table (the items are the only count).
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE destination_stats")
    conn.execute("DROP INDEX idempotency_input")
    conn.execute("DROP INDEX inputs_received")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with Spool(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.destination_counts(now=T0)["a"].delivered == 3


async def test_a_running_node_prunes_at_start_and_audits_it(tmp_path: Path) -> None:
    import asyncio
    import time

    from tests.harness import Site, running
    from tests.transports.helpers import one, verified

    site = Site(tmp_path)
    cfg = site.gateway_config()
    (site.root / "gw").mkdir(parents=True)
    with Spool(site.root / "gw" / "spool.db") as s:
        old = put(s, 2, dests=("hub",))  # received at T0, long ago
        deliver(s, "hub", T0 + 1)
        fresh = put(s, 1, dests=("hub",))  # not delivered: kept however old
    async with running(cfg):
        deadline = time.monotonic() + 10
        while True:
            with Spool(site.root / "gw" / "spool.db", readonly=True) as s:
                if s.intake_state(old.intake_id) is None:
                    assert s.intake_state(fresh.intake_id) is not None
                    assert s.destination_counts(now=T0)["hub"].delivered == 2
                    break
            assert time.monotonic() < deadline, "delivered input not pruned"
            await asyncio.sleep(0.05)
    log = verified(site.root / "gw" / "audit", site.key("gw"))
    assert one(log, "spool_pruned")["data"] == {
        "inputs": 1,
        "records": 2,
        "envelopes": 1,
    }
