"""The spool, hub side included, against real SQLite files: no mocks.

The crash test kills a writer process with SIGKILL at random moments and checks
that every intake id and received envelope id it printed (printed only after
its commit returned) is still there, complete with its records and queue
items, in a file that passes SQLite's integrity check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.errors import LeaseLost, QuotaExceeded, SpoolError
from gateway.records import (
    AcceptedRecord,
    EnvelopeState,
    InboxCounts,
    InboxEnvelope,
    InputStatus,
    ItemState,
    LeasedItem,
    Provenance,
    Reject,
    Usage,
)
from gateway.spool import MIGRATIONS, AsyncSpool, Limits, Quotas, Spool, new_id

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def prov(raw: bytes, *, source: str = "acme", key: str | None = None, at: float = T0):
    return Provenance(
        source=source,
        remote_addr="192.0.2.7",
        token_id="tok-1",
        received_at=at,
        content_type="text/csv",
        digest_hex=sha(raw),
        idempotency_key=key,
    )


def rec(key: str, *, dests: tuple[str, ...] = ("hub",), size: int = 100):
    body = json.dumps({"k": key, "pad": "x" * size}).encode()
    return AcceptedRecord(
        dataset="deal", record_key=key, canonical=body, digest_hex=sha(body),
        destinations=dests,
    )  # fmt: skip


@pytest.fixture
def spool(tmp_path: Path):
    with Spool(tmp_path / "spool.db") as s:
        yield s


def put(spool: Spool, n: int = 1, *, dests=("hub",), source="acme", key=None, **kw):
    raw = f"raw {source} {key} {n} {random.random()}".encode()
    recs = [rec(f"{source}-{i}-{random.random()}", dests=dests) for i in range(n)]
    return spool.put_intake(prov(raw, source=source, key=key), raw, recs, **kw)


# -- opening and schema ----------------------------------------------------------


def test_open_sets_wal_full_sync_and_current_schema(spool: Spool) -> None:
    conn = spool._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert spool.schema_version == len(MIGRATIONS)


def test_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    known = len(MIGRATIONS)
    with pytest.raises(
        SpoolError, match=rf"schema version 99 is newer .* knows \({known}\)"
    ):
        Spool(path)


def test_other_databases_are_refused(tmp_path: Path) -> None:
    # e.g. a hub inbox file of the earlier design ("GWIB"), now part of the spool
    conn = sqlite3.connect(tmp_path / "inbox.db")
    conn.execute("PRAGMA application_id = 1196902722")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("CREATE TABLE envelopes (id TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(SpoolError, match="not a spool database"):
        Spool(tmp_path / "inbox.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SpoolError, match=r"junk\.db"):
        Spool(tmp_path / "junk.db")


def test_reopen_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        answer = put(s, 2)
    with Spool(tmp_path / "s.db") as s:
        state = s.intake_state(answer.intake_id)
        assert state is not None
        assert len(state.records) == 2
        assert s.commits == 0


def test_migrations_run_in_order_on_open(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        answer = put(s, 1)

    class NextSpool(Spool):
        MIGRATIONS = (*MIGRATIONS, ("CREATE TABLE notes (x TEXT)",))

    with NextSpool(tmp_path / "s.db") as s:
        assert s.schema_version == len(MIGRATIONS) + 1
        assert s.intake_state(answer.intake_id) is not None
    with pytest.raises(SpoolError, match="newer than this program"):
        Spool(tmp_path / "s.db")


class PreV4(Spool):
    """Writes as releases before schema version 4 did (no parent-first tables,
    no delivered totals)."""

    def _add_records(self, iid, seqs, records, dests, at):
        first = int(self._one("SELECT COALESCE(MAX(id), 0) + 1 FROM records"))
        ids = range(first, first + len(records))
        self._conn.executemany(
            """INSERT INTO records (id, input_id, seq, dataset, record_key,
                   digest_hex, size, pending, canonical)
               VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)""",
            [
                (rid, iid, seq, r.dataset, r.record_key, r.digest_hex,
                 len(r.canonical), r.canonical)
                for rid, seq, r in zip(ids, seqs, records, strict=True)
            ],
        )  # fmt: skip
        self._conn.executemany(
            """INSERT INTO items (record_id, destination, state, enqueued_at,
                   ready_at) VALUES (?, ?, 'queued', ?, ?)""",
            [(rid, d, at, at) for rid, ds in zip(ids, dests, strict=True) for d in ds],
        )
        return ids

    def _note_delivered(self, destination, item_ids, now):
        return 0

    def _drop_holds(self, item_ids):
        pass

    def _count_delivered(self, per_destination):
        pass


class V1Spool(PreV4):
    """A spool as the first release wrote it: schema version 1, no hub tables."""

    MIGRATIONS = MIGRATIONS[:1]


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def test_a_version_1_spool_migrates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with V1Spool(path) as old:
        assert old.schema_version == 1
        answer = put(old, 3, dests=("hub", "mirror"), key="k-1")
        leased = old.lease("hub", limit=2, lease_s=30, now=T0)
        usage = old.usage()
    assert "hub_envelopes" not in tables(path)
    # a reader cannot migrate; it says what to do
    with pytest.raises(SpoolError, match="open it for writing first"):
        Spool(path, readonly=True)

    with Spool(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        app_id = s._conn.execute("PRAGMA application_id").fetchone()[0]
        assert app_id == Spool.APPLICATION_ID
        # everything written by version 1 is still there and still works
        assert put(s, key="k-1").repeated
        state = s.intake_state(answer.intake_id)
        assert state is not None
        assert len(state.records) == 3
        assert s.usage() == usage
        assert s.lease("hub", limit=9, lease_s=30, now=T0 + 1) != []
        again = s.lease("hub", limit=9, lease_s=30, now=T0 + 30)
        assert {i.item_id for i in leased} <= {i.item_id for i in again}
        # and the hub side is there
        up = ("province",)
        got = receive(s, "e1", b"one", [hrec("a", dests=up)], at=T0 + 31)
        assert (got.stored, s.hub_counts().envelopes) == (1, 1)
        assert s.check() == []
    assert {"hub_envelopes", "hub_records", "hub_stats"} <= tables(path)
    # opening again migrates nothing
    with Spool(path) as s:
        assert s.commits == 0
        assert s.get_envelope_receipt("e1") == got.receipt


async def test_async_open_migrates_a_version_1_spool(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await asyncio.to_thread(lambda: V1Spool(path).close())
    # the writer migrates before the read-only reader connection opens
    async with await AsyncSpool.open(path) as spool:
        assert await spool.hub_counts() == InboxCounts()
        assert await spool.check() == []


class V2Spool(PreV4):
    """A spool at schema version 2: envelope bodies in their rows."""

    MIGRATIONS = MIGRATIONS[:2]


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    finally:
        conn.close()


def write_as_version_2(path: Path, envelope_id: str, item_ids, body: bytes) -> None:
    """What version 2 left in a file: the envelope body in the envelope row, and
    `records.pending` counting each record's undelivered items."""
    conn = sqlite3.connect(path)
    with conn:
        seq = conn.execute(
            """INSERT INTO envelopes (id, destination, state, created_at, ready_at,
                   digest_hex, size, body)
               VALUES (?, 'hub', 'queued', ?, ?, ?, ?, ?)""",
            (envelope_id, T0, T0, sha(body), len(body), body),
        ).lastrowid
        conn.executemany(
            "UPDATE items SET state = 'sealed', envelope_seq = ? WHERE id = ?",
            [(seq, i) for i in item_ids],
        )
        conn.execute(
            """UPDATE records SET pending = (SELECT COUNT(*) FROM items i
                   WHERE i.record_id = records.id
                     AND i.state IN ('queued', 'leased', 'sealed'))"""
        )
    conn.close()


def test_a_version_2_spool_migrates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    body = b"OLD ENVELOPE" * 1000
    with V2Spool(path) as old:
        answer = put(old, 4, dests=("hub", "mirror"), key="k-1")
        hub = old.lease("hub", limit=2, lease_s=30, now=T0)
        (mirror,) = old.lease("mirror", limit=1, lease_s=30, now=T0)
        old.ack([mirror.item_id], receipt_id="m", receipt_digest_hex="00", now=T0)
    write_as_version_2(path, "env-old", [i.item_id for i in hub], body)
    assert "envelope_bodies" not in tables(path)
    assert "items_undelivered" in indexes(path)
    with V2Spool(path) as old:
        usage = old.usage()
        assert usage["acme"].records == 4

    with Spool(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert "envelope_bodies" in tables(path)
        assert "items_undelivered" not in indexes(path)
        assert s.usage() == usage
        assert s.check() == []
        assert put(s, key="k-1").repeated
        # the envelope sealed by version 2 is sent and acknowledged as before
        (env,) = s.lease_envelopes("hub", limit=9, lease_s=30, now=T0 + 1)
        assert (env.envelope_id, env.body) == ("env-old", body)
        assert env.item_ids == tuple(i.item_id for i in hub)
        assert env.record_digests == tuple(i.digest_hex for i in hub)
        assert s.ack_envelope(
            "env-old", receipt_id="r", receipt_digest_hex="01", receipt=b"R", now=T0 + 2
        )
        # the first record is delivered everywhere now, the others are owed
        assert s.usage()["acme"].records == 3
        assert s.check() == []
        # an envelope sealed now keeps its bytes in envelope_bodies
        _, new_body = seal(s, "env-new", n=2, now=T0 + 3)
        assert s._conn.execute(
            """SELECT length(e.body), b.body FROM envelopes e
               JOIN envelope_bodies b ON b.seq = e.seq WHERE e.id = 'env-new'"""
        ).fetchone() == (0, new_body)
        (env,) = s.lease_envelopes("hub", limit=9, lease_s=30, now=T0 + 3)
        assert (env.envelope_id, env.body) == ("env-new", new_body)
        mirror_rest = s.lease("mirror", limit=9, lease_s=30, now=T0 + 3)
        s.ack(
            [i.item_id for i in mirror_rest], receipt_id="m", receipt_digest_hex="00",
            now=T0 + 4, lease_until=mirror_rest[0].lease_until,
        )  # fmt: skip
        s.ack_envelope(
            "env-new", receipt_id="r", receipt_digest_hex="02", receipt=b"R", now=T0 + 5
        )
        assert s.usage()["acme"] == Usage()
        state = s.intake_state(answer.intake_id)
        assert state is not None
        assert {d.state for r in state.records for d in r.deliveries} == {
            ItemState.DELIVERED
        }
        assert s.check() == []
    with Spool(path) as s:
        assert s.commits == 0


def test_read_only_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="does not exist"):
        Spool(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_read_only_connection_refuses_writes(tmp_path: Path) -> None:
    Spool(tmp_path / "s.db").close()
    with (
        Spool(tmp_path / "s.db", readonly=True) as ro,
        pytest.raises(SpoolError, match="read-only"),
    ):
        put(ro)


# -- intake ------------------------------------------------------------------------


def test_put_intake_stores_everything_in_one_commit(spool: Spool) -> None:
    raw = b"id,amount\n1,2\n"
    records = [rec("a", dests=("hub", "mirror")), rec("b", dests=("hub",))]
    rejects = [Reject(locator="line 3", code="E_REQUIRED", message="amount missing")]
    before = spool.commits
    answer = spool.put_intake(
        prov(raw, key="k-1"), raw, records, rejects, intake_id="in-1"
    )
    assert spool.commits == before + 1
    assert answer.intake_id == "in-1"
    assert answer.status == 202
    assert not answer.repeated
    assert json.loads(answer.body) == {"intake_id": "in-1", "records": 2, "rejected": 1}

    stored = spool.get_input("in-1")
    assert stored is not None
    assert stored.raw == raw
    assert stored.provenance == prov(raw, key="k-1")
    assert stored.rejects == tuple(rejects)

    state = spool.intake_state("in-1")
    assert state is not None
    assert state.status is InputStatus.ACCEPTED
    assert state.size == len(raw)
    assert [(r.record_key, r.digest_hex) for r in state.records] == [
        ("a", records[0].digest_hex),
        ("b", records[1].digest_hex),
    ]
    assert [d.destination for d in state.records[0].deliveries] == ["hub", "mirror"]
    assert all(d.state is ItemState.QUEUED for r in state.records for d in r.deliveries)
    assert spool.check() == []


def test_generated_ids_are_unique_and_sort_by_time(spool: Spool) -> None:
    ids = [new_id(T0 + i / 1000) for i in range(200)]
    assert ids == sorted(ids)
    assert len({new_id(T0) for _ in range(1000)}) == 1000
    answer = put(spool)
    assert len(answer.intake_id) == 26


@pytest.mark.parametrize("bad", ["", "a b", "../etc", "x" * 129, "é"])
def test_caller_ids_must_be_plain(spool: Spool, bad: str) -> None:
    with pytest.raises(ValueError, match="intake id"):
        put(spool, intake_id=bad)


def test_idempotency_key_repeat_returns_first_answer(spool: Spool) -> None:
    first = put(spool, 2, key="order-7")
    again = put(spool, 5, key="order-7")  # other bytes, same producer key
    assert again.repeated
    assert (again.intake_id, again.body, again.digest_hex) == (
        first.intake_id,
        first.body,
        first.digest_hex,
    )
    assert spool.source_counts()["acme"].accepted == 1
    assert spool.lookup_idempotent("acme", "order-7") == again
    assert spool.lookup_idempotent("acme", "other") is None
    # the key is per source
    assert not put(spool, source="beta", key="order-7").repeated


def test_same_intake_id_twice_is_a_repeat(spool: Spool) -> None:
    first = put(spool, intake_id="fixed")
    again = put(spool, 3, intake_id="fixed")
    assert again.repeated
    assert again.body == first.body
    state = spool.intake_state("fixed")
    assert state is not None
    assert len(state.records) == 1


def test_caller_answer_is_stored_verbatim(spool: Spool) -> None:
    body = b'{"intake_id":"x1","records":1,"rejected":0,"extra":true}'
    put(spool, intake_id="x1", key="k", answer=body)
    assert put(spool, key="k").body == body


def test_large_input_round_trips(spool: Spool) -> None:
    raw = os.urandom(64 * 1024 * 1024)
    answer = spool.put_intake(prov(raw), raw, [rec("big")])
    stored = spool.get_input(answer.intake_id)
    assert stored is not None
    assert sha(stored.raw) == sha(raw)


# -- record queues -----------------------------------------------------------------


def test_lease_is_fifo_per_destination_and_destinations_are_independent(
    spool: Spool,
) -> None:
    for n in range(3):
        spool.put_intake(
            prov(b"%d" % n), b"%d" % n, [rec(f"r{n}.{i}", dests=("hub", "mirror"))
                                         for i in range(3)]
        )  # fmt: skip
    order = [f"r{n}.{i}" for n in range(3) for i in range(3)]
    got = spool.lease("hub", limit=4, lease_s=60, now=T0)
    got += spool.lease("hub", limit=10, lease_s=60, now=T0)
    assert [i.record_key for i in got] == order
    assert spool.lease("hub", limit=10, lease_s=60, now=T0) == []
    # leasing everything for the hub left the mirror's queue untouched
    mirror = spool.lease("mirror", limit=100, lease_s=60, now=T0)
    assert [i.record_key for i in mirror] == order
    assert mirror[0].canonical == rec("r0.0").canonical


def test_records_with_different_destinations_keep_each_queue_in_order(
    spool: Spool,
) -> None:
    dests = [("mirror", "hub"), ("hub",), (), ("hub", "mirror", "hub"), ("mirror",)]
    records = [rec(f"r{i}", dests=d) for i, d in enumerate(dests)]
    answer = spool.put_intake(prov(b"mixed"), b"mixed", records)
    hub = spool.lease("hub", limit=9, lease_s=60, now=T0)
    assert [i.record_key for i in hub] == ["r0", "r1", "r3"]
    mirror = spool.lease("mirror", limit=9, lease_s=60, now=T0)
    assert [i.record_key for i in mirror] == ["r0", "r3", "r4"]
    state = spool.intake_state(answer.intake_id)
    assert state is not None
    assert [[d.destination for d in r.deliveries] for r in state.records] == [
        ["mirror", "hub"], ["hub"], [], ["hub", "mirror"], ["mirror"],
    ]  # fmt: skip
    assert spool.usage()["acme"].records == 4  # r2 goes nowhere
    assert spool.check() == []


def test_oldest_undelivered_age_covers_queued_leased_and_sealed(spool: Spool) -> None:
    put(spool, 1, now=T0)
    put(spool, 1, now=T0 + 10)
    seal(spool, "env-1", n=1, now=T0 + 20)
    assert spool.destination_counts(now=T0 + 30)["hub"].oldest_age_s == 30  # sealed
    spool.ack_envelope(
        "env-1", receipt_id="r", receipt_digest_hex="00", receipt=b"", now=T0 + 30
    )
    (item,) = spool.lease("hub", limit=1, lease_s=60, now=T0 + 30)
    assert spool.destination_counts(now=T0 + 30)["hub"].oldest_age_s == 20  # leased
    spool.release([item.item_id], delay_s=0, now=T0 + 30)
    assert spool.destination_counts(now=T0 + 30)["hub"].oldest_age_s == 20  # queued
    spool.dead_letter([item.item_id], reason="E", now=T0 + 31)
    assert spool.destination_counts(now=T0 + 31)["hub"].oldest_age_s is None


def test_expired_leases_come_back_even_after_a_restart(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as s:
        put(s, 3)
        first = s.lease("hub", limit=10, lease_s=30, now=T0)
        assert len(first) == 3
        assert s.lease("hub", limit=10, lease_s=30, now=T0 + 29) == []
    # the leaseholder "crashed"; a new process sees the items after expiry
    with Spool(tmp_path / "s.db") as s:
        assert s.lease("hub", limit=10, lease_s=30, now=T0 + 29) == []
        again = s.lease("hub", limit=10, lease_s=30, now=T0 + 30)
        assert [i.item_id for i in again] == [i.item_id for i in first]
        assert s.check() == []


def test_release_with_delay_counts_attempts_and_survives_restart(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path / "s.db") as s:
        put(s, 2)
        a, b = s.lease("hub", limit=2, lease_s=500, now=T0)
        assert s.release([a.item_id], delay_s=100, now=T0 + 1, error="503") == 1
        assert s.release([a.item_id], delay_s=100, now=T0 + 1) == 0  # not leased now
    with Spool(tmp_path / "s.db") as s:
        assert s.lease("hub", limit=10, lease_s=30, now=T0 + 100) == []
        (again,) = s.lease("hub", limit=10, lease_s=1000, now=T0 + 101)
        assert again.item_id == a.item_id
        assert again.attempts == 1
        state = s.intake_state(a.intake_id)
        assert state is not None
        assert state.records[0].deliveries[0].error == "503"
        # b is still leased until its lease runs out
        assert s.lease("hub", limit=9, lease_s=1, now=T0 + 499) == []
        (late,) = s.lease("hub", limit=9, lease_s=1, now=T0 + 500)
        assert (late.item_id, late.attempts) == (b.item_id, 0)


def test_ack_stores_the_receipt_and_frees_the_quota(spool: Spool) -> None:
    answer = put(spool, 2, dests=("hub", "mirror"))
    items = spool.lease("hub", limit=10, lease_s=30, now=T0)
    ids = [i.item_id for i in items]
    assert spool.ack(ids, receipt_id="rcpt-1", receipt_digest_hex="ab", now=T0 + 2) == 2
    assert spool.ack(ids, receipt_id="rcpt-2", receipt_digest_hex="cd", now=T0 + 3) == 0
    assert spool.lease("hub", limit=10, lease_s=30, now=T0 + 999) == []
    state = spool.intake_state(answer.intake_id)
    assert state is not None
    hub = [r.deliveries[0] for r in state.records]
    assert {(d.state, d.receipt_id, d.delivered_at) for d in hub} == {
        (ItemState.DELIVERED, "rcpt-1", T0 + 2)
    }
    # still owed to the mirror, so still counted
    assert spool.usage()["acme"].records == 2
    mirror = [i.item_id for i in spool.lease("mirror", limit=9, lease_s=1, now=T0)]
    spool.ack(mirror, receipt_id="rcpt-3", receipt_digest_hex="ef", now=T0 + 4)
    assert spool.usage()["acme"] == Usage(records=0, bytes=0)
    assert spool.check() == []


def test_dead_letter_keeps_the_record_and_says_why(spool: Spool) -> None:
    answer = put(spool, 1)
    (item,) = spool.lease("hub", limit=1, lease_s=30, now=T0)
    assert spool.dead_letter([item.item_id], reason="E_SCHEMA", now=T0) == 1
    assert spool.lease("hub", limit=1, lease_s=30, now=T0 + 999) == []
    state = spool.intake_state(answer.intake_id)
    assert state is not None
    delivery = state.records[0].deliveries[0]
    assert (delivery.state, delivery.error) == (ItemState.DEAD, "E_SCHEMA")
    assert spool.destination_counts(now=T0)["hub"].dead == 1
    assert spool.check() == []


def test_a_stale_lease_holder_cannot_touch_items_leased_again(spool: Spool) -> None:
    put(spool, 3)
    a = spool.lease("hub", limit=3, lease_s=30, now=T0)
    # a's lease runs out; b takes two of the three items
    b = spool.lease("hub", limit=2, lease_s=30, now=T0 + 31)
    assert [i.item_id for i in b] == [i.item_id for i in a[:2]]
    ids = [i.item_id for i in a]
    stale = a[0].lease_until
    assert spool.release(ids[:2], delay_s=0, now=T0 + 32, lease_until=stale) == 0
    assert spool.dead_letter(ids[:2], reason="E", now=T0 + 32, lease_until=stale) == 0
    # the third ran out too, but nobody took it: still a's to finish
    assert spool.ack(
        ids, receipt_id="r-a", receipt_digest_hex="aa", now=T0 + 32, lease_until=stale
    ) == 1  # fmt: skip
    counts = spool.destination_counts(now=T0 + 32)["hub"]
    assert (counts.leased, counts.delivered, counts.dead) == (2, 1, 0)
    # b holds the current lease
    mine = b[0].lease_until
    assert spool.release(ids[:1], delay_s=0, now=T0 + 33, lease_until=mine) == 1
    assert spool.dead_letter(ids[1:2], reason="E", now=T0 + 33, lease_until=mine) == 1
    # once released, the item is nobody's: b's lease no longer covers it
    assert spool.ack(
        ids[:1], receipt_id="r-b", receipt_digest_hex="bb", now=T0 + 34,
        lease_until=mine,
    ) == 0  # fmt: skip
    with pytest.raises(ValueError, match="lease_s"):
        spool.lease("hub", limit=1, lease_s=0, now=T0)
    assert spool.check() == []


def test_redrive_dead_puts_a_destinations_dead_records_back(spool: Spool) -> None:
    answer = put(spool, 3, dests=("hub", "mirror"))
    held = spool.usage()["acme"]
    (one,) = spool.lease("hub", limit=1, lease_s=30, now=T0)
    spool.release([one.item_id], delay_s=0, now=T0, lease_until=one.lease_until)
    (one,) = spool.lease("hub", limit=1, lease_s=30, now=T0)
    spool.dead_letter([one.item_id], reason="E_SCHEMA", now=T0)
    seal(spool, "env-1", n=2)
    spool.dead_letter_envelopes(["env-1"], reason="E_REJECTED", now=T0)
    (m,) = spool.lease("mirror", limit=1, lease_s=30, now=T0)
    spool.dead_letter([m.item_id], reason="E_MIRROR", now=T0)
    hub = spool.destination_counts(now=T0)["hub"]
    assert (hub.dead, hub.queued, hub.envelopes_dead) == (3, 0, 1)
    assert spool.usage()["acme"].records == 2  # still owed to the mirror

    assert spool.redrive_dead("hub", now=T0 + 100) == 3
    assert spool.redrive_dead("hub", now=T0 + 100) == 0
    hub = spool.destination_counts(now=T0 + 100)["hub"]
    assert (hub.dead, hub.queued, hub.envelopes_dead) == (0, 3, 0)
    assert spool._conn.execute(
        "SELECT state FROM envelopes WHERE id = 'env-1'"
    ).fetchone()[0] == EnvelopeState.RESEALED  # fmt: skip
    assert spool.destination_counts(now=T0)["mirror"].dead == 1  # not redriven
    assert spool.usage()["acme"] == held
    assert spool.lease("hub", limit=9, lease_s=30, now=T0 + 99) == []
    again = spool.lease("hub", limit=9, lease_s=30, now=T0 + 100)
    state = spool.intake_state(answer.intake_id)
    assert state is not None
    assert [(i.record_key, i.attempts) for i in again] == [
        (r.record_key, 0) for r in state.records
    ]
    assert {r.deliveries[0].envelope_id for r in state.records} == {None}
    # the old envelope is superseded: a late receipt for it changes no record
    assert spool.ack_envelope(
        "env-1", receipt_id="late", receipt_digest_hex="00", receipt=b"", now=T0 + 101
    )
    assert spool.destination_counts(now=T0 + 101)["hub"].leased == 3
    assert spool.check() == []


# -- outbox ------------------------------------------------------------------------


def seal(spool: Spool, envelope_id: str, n: int = 3, now: float = T0):
    items = spool.lease("hub", limit=n, lease_s=60, now=now)
    body = b"ENVELOPE " + envelope_id.encode()
    spool.put_envelope(
        "hub", envelope_id, body, digest_hex=sha(body),
        item_ids=[i.item_id for i in items], now=now,
    )  # fmt: skip
    return items, body


def test_envelope_lifecycle(spool: Spool) -> None:
    put(spool, 3)
    items, body = seal(spool, "env-1")
    # sealed records are not leased again, not even after the lease time
    assert spool.lease("hub", limit=10, lease_s=60, now=T0 + 3600) == []
    assert spool.destination_counts(now=T0)["hub"].sealed == 3

    (env,) = spool.lease_envelopes("hub", limit=5, lease_s=30, now=T0)
    assert (env.envelope_id, env.body, env.digest_hex) == ("env-1", body, sha(body))
    assert env.item_ids == tuple(i.item_id for i in items)
    assert env.record_digests == tuple(i.digest_hex for i in items)
    assert spool.lease_envelopes("hub", limit=5, lease_s=30, now=T0 + 1) == []

    assert spool.release_envelopes(["env-1"], delay_s=60, now=T0 + 2) == 1
    assert spool.lease_envelopes("hub", limit=5, lease_s=30, now=T0 + 61) == []
    (env,) = spool.lease_envelopes("hub", limit=5, lease_s=30, now=T0 + 62)
    assert env.attempts == 1
    # lease expiry works for envelopes too
    (env,) = spool.lease_envelopes("hub", limit=5, lease_s=30, now=T0 + 92)

    assert spool.ack_envelope(
        "env-1",
        receipt_id="r-9",
        receipt_digest_hex="99",
        receipt=b"SIGNED",
        now=T0 + 93,
    )
    assert not spool.ack_envelope(
        "env-1",
        receipt_id="r-9",
        receipt_digest_hex="99",
        receipt=b"SIGNED",
        now=T0 + 94,
    )
    counts = spool.destination_counts(now=T0 + 95)["hub"]
    assert (counts.delivered, counts.sealed, counts.envelopes_pending) == (3, 0, 0)
    assert counts.oldest_age_s is None
    stored = spool._conn.execute(
        "SELECT receipt, receipt_id FROM envelopes WHERE id = 'env-1'"
    ).fetchone()
    assert stored == (b"SIGNED", "r-9")
    state = spool.intake_state(items[0].intake_id)
    assert state is not None
    assert {r.deliveries[0].envelope_id for r in state.records} == {"env-1"}
    assert spool.usage()["acme"] == Usage()
    assert spool.check() == []


def test_put_envelope_refuses_records_it_does_not_hold(spool: Spool) -> None:
    put(spool, 3)
    items, _ = seal(spool, "env-1", n=2)
    (third,) = spool.lease("hub", limit=1, lease_s=60, now=T0)
    with pytest.raises(LeaseLost, match="1 of 2 records"):
        spool.put_envelope(
            "hub", "env-2", b"x", digest_hex="00",
            item_ids=[items[0].item_id, third.item_id], now=T0,
        )  # fmt: skip
    # nothing of the refused envelope was stored, the third record is untouched
    assert spool.lease_envelopes("hub", limit=9, lease_s=1, now=T0) != []
    assert spool._conn.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0] == 1
    assert spool._conn.execute("SELECT COUNT(*) FROM envelope_bodies").fetchone() == (
        1,
    )
    spool.put_envelope(
        "hub", "env-3", b"y", digest_hex="01",
        item_ids=[third.item_id], now=T0,
    )  # fmt: skip
    # same id and digest again: no-op; same id, other digest: refused
    spool.put_envelope(
        "hub", "env-3", b"y", digest_hex="01", item_ids=[third.item_id], now=T0
    )
    with pytest.raises(ValueError, match="another digest"):
        spool.put_envelope(
            "hub", "env-3", b"z", digest_hex="02", item_ids=[third.item_id], now=T0
        )


def test_requeue_envelope_puts_records_back_first_in_line(spool: Spool) -> None:
    put(spool, 3)
    put(spool, 1)
    old_items, _ = seal(spool, "env-old", n=3)
    assert spool.requeue_envelope("env-old", now=T0 + 10, reason="too old") == 3
    assert spool.lease_envelopes("hub", limit=9, lease_s=1, now=T0 + 10) == []
    again = spool.lease("hub", limit=10, lease_s=60, now=T0 + 10)
    assert [i.item_id for i in again][:3] == [i.item_id for i in old_items]
    assert len(again) == 4
    spool.put_envelope(
        "hub", "env-new", b"new", digest_hex="11",
        item_ids=[i.item_id for i in again], now=T0 + 11,
    )  # fmt: skip
    # a late receipt for the abandoned envelope does not touch the records
    assert spool.ack_envelope(
        "env-old", receipt_id="late", receipt_digest_hex="00", receipt=b"", now=T0 + 12
    )
    assert spool.destination_counts(now=T0)["hub"].sealed == 4
    assert spool.check() == []


def test_dead_letter_envelopes_kills_their_records(spool: Spool) -> None:
    put(spool, 2)
    seal(spool, "env-1", n=2)
    assert spool.dead_letter_envelopes(["env-1"], reason="E_REJECTED", now=T0) == 1
    counts = spool.destination_counts(now=T0)["hub"]
    assert (counts.dead, counts.envelopes_dead, counts.envelopes_pending) == (2, 1, 0)
    assert spool.usage()["acme"] == Usage()
    assert spool.check() == []


# -- quotas ------------------------------------------------------------------------


def test_quota_refuses_before_writing_and_frees_after_delivery(tmp_path: Path) -> None:
    quotas = Quotas(per_source={"acme": Limits(max_records=3)}, retry_after_s=7)
    with Spool(tmp_path / "s.db", quotas=quotas) as s:
        put(s, 2, key="a")
        commits = s.commits
        with pytest.raises(QuotaExceeded, match="source 'acme'") as info:
            put(s, 2, key="b")
        assert info.value.retry_after_s == 7
        assert s.commits == commits  # rolled back, nothing written
        assert s.source_counts()["acme"].accepted == 1
        assert s.lookup_idempotent("acme", "b") is None
        # a repeat is still answered, other sources are not affected
        assert put(s, 2, key="a").repeated
        put(s, 3, source="beta")
        # delivering frees room
        ids = [i.item_id for i in s.lease("hub", limit=1, lease_s=9, now=T0)]
        s.ack(ids, receipt_id="r", receipt_digest_hex="00", now=T0)
        put(s, 2, key="b")
        assert s.check() == []


def test_total_and_byte_quotas(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", quotas=Quotas(total=Limits(max_records=4))) as s:
        put(s, 2, source="a")
        put(s, 2, source="b")
        with pytest.raises(QuotaExceeded, match="all sources"):
            put(s, 1, source="c")
        # records that go nowhere hold nothing
        put(s, 3, source="c", dests=())
        s.set_quotas(Quotas(default_source=Limits(max_bytes=2000)))
        put(s, 1, source="d")
        with pytest.raises(QuotaExceeded, match="bytes"):
            s.put_intake(prov(b"r" * 2000, source="d"), b"r" * 2000, [rec("x")])


def test_failed_call_in_a_batch_undoes_only_its_own_work(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", quotas=Quotas(total=Limits(max_records=2))) as s:
        before = s.commits
        with s.batch():
            ok1 = put(s, 1)
            with pytest.raises(QuotaExceeded):
                put(s, 2)
            ok2 = put(s, 1)
        assert s.commits == before + 1
        assert s.intake_state(ok1.intake_id) is not None
        assert s.intake_state(ok2.intake_id) is not None
        assert s.source_counts()["acme"].accepted == 2
        assert s.check() == []


UNDELIVERED = {ItemState.QUEUED, ItemState.LEASED, ItemState.SEALED}


def model_of(spool: Spool, inputs: dict[str, int], sizes: dict[str, int]):
    """Usage and per-destination counts recomputed from what ``intake_state``
    shows: a record is held while a delivery of it is queued, leased or sealed,
    an input's raw bytes while one of its records is held."""
    usage: dict[str, Usage] = {}
    counts: dict[str, dict[str, int]] = {}
    for iid, raw_size in inputs.items():
        state = spool.intake_state(iid)
        assert state is not None
        held = 0
        for r in state.records:
            for d in r.deliveries:
                per = counts.setdefault(d.destination, {})
                per[d.state] = per.get(d.state, 0) + 1
            if any(d.state in UNDELIVERED for d in r.deliveries):
                held += 1
                u = usage.get(state.source, Usage())
                usage[state.source] = Usage(
                    records=u.records + 1, bytes=u.bytes + sizes[r.record_key]
                )
        if held:
            u = usage[state.source]
            usage[state.source] = Usage(records=u.records, bytes=u.bytes + raw_size)
    return usage, counts


def test_random_operations_keep_the_quota_bookkeeping_exact(spool: Spool) -> None:
    rng = random.Random(20260509)
    inputs: dict[str, int] = {}  # intake id -> raw bytes kept
    sizes: dict[str, int] = {}  # record key -> canonical bytes
    received: list[AcceptedRecord] = []
    leases: dict[str, list[LeasedItem]] = {"hub": [], "mirror": [], "province": []}
    now = T0
    choices = [(), ("hub",), ("mirror",), ("hub", "mirror"), ("mirror", "hub")]
    for step in range(400):
        now += rng.choice((0, 1, 5, 40))
        # intake, hub, lease, ack, dead, release, seal, envelopes, redrive, recover
        op = rng.choices(range(10), weights=(6, 4, 8, 2, 2, 2, 4, 6, 1, 1))[0]
        dest = rng.choice(("hub", "mirror", "province"))
        if op in (3, 4, 5, 6):  # act on records leased earlier, if there are any
            dest = rng.choice([d for d in leases if leases[d]] or [dest])
        if op == 0:  # intake, the same destinations for all records or mixed
            same = rng.choice(choices)
            recs = [
                rec(f"i{step}.{i}", dests=same if rng.random() < 0.5 else
                    rng.choice(choices), size=rng.randint(10, 300))
                for i in range(rng.randint(0, 4))
            ]  # fmt: skip
            raw = rng.randbytes(rng.randint(1, 200))
            source = rng.choice(("a", "b"))
            a = spool.put_intake(prov(raw, source=source), raw, recs, now=now)
            inputs[a.intake_id] = len(raw)
            sizes.update({r.record_key: len(r.canonical) for r in recs})
        elif op == 1:  # hub: new records and some already held
            recs = [
                hrec(f"h{step}.{i}", dests=rng.choice([*choices[:2], ("province",)]))
                for i in range(rng.randint(0, 3))
            ]
            recs += rng.sample(received, min(len(received), rng.randint(0, 2)))
            body = rng.randbytes(50)
            a = receive(spool, f"e{step}", body, recs, at=now, keep=rng.random() < 0.5)
            inputs[a.intake_id] = spool.intake_state(a.intake_id).size  # type: ignore[union-attr]
            received += recs
            sizes.update({r.record_key: len(r.canonical) for r in recs})
        elif op == 2:
            leases[dest] += spool.lease(
                dest, limit=rng.randint(1, 5), lease_s=30, now=now
            )
        elif op in (3, 4, 5) and leases[dest]:
            some = rng.sample(leases[dest], rng.randint(1, len(leases[dest])))
            ids = [i.item_id for i in some]
            until = rng.choice((some[0].lease_until, None))
            if op == 3:
                spool.ack(
                    ids, receipt_id="r", receipt_digest_hex="00", now=now,
                    lease_until=until,
                )  # fmt: skip
            elif op == 4:
                spool.dead_letter(ids, reason="E", now=now, lease_until=until)
            else:
                spool.release(ids, delay_s=rng.choice((0, 10)), now=now)
            leases[dest] = [i for i in leases[dest] if i not in some]
        elif op == 6 and leases[dest]:
            ids = [i.item_id for i in leases[dest]]
            leases[dest] = []
            with suppress_lease_lost():
                spool.put_envelope(
                    dest, f"env{step}", b"E", digest_hex="00", item_ids=ids, now=now
                )
        elif op == 7:
            for env in spool.lease_envelopes(dest, limit=2, lease_s=30, now=now):
                what = rng.randrange(4)
                if what == 0:
                    spool.ack_envelope(
                        env.envelope_id, receipt_id="r", receipt_digest_hex="00",
                        receipt=b"R", now=now,
                    )  # fmt: skip
                elif what == 1:
                    spool.dead_letter_envelopes([env.envelope_id], reason="E", now=now)
                elif what == 2:
                    spool.requeue_envelope(env.envelope_id, now=now, reason="old")
                else:
                    spool.release_envelopes([env.envelope_id], delay_s=0, now=now)
        elif op == 8:
            spool.redrive_dead(dest, now=now)
        elif op == 9:
            spool.recover_leases(now=now)
        if step % 3:
            continue  # a wrong count stays wrong: checking every third step is enough
        usage, counts = model_of(spool, inputs, sizes)
        assert {k: v for k, v in spool.usage().items() if v != Usage()} == usage, step
        got = spool.destination_counts(now=now)
        for d, per in counts.items():
            c = got[d]
            assert (c.queued, c.leased, c.sealed, c.delivered, c.dead) == tuple(
                per.get(state, 0) for state in ItemState if state is not ItemState.HELD
            ), step
        if step % 24 == 0:
            assert spool.check() == []
    assert spool.check() == []


class suppress_lease_lost:  # noqa: N801 - used like contextlib.suppress
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is LeaseLost


# -- hot paths -----------------------------------------------------------------------


def test_hot_paths_never_scan_a_table(spool: Spool) -> None:
    """Every statement of the per-record operations finds its rows through an
    index: a full scan would grow with the spool (only json_each, the list of
    ids passed in, is scanned)."""
    sql: set[str] = set()
    spool._conn.set_trace_callback(sql.add)
    put(spool, 3, dests=("hub", "mirror"))
    put(spool, 2, dests=("hub",))
    spool.put_intake(
        prov(b"mixed"), b"mixed", [rec("m1", dests=("hub",)), rec("m2", dests=())]
    )
    seal(spool, "env-1", n=3)
    (env,) = spool.lease_envelopes("hub", limit=5, lease_s=30, now=T0)
    spool.ack_envelope(
        env.envelope_id, receipt_id="r", receipt_digest_hex="00", receipt=b"R", now=T0
    )
    seal(spool, "env-2", n=1)
    spool.dead_letter_envelopes(["env-2"], reason="E", now=T0)
    got = spool.lease("mirror", limit=3, lease_s=30, now=T0)
    until = got[0].lease_until
    ids = [i.item_id for i in got]
    spool.ack(
        ids[:1], receipt_id="r", receipt_digest_hex="0", now=T0, lease_until=until
    )
    spool.release(ids[1:2], delay_s=0, now=T0, lease_until=until)
    spool.dead_letter(ids[2:], reason="E", now=T0, lease_until=until)
    receive(spool, "e1", b"one", [hrec("a", dests=("province",)), hrec("b")])
    receive(spool, "e2", b"two", [hrec("a", dests=("province",)), hrec("c")])
    spool._conn.set_trace_callback(None)

    plans = {}
    for statement in sql:
        if statement.split()[0].upper() in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"):
            continue
        rows = spool._conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
        plans[statement] = [r[3] for r in rows]
    scans = {
        " ".join(s.split())[:90]: [d for d in details if d.startswith("SCAN")
                                   and "VIRTUAL TABLE" not in d]
        for s, details in plans.items()
    }  # fmt: skip
    assert {s: d for s, d in scans.items() if d} == {}
    assert any("items_ready" in " ".join(d) for d in plans.values())


# -- quarantine ----------------------------------------------------------------------


def test_quarantine_list_show_and_replay(spool: Spool) -> None:
    raw = b"<deal><amount>oops</amount></deal>"
    p = prov(raw, key="q-1")
    first = spool.put_quarantine(
        p, raw, reason_code="E_XML", message="line 1: bad amount", intake_id="q1",
        rejects=[Reject(locator="/deal/amount", code="E_NUMBER", message="oops")],
    )  # fmt: skip
    assert first.status == 422
    assert json.loads(first.body)["intake_id"] == "q1"
    assert spool.put_quarantine(
        p, raw, reason_code="E_XML", message="again"
    ).repeated  # same key: first answer
    assert spool.source_counts()["acme"].quarantined == 1

    (entry,) = spool.list_quarantine()
    assert (entry.intake_id, entry.reason_code, entry.size) == ("q1", "E_XML", len(raw))
    shown = spool.get_input("q1")
    assert shown is not None
    assert (shown.raw, shown.provenance, shown.status) == (
        raw,
        p,
        InputStatus.QUARANTINED,
    )
    state = spool.intake_state("q1")
    assert state is not None
    assert (state.status, state.reason_code) == (InputStatus.QUARANTINED, "E_XML")

    # a replay that fails again only records the attempt and the new reason
    assert spool.mark_replayed("q1", now=T0 + 5, reason_code="E_XML2", message="m")
    assert spool.list_quarantine()[0].replay_count == 1
    assert not spool.mark_replayed("nope", now=T0)

    # the fixed adapter accepts it: same id, the original provenance
    answer = spool.put_intake(
        shown.provenance, shown.raw, [rec("d1")], intake_id="q1", now=T0 + 60
    )
    assert (answer.status, answer.repeated) == (202, False)
    spool.mark_replayed("q1", now=T0 + 60)
    assert spool.list_quarantine() == []
    (entry,) = spool.list_quarantine(include_replayed=True)
    assert (entry.status, entry.replay_count, entry.replayed_at) == (
        InputStatus.ACCEPTED,
        2,
        T0 + 60,
    )
    assert spool.lookup_idempotent("acme", "q-1") == answer.__class__(
        intake_id="q1", status=202, body=answer.body, repeated=True,
        digest_hex=p.digest_hex,
    )  # fmt: skip
    counts = spool.source_counts()["acme"]
    assert (counts.accepted, counts.records, counts.quarantined) == (1, 1, 0)
    assert len(spool.lease("hub", limit=9, lease_s=9, now=T0 + 61)) == 1
    spool.put_quarantine(prov(b"z"), b"z", reason_code="E", message="m", intake_id="q2")
    with pytest.raises(ValueError, match="replay with another"):
        spool.put_intake(prov(b"other"), b"other", [], intake_id="q2")
    assert spool.check() == []


def test_list_quarantine_pages_and_filters(spool: Spool) -> None:
    for i in range(5):
        src = "acme" if i % 2 else "beta"
        spool.put_quarantine(
            prov(b"%d" % i, source=src), b"%d" % i, reason_code="E", message="m",
            intake_id=f"q{i}",
        )  # fmt: skip
    page = spool.list_quarantine(limit=2)
    assert [e.intake_id for e in page] == ["q0", "q1"]
    assert [e.intake_id for e in spool.list_quarantine(after="q1")] == [
        "q2",
        "q3",
        "q4",
    ]
    assert [e.intake_id for e in spool.list_quarantine(source="acme")] == ["q1", "q3"]


# -- status ------------------------------------------------------------------------


def test_status_counts(spool: Spool) -> None:
    put(spool, 2, dests=("hub", "mirror"))
    spool.put_intake(
        prov(b"later", at=T0 + 50), b"later", [rec("z")],
        [Reject(locator="row 2", code="E", message="m")],
    )  # fmt: skip
    spool.put_quarantine(prov(b"bad"), b"bad", reason_code="E_CSV", message="m")
    leased = spool.lease("hub", limit=1, lease_s=9, now=T0 + 60)
    spool.ack([leased[0].item_id], receipt_id="r", receipt_digest_hex="0", now=T0 + 60)
    src = spool.source_counts()["acme"]
    assert (src.accepted, src.records, src.rejected, src.quarantined) == (2, 3, 1, 1)
    dests = spool.destination_counts(now=T0 + 100)
    assert (dests["hub"].queued, dests["hub"].delivered) == (2, 1)
    assert dests["hub"].oldest_age_s == 100
    assert dests["mirror"].queued == 2
    assert spool.usage()["acme"].records == 3


# -- the asyncio facade: group commit ------------------------------------------------


async def test_group_commit_shares_fsyncs_among_concurrent_callers(
    tmp_path: Path,
) -> None:
    async with await AsyncSpool.open(tmp_path / "s.db") as spool:
        start = spool.commits
        raws = [os.urandom(2048) for _ in range(200)]
        answers = await asyncio.gather(
            *(spool.put_intake(prov(r), r, [rec(f"k{i}")]) for i, r in enumerate(raws))
        )
        commits = spool.commits - start
        assert 1 <= commits < len(raws) / 4
        assert spool.calls == len(raws)
        assert len({a.intake_id for a in answers}) == len(raws)
        for a in answers[::37]:
            state = await spool.intake_state(a.intake_id)
            assert state is not None
            assert len(state.records) == 1


async def test_quota_refusal_fails_only_that_caller(tmp_path: Path) -> None:
    quotas = Quotas(total=Limits(max_records=10))
    async with await AsyncSpool.open(tmp_path / "s.db", quotas=quotas) as spool:
        raws = [b"%d" % i for i in range(40)]
        results = await asyncio.gather(
            *(spool.put_intake(prov(r), r, [rec("x")]) for r in raws),
            return_exceptions=True,
        )
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert (len(ok), len(refused)) == (10, 30)
        assert (await spool.usage())["acme"].records == 10
        assert await spool.check() == []


async def test_async_delivery_round_trip_and_close(tmp_path: Path) -> None:
    spool = await AsyncSpool.open(tmp_path / "s.db")
    answer = await spool.put_intake(prov(b"r"), b"r", [rec("a"), rec("b")])
    assert (await spool.lookup_idempotent("acme", "none")) is None
    items = await spool.lease("hub", limit=5, lease_s=30, now=T0)
    await spool.release([items[1].item_id], delay_s=5, now=T0)
    await spool.put_envelope(
        "hub", "e1", b"E", digest_hex="e", item_ids=[items[0].item_id], now=T0
    )
    (env,) = await spool.lease_envelopes("hub", limit=1, lease_s=30, now=T0)
    await spool.ack_envelope(
        env.envelope_id, receipt_id="r", receipt_digest_hex="d", receipt=b"R", now=T0
    )
    (retry,) = await spool.lease("hub", limit=5, lease_s=30, now=T0 + 5)
    await spool.dead_letter([retry.item_id], reason="E", now=T0 + 6)
    state = await spool.intake_state(answer.intake_id)
    assert state is not None
    assert [r.deliveries[0].state for r in state.records] == [
        ItemState.DELIVERED,
        ItemState.DEAD,
    ]
    q = await spool.put_quarantine(prov(b"q"), b"q", reason_code="E", message="m")
    assert [e.intake_id for e in await spool.list_quarantine()] == [q.intake_id]
    assert (await spool.get_input(q.intake_id)) is not None
    assert await spool.mark_replayed(q.intake_id, now=T0)
    assert (await spool.source_counts())["acme"].accepted == 1
    assert (await spool.destination_counts(now=T0))["hub"].dead == 1
    assert await spool.integrity_problems() == []
    commits = spool.commits
    await spool.ping()
    assert spool.commits == commits  # an empty commit costs no fsync
    await spool.aclose()
    await spool.aclose()
    with pytest.raises(SpoolError, match="closed"):
        await spool.put_intake(prov(b"late"), b"late", [])


async def test_async_open_reports_schema_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await asyncio.to_thread(lambda: Spool(path).close())
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SpoolError, match="newer"):
        await AsyncSpool.open(path)


# -- hub: received envelopes ---------------------------------------------------------


def envelope(
    eid: str, body: bytes, at: float = T0, *, keep: bool = False
) -> InboxEnvelope:
    return InboxEnvelope(
        envelope_id=eid, sender_key_id="key-a", digest_hex=sha(body), size=len(body),
        received_at=at, remote_addr="198.51.100.4", receipt=b"RECEIPT " + eid.encode(),
        body=body if keep else None,
    )  # fmt: skip


def hrec(key: str, version: int = 1, *, dests: tuple[str, ...] = ()) -> AcceptedRecord:
    body = json.dumps({"k": key, "v": version}).encode()
    return AcceptedRecord(
        dataset="deal", record_key=key, canonical=body, digest_hex=sha(body),
        destinations=dests,
    )  # fmt: skip


def hprov(env: InboxEnvelope, *, source: str = "hub") -> Provenance:
    return Provenance(
        source=source, remote_addr=env.remote_addr, token_id=env.sender_key_id,
        received_at=env.received_at, content_type="application/x-ndjson",
        digest_hex=env.digest_hex,
    )  # fmt: skip


def receive(
    spool: Spool,
    eid: str,
    body: bytes,
    records: list[AcceptedRecord],
    *,
    at: float = T0,
    keep: bool = False,
):
    env = envelope(eid, body, at, keep=keep)
    return spool.put_received(env, records, hprov(env), now=at)


def test_put_received_dedupes_envelopes_and_records(spool: Spool) -> None:
    assert spool.get_envelope_receipt("e1") is None
    before = spool.commits
    first = receive(spool, "e1", b"one", [hrec("a"), hrec("b")])
    assert spool.commits == before + 1
    assert (first.repeated, first.conflict, first.stored, first.duplicates) == (
        False, False, 2, 0,
    )  # fmt: skip
    assert first.receipt.receipt == b"RECEIPT e1"

    # a repeat and a conflict write nothing and carry the first receipt
    again = receive(spool, "e1", b"one", [hrec("a"), hrec("b")], at=T0 + 5)
    assert (again.repeated, again.conflict, again.stored) == (True, False, 0)
    assert again.receipt == first.receipt
    clash = receive(spool, "e1", b"other", [hrec("c")])
    assert (clash.repeated, clash.conflict, clash.stored) == (True, True, 0)
    assert clash.receipt == first.receipt
    assert spool.commits == before + 1
    assert not spool.has_hub_record("deal", "c", hrec("c").digest_hex)

    # re-sealed: b again in a new envelope, with a new record, a new version of
    # a (same key, other content), and c twice
    resealed = receive(
        spool, "e2", b"two", [hrec("b"), hrec("c"), hrec("a", 2), hrec("c")]
    )
    assert (resealed.stored, resealed.duplicates) == (2, 2)
    stored = spool.list_hub_records()
    assert [(r.record_key, r.envelope_id) for r in stored] == [
        ("a", "e1"), ("b", "e1"), ("c", "e2"), ("a", "e2"),
    ]  # fmt: skip
    assert stored[0].sender_key_id == "key-a"
    assert stored[0].canonical == hrec("a").canonical
    assert stored[0].intake_id == first.intake_id
    assert stored[2].intake_id == resealed.intake_id
    later = spool.list_hub_records(after=stored[1].record_id)
    assert [r.record_key for r in later] == ["c", "a"]
    assert spool.list_hub_records(limit=1) == stored[:1]
    assert spool.hub_counts() == InboxCounts(envelopes=2, records=4, duplicates=2)

    receipt = spool.get_envelope_receipt("e2")
    assert receipt is not None
    assert (receipt.digest_hex, receipt.receipt) == (sha(b"two"), b"RECEIPT e2")
    assert receipt.intake_id == resealed.intake_id

    # past the retention the id is forgotten, the record keys are not
    assert spool.prune_hub_envelopes(received_before=T0 + 1) == 2
    assert spool.get_envelope_receipt("e1") is None
    late = receive(spool, "e1", b"one", [hrec("a")], at=T0 + 9)
    assert (late.repeated, late.stored, late.duplicates) == (False, 0, 1)
    assert spool.has_hub_record("deal", "a", hrec("a").digest_hex)
    assert not spool.has_hub_record("deal", "a", "0" * 64)
    # the records of pruned envelopes are still there, with their inputs
    assert len(spool.list_hub_records()) == 4
    state = spool.intake_state(first.intake_id)
    assert state is not None
    assert [r.record_key for r in state.records] == ["a", "b"]
    assert spool.check() == []


def test_received_records_are_queued_onward_like_intake(spool: Spool) -> None:
    # a city hub: records go on to the province (and some to a mirror too)
    recs = [
        hrec("a", dests=("province",)),
        hrec("b", dests=("province", "mirror")),
        hrec("c"),  # kept here only
    ]
    first = receive(spool, "e1", b"ENVELOPE-1", recs, keep=True)
    assert (first.stored, first.duplicates) == (3, 0)
    # the same records again in another envelope are not sent on again
    second = receive(
        spool, "e2", b"ENVELOPE-2", [recs[1], hrec("d", dests=("mirror",))]
    )
    assert (second.stored, second.duplicates) == (1, 1)

    items = spool.lease("province", limit=10, lease_s=60, now=T0 + 1)
    assert [(i.record_key, i.intake_id, i.seq) for i in items] == [
        ("a", first.intake_id, 0),
        ("b", first.intake_id, 1),
    ]
    assert items[1].canonical == recs[1].canonical
    assert items[1].digest_hex == recs[1].digest_hex
    mirror = spool.lease("mirror", limit=10, lease_s=60, now=T0 + 1)
    assert [(i.record_key, i.seq) for i in mirror] == [("b", 1), ("d", 1)]

    # the same seal / send / receipt machinery carries them on
    body = b"SEALED FOR PROVINCE"
    spool.put_envelope(
        "province", "out-1", body, digest_hex=sha(body),
        item_ids=[i.item_id for i in items], now=T0 + 2,
    )  # fmt: skip
    (out,) = spool.lease_envelopes("province", limit=5, lease_s=30, now=T0 + 2)
    assert out.record_digests == (recs[0].digest_hex, recs[1].digest_hex)
    assert spool.ack_envelope(
        "out-1", receipt_id="p-1", receipt_digest_hex=sha(body), receipt=b"P",
        now=T0 + 3,
    )  # fmt: skip

    # GET /v1/intake/{id} and status work for received envelopes
    state = spool.intake_state(first.intake_id)
    assert state is not None
    assert (state.source, state.status, state.digest_hex) == (
        "hub",
        InputStatus.ACCEPTED,
        sha(b"ENVELOPE-1"),
    )
    assert state.content_type == "application/x-ndjson"
    assert [
        (r.record_key, [(d.destination, d.state, d.envelope_id) for d in r.deliveries])
        for r in state.records
    ] == [
        ("a", [("province", ItemState.DELIVERED, "out-1")]),
        ("b", [("province", ItemState.DELIVERED, "out-1"),
               ("mirror", ItemState.LEASED, None)]),
        ("c", []),
    ]  # fmt: skip
    second_state = spool.intake_state(second.intake_id)
    assert second_state is not None
    assert [(r.seq, r.record_key) for r in second_state.records] == [(1, "d")]
    src = spool.source_counts()["hub"]
    assert (src.accepted, src.records, src.rejected) == (2, 4, 0)
    dests = spool.destination_counts(now=T0 + 10)
    assert (dests["province"].delivered, dests["province"].queued) == (2, 0)
    assert dests["mirror"].leased == 2

    # the envelope body was kept for e1 (keep=True), not for e2
    kept = spool.get_input(first.intake_id)
    assert kept is not None
    assert kept.raw == b"ENVELOPE-1"
    assert kept.provenance.token_id == "key-a"
    assert kept.provenance.remote_addr == "198.51.100.4"
    not_kept = spool.get_input(second.intake_id)
    assert not_kept is not None
    assert not_kept.raw == b""
    # the quota holds what is still owed to the mirror: b, d and e1's body
    assert spool.usage()["hub"] == Usage(
        records=2,
        bytes=len(recs[1].canonical) + len(hrec("d").canonical) + len(b"ENVELOPE-1"),
    )
    spool.ack(
        [i.item_id for i in mirror], receipt_id="m", receipt_digest_hex="00",
        now=T0 + 4, lease_until=mirror[0].lease_until,
    )  # fmt: skip
    assert spool.usage()["hub"] == Usage()
    assert spool.check() == []


def test_put_received_checks_its_arguments(spool: Spool) -> None:
    env = envelope("e1", b"body")
    with pytest.raises(ValueError, match="envelope id"):
        spool.put_received(
            envelope("../e1", b"body"), [], hprov(envelope("../e1", b"body")), now=T0
        )
    other = Provenance(
        source="hub", remote_addr="x", token_id="key-a", received_at=T0,
        content_type="x", digest_hex=sha(b"else"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="digest"):
        spool.put_received(env, [], other, now=T0)
    bad = InboxEnvelope(
        envelope_id="e1", sender_key_id="k", digest_hex=sha(b"body"), size=99,
        received_at=T0, remote_addr="x", receipt=b"R", body=b"body",
    )  # fmt: skip
    with pytest.raises(ValueError, match="size says 99"):
        spool.put_received(bad, [], hprov(bad), now=T0)
    assert spool.hub_counts() == InboxCounts()
    # an envelope carrying no valid record is still answered and remembered
    empty = receive(spool, "e0", b"nothing", [])
    assert (empty.stored, empty.duplicates, empty.repeated) == (0, 0, False)
    assert spool.hub_counts().envelopes == 1


def test_hub_over_quota_refuses_before_writing(tmp_path: Path) -> None:
    quotas = Quotas(per_source={"hub": Limits(max_records=2)}, retry_after_s=11)
    with Spool(tmp_path / "s.db", quotas=quotas) as s:
        up = ("province",)
        first = receive(s, "e1", b"one", [hrec("a", dests=up), hrec("b", dests=up)])
        commits, counts = s.commits, s.hub_counts()
        with pytest.raises(QuotaExceeded, match="source 'hub'") as info:
            receive(s, "e2", b"two", [hrec("a", dests=up), hrec("c", dests=up)])
        assert info.value.retry_after_s == 11
        # nothing of e2 was written: not the id, not the record, not an item
        assert s.commits == commits
        assert s.get_envelope_receipt("e2") is None
        assert not s.has_hub_record("deal", "c", hrec("c").digest_hex)
        assert s.hub_counts() == counts
        assert s.destination_counts(now=T0)["province"].queued == 2
        assert s.source_counts()["hub"].accepted == 1
        # a repeat is still answered; records that go nowhere, or that are
        # already held, take no room
        assert receive(s, "e1", b"one", []).receipt == first.receipt
        assert receive(s, "e3", b"three", [hrec("a", dests=up), hrec("z")]).stored == 1
        # delivering frees room: the sender's retry gets through
        items = s.lease("province", limit=1, lease_s=9, now=T0)
        s.ack(
            [items[0].item_id], receipt_id="r", receipt_digest_hex="00", now=T0,
            lease_until=items[0].lease_until,
        )  # fmt: skip
        retry = receive(s, "e2", b"two", [hrec("a", dests=up), hrec("c", dests=up)])
        assert (retry.stored, retry.duplicates) == (1, 1)
        assert s.check() == []


def test_hub_byte_quota_counts_a_kept_envelope_body(tmp_path: Path) -> None:
    quotas = Quotas(total=Limits(max_bytes=1000))
    with Spool(tmp_path / "s.db", quotas=quotas) as s:
        body = b"x" * 990
        up = ("province",)
        # not kept: only the record counts
        receive(s, "e1", body, [hrec("a", dests=up)])
        with pytest.raises(QuotaExceeded, match="bytes"):
            receive(s, "e2", body, [hrec("b", dests=up)], keep=True)
        # a kept body of an envelope whose records all go nowhere takes no room
        receive(s, "e3", body, [hrec("c")], keep=True)
        assert s.usage()["hub"].bytes == len(hrec("a").canonical)
        assert s.check() == []


async def test_async_put_received_group_commit(tmp_path: Path) -> None:
    async with await AsyncSpool.open(tmp_path / "s.db") as spool:
        start = spool.commits

        def put(i: int):
            env = envelope(f"e{i}", b"%d" % i)
            recs = [hrec(f"k{i % 50}", dests=("province",))]
            return spool.put_received(env, recs, hprov(env), now=T0)

        answers = await asyncio.gather(*(put(i) for i in range(100)))
        assert sum(a.stored for a in answers) == 50
        assert sum(a.duplicates for a in answers) == 50
        assert spool.commits - start < 100 / 4
        assert (await spool.hub_counts()).records == 50
        receipt = await spool.get_envelope_receipt("e7")
        assert receipt is not None
        assert receipt.receipt == b"RECEIPT e7"
        assert await spool.has_hub_record("deal", "k7", hrec("k7").digest_hex)
        assert len(await spool.list_hub_records(limit=10)) == 10
        assert (await spool.destination_counts(now=T0))["province"].queued == 50
        again = await put(7)
        assert again.repeated
        assert await spool.prune_hub_envelopes(received_before=T0) == 0
        assert await spool.prune_hub_envelopes(received_before=T0 + 1) == 100
        assert await spool.check() == []


# -- kill -9 ---------------------------------------------------------------------------

WRITER = r"""
import asyncio, hashlib, json, os, random, sys, time
from gateway.records import AcceptedRecord, InboxEnvelope, Provenance
from gateway.spool import AsyncSpool

def sha(b):
    return hashlib.sha256(b).hexdigest()

def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

async def writer(spool, wid):
    n = 0
    while True:
        n += 1
        k = random.randint(1, 5)
        recs = []
        for i in range(k):
            body = json.dumps({"w": wid, "n": n, "i": i, "pad": os.urandom(700).hex()})
            body = body.encode()
            recs.append(AcceptedRecord(dataset="deal", record_key=f"{wid}.{n}.{i}",
                        canonical=body, digest_hex=sha(body),
                        destinations=("hub", "mirror")))
        size = 1 << 20 if random.random() < 0.05 else 2048
        raw = os.urandom(size)
        p = Provenance(source=f"s{wid % 3}", remote_addr="127.0.0.1", token_id="t",
                       received_at=time.time(), content_type="text/csv",
                       digest_hex=sha(raw), idempotency_key=f"{os.getpid()}.{wid}.{n}")
        a = await spool.put_intake(p, raw, recs)
        say(f"I {a.intake_id} {k} {p.digest_hex}")

async def receiver(spool, rid):
    # a hub: envelopes with new records, now and then one already held, and
    # now and then an envelope sent again
    n, held, done = 0, [], []
    while True:
        n += 1
        if done and random.random() < 0.1:
            env, recs, p = random.choice(done)
            a = await spool.put_received(env, recs, p, now=time.time())
            assert a.repeated and not a.conflict and a.stored == 0, a
            continue
        recs = []
        for i in range(random.randint(0, 4)):
            body = json.dumps({"r": rid, "n": n, "i": i, "pad": os.urandom(300).hex()})
            body = body.encode()
            recs.append(AcceptedRecord(dataset="deal", record_key=f"h{rid}.{n}.{i}",
                        canonical=body, digest_hex=sha(body),
                        destinations=("province", "mirror")))
        dups = 0
        if held and random.random() < 0.3:
            recs.append(random.choice(held))
            dups = 1
        data = os.urandom(1 << 19 if random.random() < 0.05 else 1024)
        eid = f"e{os.getpid()}.{rid}.{n}"
        now = time.time()
        env = InboxEnvelope(envelope_id=eid, sender_key_id="k-1", digest_hex=sha(data),
                            size=len(data), received_at=now, remote_addr="127.0.0.2",
                            receipt=b"R " + eid.encode(),
                            body=data if random.random() < 0.3 else None)
        p = Provenance(source="hub", remote_addr="127.0.0.2", token_id="k-1",
                       received_at=now, content_type="application/x-ndjson",
                       digest_hex=env.digest_hex)
        a = await spool.put_received(env, recs, p, now=now)
        assert (a.stored, a.duplicates) == (len(recs) - dups, dups), a
        say(f"E {eid} {a.intake_id} {a.stored} {env.digest_hex}")
        held.extend(recs[: a.stored])
        done.append((env, recs, p))

async def deliverer(spool):
    while True:
        now = time.time()
        items = await spool.lease("hub", limit=20, lease_s=0.5, now=now)
        if len(items) > 10:
            ids = [i.item_id for i in items]
            await spool.put_envelope("hub", f"env{ids[0]}", b"E" * 5000,
                                     digest_hex="00", item_ids=ids, now=now)
            for env in await spool.lease_envelopes("hub", limit=5, lease_s=1, now=now):
                await spool.ack_envelope(env.envelope_id, receipt_id="r",
                                         receipt_digest_hex="00", receipt=b"R", now=now)
        elif items:
            await spool.release([i.item_id for i in items], delay_s=0.01, now=now,
                                lease_until=items[0].lease_until)
        for dest in ("mirror", "province"):
            got = await spool.lease(dest, limit=7, lease_s=0.5, now=now)
            if got:
                await spool.ack([i.item_id for i in got[::2]], receipt_id="m",
                                receipt_digest_hex="00", now=now,
                                lease_until=got[0].lease_until)
                if random.random() < 0.2:
                    await spool.dead_letter([i.item_id for i in got[1::2]],
                                            reason="E", now=now,
                                            lease_until=got[0].lease_until)
        if random.random() < 0.05:
            await spool.redrive_dead("mirror", now=now)
        await asyncio.sleep(0.005)

async def main():
    spool = await AsyncSpool.open(sys.argv[1])
    await asyncio.gather(*(writer(spool, w) for w in range(12)),
                         *(receiver(spool, r) for r in range(4)), deliverer(spool))

asyncio.run(main())
"""


def check_crashed_spool(
    db: Path,
    intakes: dict[str, tuple[str, str]],
    received: dict[str, tuple[str, str, str]],
) -> None:
    with Spool(db) as spool:
        assert spool.check() == []
    conn = sqlite3.connect(db)
    try:
        for iid, (n, digest) in intakes.items():
            row = conn.execute(
                """SELECT i.digest_hex, r.raw FROM inputs i
                   JOIN raw_inputs r ON r.input_id = i.id WHERE i.id = ?""",
                (iid,),
            ).fetchone()
            assert row is not None, f"answered intake {iid} was lost"
            assert row[0] == digest
            assert sha(row[1]) == digest
            recs = conn.execute(
                "SELECT canonical, digest_hex FROM records WHERE input_id = ?",
                (iid,),
            ).fetchall()
            assert len(recs) == int(n)
            assert all(sha(c) == d for c, d in recs)
            items = conn.execute(
                """SELECT COUNT(*) FROM items i JOIN records r ON r.id = i.record_id
                   WHERE r.input_id = ?""",
                (iid,),
            ).fetchone()[0]
            assert items == 2 * int(n)
        for eid, (iid, n, digest) in received.items():
            row = conn.execute(
                """SELECT e.input_id, e.digest_hex, e.stored, i.answer, i.digest_hex,
                          r.raw
                   FROM hub_envelopes e JOIN inputs i ON i.id = e.input_id
                   JOIN raw_inputs r ON r.input_id = i.id WHERE e.id = ?""",
                (eid,),
            ).fetchone()
            assert row is not None, f"answered envelope {eid} was lost"
            assert row[:5] == (iid, digest, int(n), b"R " + eid.encode(), digest)
            assert row[5] == b"" or sha(row[5]) == digest
            recs = conn.execute(
                """SELECT r.canonical, r.digest_hex, h.envelope_id FROM records r
                   JOIN hub_records h ON h.record_id = r.id WHERE r.input_id = ?""",
                (iid,),
            ).fetchall()
            assert len(recs) == int(n)
            assert all(sha(c) == d and e == eid for c, d, e in recs)
            onward = conn.execute(
                """SELECT i.destination, COUNT(*) FROM items i
                   JOIN records r ON r.id = i.record_id
                   WHERE r.input_id = ? GROUP BY i.destination""",
                (iid,),
            ).fetchall()
            assert dict(onward) == (
                {"province": int(n), "mirror": int(n)} if int(n) else {}
            )
    finally:
        conn.close()


def test_kill_9_never_loses_an_answered_intake_or_envelope(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    intakes: dict[str, tuple[str, str]] = {}
    received: dict[str, tuple[str, str, str]] = {}
    rng = random.Random()
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is up and committing
        assert first, proc.communicate()[1].decode()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        text = (first + rest).decode()
        # a line cut by the kill is not an answer; only whole lines count
        for line in text.split("\n")[:-1]:
            kind, *fields = line.split()
            if kind == "I":
                iid, n, digest = fields
                intakes[iid] = (n, digest)
            else:
                eid, iid, n, digest = fields
                received[eid] = (iid, n, digest)
        check_crashed_spool(db, intakes, received)
    assert len(intakes) >= 25
    assert len(received) >= 10
